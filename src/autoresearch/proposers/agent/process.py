"""Run an agent CLI under the same process control as a verify command, bounded by a timeout.

Coding agents spawn children (shells, language servers, test runs). Killing only the CLI would
leave them writing into the worktree while the harness commits it, or, if the orchestrator was
killed, into a later experiment. So the agent gets what every run gets (see `runner`,
`process_tree`, `lifeline`): its own session (process group), the run id and the orchestrator's
owner mark in its environment, the parent-death signal and the watchdog. When it exits, times
out or is interrupted, everything it started is killed (SIGTERM, then SIGKILL after a grace
period): its group, every process carrying its run id (setsid() does not escape that), and its
descendants. If the orchestrator dies first, the watchdog kills them, and a resume kills what
is left (`kill_orphans`), before the worktree is reset.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from autoresearch import strays
from autoresearch.bounded_log import BoundedLog
from autoresearch.lifeline import launch_plan, run_env, watchdog
from autoresearch.process_tree import ProcessTree, wait_exit

GRACE_SECONDS = 3.0
# What of each stream is read back into memory: the end, where every CLI puts its result (Claude
# Code's result object, Codex's last events, aider's cost line). The whole output stays on disk.
TAIL_BYTES = 512 * 1024


@dataclass(frozen=True)
class AgentRun:
    returncode: int | None  # None when it was killed on timeout
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool
    survivors_killed: int = 0  # processes still running when it ended (the CLI on a timeout)
    stdout_bytes: int = 0  # the whole output's size (`stdout` holds its last TAIL_BYTES)
    log: Path | None = None  # where the whole output was kept, when the caller asked for it


def _tail(fh: IO[bytes]) -> tuple[str, int]:
    """The stream's last TAIL_BYTES as text, from its first whole line; and its full size."""
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(size - TAIL_BYTES, 0))
    data = fh.read()
    if size > TAIL_BYTES:
        data = data[data.find(b"\n") + 1:]  # a cut line is neither JSON nor a whole message
    return data.decode("utf-8", errors="replace"), size


def _executable(name: str, env: Mapping[str, str]) -> str:
    """The path `name` runs as, or the error Popen would raise: the CLI is started through
    setpriv, which would turn a missing CLI into an exit code."""
    if os.sep in name:
        if not os.path.exists(name):
            raise FileNotFoundError(errno.ENOENT, "no such file", name)
        if not os.access(name, os.X_OK) or os.path.isdir(name):
            raise PermissionError(errno.EACCES, "not executable", name)
        return name
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, "not found on PATH", name)
    return found


def _feed(proc: subprocess.Popen[bytes], text: str | None) -> threading.Thread | None:
    """Write the prompt to the CLI's stdin from a thread (it may read it late, or never)."""
    if text is None or proc.stdin is None:
        return None
    stdin = proc.stdin

    def write() -> None:
        with contextlib.suppress(OSError):  # BrokenPipeError: it exited without reading
            stdin.write(text.encode("utf-8"))
        with contextlib.suppress(OSError):
            stdin.close()

    thread = threading.Thread(target=write, name="agent-stdin", daemon=True)
    thread.start()
    return thread


def run_agent(
    argv: Sequence[str],
    *,
    cwd: Path,
    stdin_text: str | None,
    env: Mapping[str, str],
    timeout: float,
    run_id: str,
    log: Path | None = None,
    max_log_bytes: int | None = None,
) -> AgentRun:
    """Run `argv` in `cwd`; output goes to files so a chatty agent can neither block nor fill
    the memory: stdout to `log` when given (kept, cut to its head and tail past
    `max_log_bytes` once the agent is done), else to a temporary file; only the end of each
    stream is read back."""
    started = time.monotonic()
    exe = _executable(argv[0], env)
    launch, preexec = launch_plan([exe, *argv[1:]])
    guard = watchdog()
    guard.ensure_started()
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    with (open(log, "w+b") if log is not None else tempfile.TemporaryFile()) as out, \
            tempfile.TemporaryFile() as err:
        proc = strays.spawn(run_id, lambda: subprocess.Popen(
            launch,
            cwd=cwd,
            env=run_env(env, run_id),
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=preexec,
        ), lambda p: p.pid)
        tree = ProcessTree(proc, run_id)
        feeder: threading.Thread | None = None
        killed = 0
        try:
            try:
                guard.watch(proc.pid)
                feeder = _feed(proc, stdin_text)
                timed_out = not wait_exit(proc.pid, timeout)
            except BaseException:
                # Ctrl-C (or SIGTERM, SIGHUP) during the agent: leave nothing running behind.
                try:
                    tree.terminate(GRACE_SECONDS, None)
                finally:
                    tree.terminate(0.0, None)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(GRACE_SECONDS)
                raise
            # Exited or timed out: whatever it left running must not outlive it.
            killed += tree.terminate(GRACE_SECONDS, None)
            proc.wait()
        finally:
            guard.unwatch(proc.pid)
            if feeder is not None:
                feeder.join(GRACE_SECONDS)
            # A daemon that cleared its environment and left the agent's session came back to
            # us (see `strays`): it dies here, before anything is committed or measured.
            strays.forget(proc.pid, proc)
            killed += strays.sweep(GRACE_SECONDS)
        stdout, size = _tail(out)
        stderr, _ = _tail(err)
        if log is not None and max_log_bytes is not None:
            # The agent wrote to the file itself, so it is cut now that nothing writes to it:
            # hundreds of experiments of stream-json must not fill the state directory.
            BoundedLog.cap(log, max_log_bytes)
        return AgentRun(
            returncode=None if timed_out else proc.returncode,
            stdout=stdout,
            stderr=stderr,
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
            survivors_killed=killed,
            stdout_bytes=size,
            log=log,
        )
