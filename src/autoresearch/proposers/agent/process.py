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

from autoresearch import strays
from autoresearch.lifeline import launch_plan, run_env, watchdog
from autoresearch.process_tree import ProcessTree, wait_exit

GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class AgentRun:
    returncode: int | None  # None when it was killed on timeout
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool
    survivors_killed: int = 0  # processes still running when it ended (the CLI on a timeout)


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
) -> AgentRun:
    """Run `argv` in `cwd`; output goes to temporary files so a chatty agent cannot block."""
    started = time.monotonic()
    exe = _executable(argv[0], env)
    launch, preexec = launch_plan([exe, *argv[1:]])
    guard = watchdog()
    guard.ensure_started()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
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
            strays.forget(proc.pid)
            killed += strays.sweep(GRACE_SECONDS)
        out.seek(0)
        err.seek(0)
        return AgentRun(
            returncode=None if timed_out else proc.returncode,
            stdout=out.read().decode("utf-8", errors="replace"),
            stderr=err.read().decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
            survivors_killed=killed,
        )
