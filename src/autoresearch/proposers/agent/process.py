"""Run an agent CLI as its own process group, bounded by a timeout.

Coding agents spawn children (shells, language servers, test runs). Killing only the CLI would
leave them writing into the worktree while the harness commits it, so the CLI starts a new
session (its own process group) and the whole group is terminated on timeout or interrupt:
SIGTERM first, SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class AgentRun:
    returncode: int | None  # None when it was killed on timeout
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, GRACE_SECONDS)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; children that outlived it still hold the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


def run_agent(
    argv: Sequence[str],
    *,
    cwd: Path,
    stdin_text: str | None,
    env: Mapping[str, str],
    timeout: float,
) -> AgentRun:
    """Run `argv` in `cwd`; output goes to temporary files so a chatty agent cannot block."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.communicate(
                input=None if stdin_text is None else stdin_text.encode("utf-8"), timeout=timeout
            )
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:
            _kill_group(proc)  # Ctrl-C during the agent: leave nothing running behind
            raise
        else:
            # The CLI exited; anything it left running in its group must not outlive it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        out.seek(0)
        err.seek(0)
        return AgentRun(
            returncode=None if timed_out else proc.returncode,
            stdout=out.read().decode("utf-8", errors="replace"),
            stderr=err.read().decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
        )
