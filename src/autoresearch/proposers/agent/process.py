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

Its output is bounded as a verify run's is: stdout and stderr are pipes that a thread moves into
logs of at most `[verify] max_log_mb` each while it runs (`bounded_log.OutputPump`: the head, a
marker, a rolling tail), so an agent printing gigabytes fills neither the disk nor the memory.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch import strays
from autoresearch.bounded_log import BoundedLog, OutputPump, without_marker
from autoresearch.lifeline import launch_plan, run_env, watchdog
from autoresearch.process_tree import ProcessTree, wait_exit

GRACE_SECONDS = 3.0
# What of each stream is read back into memory: the end, where every CLI puts its result (Claude
# Code's result object, Codex's last events, aider's cost line). The rest stays in its log.
TAIL_BYTES = 512 * 1024
# Each stream's cap when the caller gives none: a verify run's default ([verify] max_log_mb).
DEFAULT_MAX_LOG_BYTES = 20 * 1024 * 1024
# How long the output is still read once everything the agent started is dead: the pipes reach
# their end at once then, unless a writer nobody could find (it left the session and cleared its
# environment) still holds one.
DRAIN_SECONDS = 1.0
# The pump thread's longest sleep: how soon it notices it is told to stop.
_PUMP_STEP_S = 0.1


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


def _tail(log: BoundedLog) -> str:
    """The log's last TAIL_BYTES as text, from its first whole line, without the cut's marker."""
    data = log.tail(TAIL_BYTES)
    if log.written > len(data):
        data = data[data.find(b"\n") + 1:]  # a cut line is neither JSON nor a whole message
    return without_marker(data.decode("utf-8", errors="replace"))


def find_executable(name: str, env: Mapping[str, str], cwd: Path) -> str:
    """The path `name` runs as, or the error Popen would raise (FileNotFoundError,
    PermissionError): the CLI is started through setpriv, which would turn a missing CLI into an
    exit code. A relative path is taken in `cwd`, where the CLI is started. Also asked before
    the baseline (`check`, a session's start), so that a missing CLI costs nothing."""
    if os.sep in name:
        path = os.path.normpath(os.path.join(cwd, name))
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, "no such file", name)
        if not os.access(path, os.X_OK) or os.path.isdir(path):
            raise PermissionError(errno.EACCES, "not executable", name)
        return path
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


def _anonymous_log(max_bytes: int) -> BoundedLog:
    """A bounded log in a file that has no name left: nothing of it outlives this process,
    even a kill -9 of it."""
    fd, name = tempfile.mkstemp(prefix="autoresearch-agent-stderr-")
    os.close(fd)
    try:
        return BoundedLog(Path(name), max_bytes)
    finally:
        os.unlink(name)


class _PumpThread:
    """Moves the agent's output into its logs from a thread, so that the caller waits for the
    agent's exit as before (`wait_exit`) while a chatty agent is neither blocked on a full pipe
    nor able to write more than its logs' caps to the disk."""

    def __init__(self, pump: OutputPump) -> None:
        self._pump = pump
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="agent-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while self._pump.pipe_open and not self._stop.is_set():
                self._pump.step(_PUMP_STEP_S)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller (`finish`)
            # A log that cannot be written (disk full): the pipes are closed, so the agent
            # writing more gets EPIPE instead of blocking until its timeout.
            self.error = exc
            self._pump.close()

    def finish(self, within_s: float) -> None:
        """Read what is left for up to `within_s`, then stop (`error`: what went wrong)."""
        self._thread.join(within_s)
        self._stop.set()
        self._thread.join()


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
    """Run `argv` in `cwd`. Its stdout and stderr are read while it runs into logs of at most
    `max_log_bytes` each (the head, a marker, a rolling tail, as a verify run's log): stdout to
    `log` when given (kept), else, as stderr, to a file that is gone when the run is; a
    chatty agent can neither block, nor fill the memory or the disk. Only the end of each stream
    is read back."""
    started = time.monotonic()
    exe = find_executable(argv[0], env, cwd)
    launch, preexec = launch_plan([exe, *argv[1:]])
    cap = max_log_bytes if max_log_bytes is not None else DEFAULT_MAX_LOG_BYTES
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    out = BoundedLog(log, cap) if log is not None else _anonymous_log(cap)
    err: BoundedLog | None = None
    try:
        err = _anonymous_log(cap)
        return _supervise(launch, preexec, cwd=cwd, stdin_text=stdin_text, env=env,
                          timeout=timeout, run_id=run_id, out=out, err=err, log=log,
                          started=started)
    finally:
        out.close()
        if err is not None:
            err.close()


def _supervise(
    launch: list[str], preexec: Callable[[], None] | None, *, cwd: Path, stdin_text: str | None,
    env: Mapping[str, str], timeout: float, run_id: str, out: BoundedLog, err: BoundedLog,
    log: Path | None, started: float,
) -> AgentRun:
    """Start the agent, pump its output into `out` and `err` until it exits or times out, and
    leave nothing it started running."""
    guard = watchdog()
    guard.ensure_started()
    proc = strays.spawn(run_id, lambda: subprocess.Popen(
        launch,
        cwd=cwd,
        env=run_env(env, run_id),
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec,
    ), lambda p: p.pid)
    assert proc.stdout is not None and proc.stderr is not None
    pump = OutputPump([(proc.stdout, out), (proc.stderr, err)])
    tree = ProcessTree(proc, run_id)
    feeder: threading.Thread | None = None
    reader: _PumpThread | None = None
    killed = 0
    try:
        try:
            reader = _PumpThread(pump)
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
        if reader is not None:
            reader.finish(DRAIN_SECONDS)
        pump.close()
    if reader.error is not None:
        raise reader.error
    return AgentRun(
        returncode=None if timed_out else proc.returncode,
        stdout=_tail(out),
        stderr=_tail(err),
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        survivors_killed=killed,
        stdout_bytes=out.written,
        log=log,
    )
