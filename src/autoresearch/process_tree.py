"""The processes of a run: find them by process group and run id, and kill all of them.

The command runs in its own session so a process-group signal reaches its children. That is
not enough on its own: anything that calls setsid() (daemons, some launchers) leaves the group.
So every process of a run inherits ``AUTORESEARCH_RUN_ID`` and, when the run ends for any
reason, we scan ``/proc/*/environ`` for that exact value and kill what we find. The scan costs
well under a millisecond on a typical machine, so it is done after every run, not only after
timeouts: a command that exits 0 but leaves a daemon behind must not leave a survivor either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

__all__ = ["RUN_ID_ENV", "ProcessTree", "has_exited", "kill_leftovers"]

RUN_ID_ENV = "AUTORESEARCH_RUN_ID"

_READ_CHUNK = 1 << 16


class _Stepper(Protocol):
    """What keeps the run's output flowing while we wait for its processes to die."""

    def step(self, timeout_s: float) -> None: ...


def has_exited(pid: int) -> bool:
    # WNOWAIT leaves the child a zombie: while it exists its pid cannot be reused, so the
    # later killpg(pid, ...) cannot hit an unrelated process group.
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


class ProcessTree:
    """The processes of one run: its process group plus anything carrying its run id."""

    def __init__(self, proc: subprocess.Popen[bytes], run_id: str) -> None:
        self._proc = proc
        self._match = _exact_matcher(run_id)

    def terminate(self, grace_s: float, pump: _Stepper | None) -> int:
        """SIGTERM everything, wait up to ``grace_s`` (still pumping output), then SIGKILL.

        Returns how many distinct live processes were found and signalled.
        """
        pgid = self._proc.pid
        # Scan before the group signal, or processes it kills at once would go uncounted.
        current = set(_scan(self._match))
        # The child is still an unreaped zombie here, so this cannot hit a reused pgid.
        _signal_group(pgid, signal.SIGTERM)
        seen: set[int] = set()
        end = time.monotonic() + grace_s
        while True:
            # Also signals children forked after the first round.
            _signal_all(current - seen, signal.SIGTERM)
            seen |= current
            # Checked before sleeping so the common case (nothing left) costs one scan.
            if (not current and has_exited(pgid)) or time.monotonic() >= end:
                break
            if pump is not None:
                pump.step(0.02)
            else:
                time.sleep(0.02)
            current = set(_scan(self._match))
        # Group members that dropped the run id get no grace beyond this point; SIGKILL
        # reaches them through the group.
        _signal_group(pgid, signal.SIGKILL)
        if seen:
            seen |= _kill_until_gone(self._match)
        return len(seen)


def _kill_until_gone(match: Callable[[bytes], bool], rounds: int = 50) -> set[int]:
    # Repeat because a process may fork between our scan and our signal.
    killed: set[int] = set()
    for _ in range(rounds):
        current = set(_scan(match))
        if not current:
            break
        killed |= current
        _signal_all(current, signal.SIGKILL)
        time.sleep(0.005)
    return killed


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# ---- finding processes by run id -------------------------------------------------------


def _exact_matcher(run_id: str) -> Callable[[bytes], bool]:
    entry = f"{RUN_ID_ENV}={run_id}".encode()
    bounded = b"\0" + entry + b"\0"

    def match(environ: bytes) -> bool:
        # Cheap substring test first; the bounded test rules out ids that merely share a prefix.
        return entry in environ and bounded in b"\0" + environ

    return match


def _prefix_matcher(prefix: str) -> Callable[[bytes], bool]:
    entry = f"\0{RUN_ID_ENV}={prefix}".encode()

    def match(environ: bytes) -> bool:
        return entry in b"\0" + environ

    return match


def _read_environ(pid: str) -> bytes:
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        parts = []
        while chunk := os.read(fd, _READ_CHUNK):
            parts.append(chunk)
        return b"".join(parts)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _scan(match: Callable[[bytes], bool]) -> list[int]:
    """Pids of live processes whose environment matches (zombies have an empty one)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []  # no procfs: the process-group kill is all we have
    protected = _protected_pids()
    found = []
    for name in names:
        if name.isdigit() and int(name) not in protected and match(_read_environ(name)):
            found.append(int(name))
    return found


def _protected_pids() -> set[int]:
    """Ourselves and, when we run inside another run, our ancestors: never kill those."""
    pids = {os.getpid()}
    if RUN_ID_ENV not in os.environ:
        return pids
    pid = os.getppid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def kill_leftovers(run_id_prefix: str, grace_s: float = 2.0) -> int:
    """Kill every process whose AUTORESEARCH_RUN_ID starts with ``run_id_prefix``.

    For resuming after the orchestrator itself was SIGKILLed. Returns how many were killed.
    """
    if not run_id_prefix:
        raise ValueError("kill_leftovers needs a non-empty run id prefix")
    match = _prefix_matcher(run_id_prefix)
    seen = set(_scan(match))
    _signal_all(seen, signal.SIGTERM)
    end = time.monotonic() + grace_s
    while seen and time.monotonic() < end:
        time.sleep(0.02)
        current = set(_scan(match))
        if not current:
            break
        _signal_all(current - seen, signal.SIGTERM)
        seen |= current
    return len(seen | _kill_until_gone(match))
