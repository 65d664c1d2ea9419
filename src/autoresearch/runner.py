"""Run one command honestly: fixed budget, hard timeout, whole tree killed, bounded log.

The command runs in its own session and carries ``AUTORESEARCH_RUN_ID`` and the orchestrator's
owner mark, so that when the run ends for any reason every process it started can be found and
killed (see ``process_tree``), and so that they die with the orchestrator if it dies first (see
``lifeline``: the parent-death signal, the watchdog). Output goes to a log of bounded size (see
``bounded_log``).

Waiting is single-threaded: one ``poll()`` over the output pipe and a pidfd for the child, so
the process exit is seen at once even when a grandchild still holds the pipe open.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event
from types import MappingProxyType

from autoresearch import strays
from autoresearch.bounded_log import BoundedLog as _BoundedLog  # tests use runner._BoundedLog
from autoresearch.bounded_log import OutputPump
from autoresearch.lifeline import exec_if_simple, launch_plan, run_env, watchdog
from autoresearch.process_tree import RUN_ID_ENV, ProcessTree, has_exited, kill_leftovers

__all__ = [
    "BUDGET_ENV",
    "RUN_ID_ENV",
    "RunOutcome",
    "RunSpec",
    "kill_leftovers",
    "log_tail",
    "run_command",
]

BUDGET_ENV = "AUTORESEARCH_TIME_BUDGET"

# How often a stop event is looked at, and the longest we ever sleep in one poll(): a
# signal delivered to another thread is only acted on when the main thread wakes up.
_STOP_POLL_S = 0.05
_MAX_SLEEP_S = 0.25
# After the tree is dead the pipe reaches EOF at once; this bounds the wait for a writer we
# could not find (one that cleared its environment and left the group).
_DRAIN_S = 1.0


@dataclass(frozen=True)
class RunSpec:
    """What to run and under which limits."""

    command: str
    cwd: Path
    log_path: Path
    timeout_s: float
    budget_s: float
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    run_id: str = ""
    max_log_bytes: int = 20 * 1024 * 1024
    # SIGTERM-to-SIGKILL delay when we end the tree (timeout, stop, leftovers after exit).
    grace_s: float = 2.0
    # /bin/sh (dash on Debian) starts in ~1 ms; use "/bin/bash" for bash-only commands.
    shell: str = "/bin/sh"
    # CPUs the command (and everything it starts) may run on; empty: wherever the OS likes.
    cpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class RunOutcome:
    """What happened.

    ``exit_code`` is the command's status when it exited by itself (negative: killed by that
    signal, e.g. -9 from the OOM killer) and None when we ended it (timeout or stop).
    ``duration_s`` is the wall-clock time of the whole call, cleanup included; ``command_s``
    only the command's own part: from just before it was spawned until it exited (or until the
    timeout or stop ended it), without the kill, drain and log handling that follow.
    ``survivors_killed`` counts the live processes signalled at the end: the command itself
    on timeout/stop, plus any children or daemons it left behind.
    """

    exit_code: int | None
    timed_out: bool
    duration_s: float
    log_path: Path
    log_truncated: bool
    interrupted: bool
    survivors_killed: int
    run_id: str = ""
    log_bytes_dropped: int = 0
    command_s: float = 0.0


def _format_budget(budget_s: float) -> str:
    # Commands read this with int()/float() or in shell arithmetic; "60" beats "60.0".
    return str(int(budget_s)) if float(budget_s).is_integer() else repr(float(budget_s))


def run_command(spec: RunSpec, stop: Event | None = None) -> RunOutcome:
    """Run ``spec.command`` to completion, timeout or stop; never leave a process behind.

    On KeyboardInterrupt (or any exception) the tree is killed and the exception re-raised.
    """
    run_id = spec.run_id or f"ar-{uuid.uuid4().hex}"
    env = run_env({**os.environ, **spec.env}, run_id)
    env[BUDGET_ENV] = _format_budget(spec.budget_s)
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)

    argv, preexec = launch_plan(
        _pinned(spec.cpus, [spec.shell, "-c", exec_if_simple(spec.command)]))
    guard = watchdog()
    guard.ensure_started()
    log = _BoundedLog(spec.log_path, spec.max_log_bytes)
    start = time.monotonic()
    try:
        proc = strays.spawn(run_id, lambda: subprocess.Popen(
            argv,
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        ), _pid)
    except BaseException:
        log.close()
        raise

    if spec.cpus and _taskset() is None and hasattr(os, "sched_setaffinity"):
        # Best effort without taskset: pinned from here, inherited by what it starts from now on.
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, spec.cpus)
    tree = ProcessTree(proc, run_id)
    pump: OutputPump | None = None
    killed = 0
    try:
        try:
            guard.watch(proc.pid)
            assert proc.stdout is not None
            pump = OutputPump([(proc.stdout, log)], proc.pid)
            reason = _wait(proc, pump, start + spec.timeout_s, stop)
            command_s = time.monotonic() - start
        except BaseException:
            # Interrupted (Ctrl-C) or a log write failed: the run must not outlive us.
            try:
                tree.terminate(spec.grace_s, pump)
            finally:
                tree.terminate(0.0, None)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(_DRAIN_S)
            raise
        killed += tree.terminate(spec.grace_s, pump)
        # Before the drain: a stray (see `strays`) may hold the output pipe open.
        killed += strays.sweep(spec.grace_s)
        pump.drain(time.monotonic() + _DRAIN_S)
        returncode = proc.wait()
    finally:
        guard.unwatch(proc.pid)
        if pump is not None:
            pump.close()
        elif proc.stdout is not None:
            proc.stdout.close()
        log.close()
        # What escaped the tree (no mark, another session) came back to us: see `strays`.
        strays.forget(proc.pid, proc)
        killed += strays.sweep(spec.grace_s)

    return RunOutcome(
        exit_code=returncode if reason == "exit" else None,
        timed_out=reason == "timeout",
        duration_s=time.monotonic() - start,
        log_path=spec.log_path,
        log_truncated=log.dropped > 0,
        interrupted=reason == "stop",
        survivors_killed=killed,
        run_id=run_id,
        log_bytes_dropped=log.dropped,
        command_s=command_s,
    )


def _pid(proc: subprocess.Popen[bytes]) -> int:
    return proc.pid


def _wait(proc: subprocess.Popen[bytes], pump: OutputPump, deadline: float, stop: Event | None) -> str:
    """Pump output until the child exits, the deadline passes or ``stop`` is set."""
    while True:
        if has_exited(proc.pid):
            return "exit"
        now = time.monotonic()
        if now >= deadline:
            return "timeout"
        if stop is not None and stop.is_set():
            return "stop"
        wait = min(deadline - now, _MAX_SLEEP_S)
        if stop is not None:
            wait = min(wait, _STOP_POLL_S)
        pump.step(wait)


# ---- where the run may run ---------------------------------------------------------------


def _pinned(cpus: tuple[int, ...], argv: list[str]) -> list[str]:
    """`argv` run on `cpus` only: util-linux `taskset` sets the affinity in the child, before it
    execs the command, and every process the command starts inherits it. (A preexec_fn calling
    os.sched_setaffinity would do the same, but it is unsafe in a threaded parent and forces
    fork(): see lifeline.) Without taskset the parent pins the child right after it starts."""
    taskset = _taskset() if cpus else None
    if taskset is None:
        return argv
    return [taskset, "--cpu-list", ",".join(map(str, sorted(cpus))), *argv]


@functools.cache
def _taskset() -> str | None:
    return shutil.which("taskset") if sys.platform.startswith("linux") else None


# ---- output -----------------------------------------------------------------------------


def log_tail(path: Path, max_bytes: int = 8192) -> str:
    """The last ``max_bytes`` of a log, decoded leniently; a cut first line is dropped."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read()
    except OSError:
        return ""
    if start > 0 and (newline := data.find(b"\n")) >= 0:
        data = data[newline + 1 :]
    return data.decode("utf-8", errors="replace")
