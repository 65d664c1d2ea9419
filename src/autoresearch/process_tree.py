"""The processes of a run: find them and kill all of them, whoever started them and however.

Every process of a run (a verify command, a guard, a coding agent) starts in its own session, so
a process-group signal reaches its children, and inherits two environment variables:

    AUTORESEARCH_RUN_ID     the run, ``ar-<repo>-<tag>:<id>``: what is left of a run when it ends
                            is found by its exact id, a session's leftovers by the prefix;
    AUTORESEARCH_RUN_OWNER  the orchestrator process that started it (``<pid>:<start time>``):
                            a process whose owner no longer exists is an orphan, whatever session
                            or tag it belonged to (``kill_orphans``), and the watchdog kills every
                            process of its owner when that owner dies (see ``lifeline``).

The group alone is not enough (anything that calls setsid() leaves it), nor is the environment
(a process may clear it), so a run's processes are the union of its group, every process whose
environment carries its id, and, while its first process is alive, that process's descendants.

Platforms: Linux fully. Elsewhere (macOS) the environment scan goes through psutil, which reads
the environments of the user's own processes; the rest is POSIX. On Linux the scan reads
``/proc/<pid>/environ`` directly: psutil's ``environ()`` parses every environment into a dict,
8-10 times slower (7 ms against 0.8 ms for 92 processes here), and the scan runs after every
run, so it is part of every experiment's overhead (bench/overhead.py).
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import psutil

from autoresearch.process_start import same_start

__all__ = [
    "OWNER_ENV",
    "RUN_ID_ENV",
    "ProcessTree",
    "has_exited",
    "kill_leftovers",
    "kill_orphans",
    "kill_owned",
    "owner_alive",
    "owner_token",
    "wait_exit",
]

RUN_ID_ENV = "AUTORESEARCH_RUN_ID"
OWNER_ENV = "AUTORESEARCH_RUN_OWNER"

_READ_CHUNK = 1 << 16
_PROCFS = sys.platform.startswith("linux") and os.path.isdir("/proc/self")


class _Stepper(Protocol):
    """What keeps the run's output flowing while we wait for its processes to die."""

    def step(self, timeout_s: float) -> None: ...


# ---- who owns a run ----------------------------------------------------------------------


@functools.cache
def _token_of(pid: int) -> str:
    try:
        return f"{pid}:{psutil.Process(pid).create_time():.3f}"
    except psutil.Error:
        return str(pid)


def owner_token() -> str:
    """This process as a run's owner: its pid and start time (a reused pid is another owner)."""
    return _token_of(os.getpid())  # keyed by pid: a forked child is another owner


def owner_alive(token: str) -> bool:
    """Whether the orchestrator named by ``token`` (see ``owner_token``) is still running."""
    raw_pid, _, raw_start = token.partition(":")
    try:
        pid = int(raw_pid)
        proc = psutil.Process(pid)
        if raw_start and not same_start(proc.create_time(), float(raw_start)):
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (ValueError, psutil.NoSuchProcess):
        return False
    except psutil.AccessDenied:
        return True  # it exists; we may not look at it, so we may not call it dead


def owned_prefix(prefix: str) -> str:
    """A name prefix for a temporary directory that names this process as its owner, so that
    what a killed process left can be told from what a live one uses (`owner_gone`)."""
    return f"{prefix}{owner_token().replace(':', '_')}-"


def owner_gone(name: str, prefix: str) -> bool:
    """Whether `name`, made with `owned_prefix(prefix)` (+ tempfile's suffix, which has no
    '-'), belongs to a process that is gone."""
    if not name.startswith(prefix):
        return False
    owner = name[len(prefix):].rpartition("-")[0].replace("_", ":")
    return owner[:1].isdigit() and not owner_alive(owner)


# ---- the children of this process --------------------------------------------------------


def has_exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited, without reaping it.

    WNOWAIT leaves the child a zombie: while it exists its pid cannot be reused, so the later
    killpg(pid, ...) cannot hit an unrelated process group.
    """
    if not hasattr(os, "waitid"):  # macOS: ask without waiting at all
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def wait_exit(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for our child ``pid`` to exit, without reaping it (see
    ``has_exited``). True when it exited."""
    deadline = time.monotonic() + timeout_s
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)  # readable once the process exits (Linux >= 5.3)
    try:
        while not has_exited(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if pidfd is None:
                time.sleep(min(left, 0.05))
            else:
                select.select([pidfd], [], [], min(left, 1.0))
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _descendants(pid: int) -> list[psutil.Process]:
    """The live descendants of ``pid`` (they may have cleared their environment)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    live = []
    for child in children:
        # One that exits meanwhile is left out, not taken for a sign that there are none.
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                live.append(child)
    return live


class ProcessTree:
    """The processes of one run: its process group, anything carrying its run id, and the
    descendants of its first process."""

    def __init__(self, proc: subprocess.Popen[bytes], run_id: str) -> None:
        self._proc = proc
        self._entry = _exact_entry(run_id)

    def _find(self) -> set[int]:
        return {pid for pid, _ in _environs(self._entry, exact=True)}

    def terminate(self, grace_s: float, pump: _Stepper | None) -> int:
        """SIGTERM everything, wait up to ``grace_s`` (still pumping output), then SIGKILL.

        Returns how many distinct live processes were found and signalled.
        """
        pgid = self._proc.pid
        # Scan before the group signal, or processes it kills at once would go uncounted.
        current = self._find()
        # The tree matters only while the first process lives (a timeout or a stop): once it
        # has exited its children belong to init, and the scan is what finds them.
        tree = [] if has_exited(pgid) else _descendants(pgid)
        current |= {p.pid for p in tree}
        # The child is still an unreaped zombie here, so this cannot hit a reused pgid.
        _signal_group(pgid, signal.SIGTERM)
        _signal_procs(tree, signal.SIGTERM)
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
            current = self._find() | {p.pid for p in tree if _running(p)}
        # Group members that dropped the run id get no grace beyond this point; SIGKILL
        # reaches them through the group, and the ones that also left it through the tree.
        _signal_group(pgid, signal.SIGKILL)
        _signal_procs(tree, signal.SIGKILL)
        if seen:
            seen |= _kill_until_gone(self._find)
        return len(seen)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_until_gone(find: Callable[[], set[int]], rounds: int = 50) -> set[int]:
    # Repeat because a process may fork between our scan and our signal.
    killed: set[int] = set()
    for _ in range(rounds):
        current = find()
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


def _signal_procs(procs: Iterable[psutil.Process], sig: int) -> None:
    # psutil refuses to signal a pid that has been reused since it was looked up.
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


# ---- finding processes by their environment ----------------------------------------------


def _exact_entry(run_id: str) -> bytes:
    return f"{RUN_ID_ENV}={run_id}".encode()


def _environs(needle: bytes, *, exact: bool = False) -> Iterator[tuple[int, bytes]]:
    """(pid, environment block) of live processes with an entry starting with ``needle``
    (``exact``: an entry equal to it). Zombies have an empty environment; we and, when we run
    inside another run, our ancestors are never returned."""
    protected = _protected_pids()
    bounded = b"\0" + needle + (b"\0" if exact else b"")
    for pid, block in _all_environs(needle):
        if pid not in protected and bounded in b"\0" + block + b"\0":
            yield pid, block


def _all_environs(needle: bytes) -> Iterator[tuple[int, bytes]]:
    if _PROCFS:
        try:
            names = os.listdir("/proc")
        except OSError:
            return
        for name in names:
            if name.isdigit():
                block = _read_environ(name)
                # A cheap substring test first: most processes are not ours.
                if needle in block:
                    yield int(name), block
        return
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        block = "\0".join(f"{k}={v}" for k, v in env.items()).encode(errors="surrogateescape")
        if needle in block:
            yield proc.pid, block


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


def _value(block: bytes, name: str) -> str | None:
    for entry in block.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key == name.encode():
            return value.decode(errors="replace")
    return None


def _protected_pids() -> set[int]:
    """Ourselves and, when we run inside another run, our ancestors: never kill those."""
    pids = {os.getpid()}
    if RUN_ID_ENV not in os.environ:
        return pids
    with contextlib.suppress(psutil.Error):
        pids.update(p.pid for p in psutil.Process().parents())
    return pids


# ---- killing what an earlier orchestrator left -------------------------------------------


def _kill_found(find: Callable[[], set[int]], grace_s: float, groups: Iterable[int] = (),
                procs: Iterable[psutil.Process] = ()) -> int:
    """SIGTERM what ``find`` finds (and the process groups, and ``procs``), SIGKILL what is
    left after ``grace_s``. Returns how many processes ``find`` found."""
    groups, procs = list(groups), list(procs)
    seen = find()
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    _signal_all(seen, signal.SIGTERM)
    _signal_procs(procs, signal.SIGTERM)
    end = time.monotonic() + grace_s
    while (seen or procs) and time.monotonic() < end:
        time.sleep(0.02)
        procs = [p for p in procs if _running(p)]
        current = find()
        if not current and not procs:
            break
        _signal_all(current - seen, signal.SIGTERM)
        seen |= current
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)
    _signal_procs(procs, signal.SIGKILL)
    return len(seen | _kill_until_gone(find))


def kill_leftovers(run_id_prefix: str, grace_s: float = 2.0, *,
                   orphans_of: str | None = None) -> int:
    """Kill every process whose AUTORESEARCH_RUN_ID starts with ``run_id_prefix`` and, with
    ``orphans_of``, every process whose run id starts with that and whose orchestrator (its
    AUTORESEARCH_RUN_OWNER) is dead.

    For resuming: a session's own tag (it holds the session's lock, so no live orchestrator owns
    those) and what a session of any tag of the repository left behind when it was killed,
    while the live sessions of other tags keep their runs. Returns how many were killed.
    """
    if not run_id_prefix or orphans_of == "":
        raise ValueError("kill_leftovers needs a non-empty run id prefix")
    own = _prefix_finder(run_id_prefix)
    if orphans_of is None:
        return _kill_found(own, grace_s)
    orphans = _orphan_finder(orphans_of)
    return _kill_found(lambda: own() | orphans(), grace_s)


def kill_orphans(run_id_prefix: str, grace_s: float = 2.0) -> int:
    """Kill every process whose run id starts with ``run_id_prefix`` and whose orchestrator is
    dead (see ``kill_leftovers``). Returns how many were killed."""
    if not run_id_prefix:
        raise ValueError("kill_orphans needs a non-empty run id prefix")
    return _kill_found(_orphan_finder(run_id_prefix), grace_s)


def _prefix_finder(run_id_prefix: str) -> Callable[[], set[int]]:
    needle = f"{RUN_ID_ENV}={run_id_prefix}".encode()
    return lambda: {pid for pid, _ in _environs(needle)}


def _orphan_finder(run_id_prefix: str) -> Callable[[], set[int]]:
    needle = f"{RUN_ID_ENV}={run_id_prefix}".encode()

    def find() -> set[int]:
        alive: dict[str, bool] = {}
        found = set()
        for pid, block in _environs(needle):
            owner = _value(block, OWNER_ENV)
            if owner is None:
                continue  # started by a version that did not mark owners: only its own tag's
            if owner not in alive:
                alive[owner] = owner_alive(owner)
            if not alive[owner]:
                found.add(pid)
        return found

    return find


def kill_owned(owner: str, groups: Iterable[int] = (), procs: Iterable[psutil.Process] = (),
               grace_s: float = 2.0, *, sessions: Iterable[int] = ()) -> int:
    """Kill every process started by the orchestrator ``owner``, the given process groups
    (members that cleared their environment are found only through them), ``procs`` (the
    orchestrator's descendants the watchdog saw: those that also left every group) and every
    member of ``sessions`` (theirs: found again each round, so a process that keeps forking
    new pids is caught under its session). The watchdog's job when that orchestrator dies.
    Returns how many processes were found by their mark or session."""
    needle = f"{OWNER_ENV}={owner}".encode()
    wanted = set(sessions)
    return _kill_found(lambda: {pid for pid, _ in _environs(needle, exact=True)}
                       | _session_members(wanted), grace_s, groups, procs)


def _session_members(sessions: set[int]) -> set[int]:
    """The processes in any of ``sessions`` (this process spared)."""
    if not sessions:
        return set()
    found, me = set(), os.getpid()
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if pid != me and os.getsid(pid) in sessions:
                found.add(pid)
    return found
