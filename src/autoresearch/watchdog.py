"""The watchdog process: kills what an orchestrator started, once that orchestrator is gone.

Started by `lifeline.Watchdog` as ``python -I -c ... <owner token>``, in its own session, with a
pipe on stdin whose write end only the orchestrator holds. It reads the process groups of the
runs in progress (``+pgid`` / ``-pgid`` lines) until EOF, which comes when the orchestrator exits,
normally or not (kill -9, a crash): the kernel closes its descriptors either way. (It also sees
the orchestrator gone on each scan, in case a run's process holds the pipe open.) Then it kills
every process carrying the orchestrator's owner mark, every group still listed, every
descendant of the orchestrator it saw and every member of the sessions made inside its tree
(see `Descendants`), and exits. An EOF while the orchestrator still lives (it exec()'d) is not
its death: the watch goes on until it ends. After a normal exit nothing
is left and that costs one scan.

Why the descendants: a process that clears its environment and calls setsid() carries neither
the mark nor a run's group. While the orchestrator lives it is still one of its descendants (the
orchestrator is a child subreaper, see `strays`), but once the orchestrator is dead it belongs to
init and nothing tells it from any other process. So the watchdog looks at the tree while it can,
every `SCAN_INTERVAL_S`; what was started and escaped within the last interval before the
orchestrator died is the one thing it can miss.

It imports nothing heavy until it has work to do, so that it starts fast and stays small: the
periodic scan reads /proc directly (psutil only where there is no /proc).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from autoresearch.process_start import same_start

if TYPE_CHECKING:
    import psutil

# Each scan costs well under a millisecond on Linux for a tree of a few dozen processes (see
# `Descendants.scan`); four a second is nothing, and a daemon has to start and escape within a
# quarter of a second of the orchestrator's death to be missed.
SCAN_INTERVAL_S = 0.25


def read_groups(fd: int, tick: Callable[[], bool] = lambda: True,
                interval_s: float = SCAN_INTERVAL_S, *, past_eof: bool = False) -> set[int]:
    """Follow the protocol until EOF, or until ``tick`` (called at least every ``interval_s``)
    says the orchestrator is gone; the process groups still listed then.

    Not EOF alone: a run's process can open the pipe's write end through
    /proc/<orchestrator>/fd/ and hold it, and EOF then never comes (a reviewer's train.py did,
    and it and its daemon outlived a kill -9 of the orchestrator, and a resume after it). With
    ``past_eof`` (``tick`` can see the orchestrator), an EOF while it lives is not its death (an
    exec() closes the pipe): the watch goes on by ``tick`` alone."""
    groups: set[int] = set()
    pending = b""
    next_tick = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_tick:  # by the clock: a burst of lines does not make more scans
            if not tick():
                break
            next_tick = now + interval_s
        try:
            readable, _, _ = select.select([fd], [], [], max(0.0, next_tick - now))
        except InterruptedError:
            continue
        except (OSError, ValueError):
            break
        if not readable:
            continue
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            while past_eof and tick():
                time.sleep(interval_s)
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            try:
                pgid = int(line[1:])
            except ValueError:
                continue
            if line.startswith(b"+"):
                groups.add(pgid)
            elif line.startswith(b"-"):
                groups.discard(pgid)
    return groups


class Descendants:
    """Every process seen below ``root`` while ``root`` lived, each by pid and start time (a
    pid may be reused: only a process that still has the start time it was seen with counts),
    and the sessions made inside the tree.

    The record is a union, not the last snapshot: a process that left the tree (to init, when
    the root is not a subreaper) is still remembered. Entries are dropped once their process is
    gone, so the record stays the size of what is alive.

    ``created``: the root's start (seconds since the epoch, from the owner token). A root that
    cannot be seen as that process from here (its pid already another's, a /proc of another pid
    namespace) is not watched at all: only the pipe's EOF then tells of its death.
    """

    def __init__(self, root: int, created: float | None = None) -> None:
        self._root = root
        self._root_start = start_time(root) if _proc_is_ours() else None
        if created is not None and self._root_start is not None and not _started_at(
                root, created):
            self._root_start = None
        self._me = os.getpid()
        self.seen: dict[int, str] = {}
        # Sessions found to be made inside the tree -> clock ticks since boot when found.
        self._ours: dict[int, int] = {}
        self._not_ours: set[int] = set()
        # Never ours: the orchestrator's session (its user's shell is in it) and this one.
        self._spared = {0, os.getsid(0)}
        with contextlib.suppress(OSError):
            self._spared.add(os.getsid(root))

    @property
    def watching(self) -> bool:
        """Whether the root can be watched from here (else the pipe alone tells)."""
        return self._root_start is not None

    def scan(self) -> bool:
        """Record the tree below the root; whether the root still lives (True when it cannot
        be watched: see ``watching``)."""
        if self._root_start is None:
            return True
        if not alive_since(self._root, self._root_start):
            return False  # the root is gone (or its pid is another process's)
        tree = set(_tree_below(self._root))
        tree.discard(self._me)
        # A pid still in the tree is taken to be the process recorded under it: reading its
        # start time again would double the cost of a scan, and for its pid to have been
        # reused within the tree the process must have died and the kernel cycled through
        # every pid within one interval.
        for pid in [p for p in self.seen if p not in tree]:
            if start_time(pid) != self.seen[pid]:
                del self.seen[pid]
        checks = _SESSION_CHECKS_PER_SCAN
        for pid in tree - self.seen.keys():
            start = start_time(pid)
            if start is None:
                continue
            self.seen[pid] = start
            with contextlib.suppress(OSError):
                sid = os.getsid(pid)
                if _PROCFS and sid not in self._spared and sid not in self._ours \
                        and sid not in self._not_ours and checks > 0:
                    checks -= 1
                    self._judge_session(sid)
        return True

    def _judge_session(self, sid: int) -> None:
        """A session is ours when every process in it descends from the root: then it was made
        inside the tree (a session cannot be joined, only made, and what its members start stays
        in it). One with a process from outside (the user's terminal session, when the root
        left it after starting a child, say) never is."""
        found = {_descends_from(pid, self._root) for pid in _all_pids() if _session_of(pid) == sid}
        if False in found:
            self._not_ours.add(sid)
        elif True in found:
            self._ours[sid] = _ticks_now()
        # Else every member vanished while looked at (a daemon hopping pids): asked again later.

    def sessions(self) -> set[int]:
        """The sessions made inside the tree, as they are now: each lives on in every process
        its members start, so a daemon that called setsid() once and then forks a fresh copy of
        itself and exits every few milliseconds, never at a pid a look saw, is still found in it
        (a reviewer's outlived a kill -9 of the orchestrator). A session whose number a process
        started since has taken (its leader is younger than our finding) is another's."""
        found = set()
        for sid, when in self._ours.items():
            leader = start_time(sid)
            if leader is None or int(leader) <= when:
                found.add(sid)
        return found

    def survivors(self) -> list[psutil.Process]:
        """The recorded processes still alive as the same processes (psutil's handles refuse
        to signal a pid reused after this)."""
        import psutil

        found = []
        for pid, start in self.seen.items():
            try:
                proc = psutil.Process(pid)
            except psutil.Error:
                continue
            if start_time(pid) == start:
                found.append(proc)
        return found


_SESSION_CHECKS_PER_SCAN = 20  # each reads every process's session: a setsid() loop is bounded


_PROCFS = sys.platform.startswith("linux") and os.path.isdir("/proc/self/task")
_CLOCK_TICKS: int = int(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100


def start_time(pid: int) -> str | None:
    """When ``pid`` started, in the kernel's clock ticks since boot (Linux; psutil's create
    time elsewhere); None when there is no such process."""
    if not _PROCFS:
        import psutil

        try:
            return repr(psutil.Process(pid).create_time())
        except psutil.Error:
            return None
    fields = _stat_fields(pid)
    return fields[19].decode() if fields is not None and len(fields) > 19 else None


def alive_since(pid: int, start: str) -> bool:
    """Whether ``pid`` is the process that started at ``start`` and has not died (a zombie,
    dead but not yet reaped by its parent, counts as gone)."""
    if not _PROCFS:
        return start_time(pid) == start
    fields = _stat_fields(pid)
    return (fields is not None and len(fields) > 19 and fields[19].decode() == start
            and fields[0] != b"Z")


def _proc_is_ours() -> bool:
    """Whether /proc shows this process's pid namespace (not so in a namespace made without
    its own /proc mount: /proc/<pid> is then another process)."""
    if not _PROCFS:
        return True  # psutil's view, whatever it is
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def _started_at(pid: int, created: float) -> bool:
    """Whether ``pid`` started at ``created`` (seconds since the epoch, psutil's measure, as
    the owner token records it): the token's process, not one that reused its pid. The boot
    time's whole-second moves are allowed for as `process_start` says (judged without them, the
    watchdog of a live orchestrator would stop watching its tree and rely on the pipe alone)."""
    ticks = start_time(pid)
    if ticks is None:
        return False
    if not _PROCFS:
        return same_start(float(ticks), created)
    try:
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, StopIteration, ValueError):
        return True  # cannot tell: the pid alone, as before
    return same_start(boot + int(ticks) / _CLOCK_TICKS, created)  # psutil's own sum


def _ticks_now() -> int:
    """Clock ticks since boot, the unit of a process's start time in /proc."""
    try:
        with open("/proc/uptime", "rb") as f:
            return uptime_ticks(f.read().split()[0].decode())
    except (OSError, ValueError, IndexError):
        return 0


def uptime_ticks(seconds: str) -> int:
    """/proc/uptime's seconds (``"1230.09"``) as clock ticks, exactly: through a float, 1 in 22
    values lost a tick (1230.09 × 100 = 123008.99…), and a session found in the same tick as
    its leader started was then taken for another's."""
    whole, _, fraction = seconds.partition(".")
    scale: int = 10 ** len(fraction)
    return int(whole) * _CLOCK_TICKS + int(fraction or 0) * _CLOCK_TICKS // scale


def _all_pids() -> list[int]:
    if _PROCFS:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    import psutil

    return psutil.pids()


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _descends_from(pid: int, root: int) -> bool | None:
    """Whether ``root`` is an ancestor of ``pid``, by parent links read now; None when a process
    on the way exited while it was read (nothing can be told of it)."""
    for _ in range(256):
        if _PROCFS:
            fields = _stat_fields(pid)
            if fields is None or len(fields) < 2:
                return None
            pid = int(fields[1])
        else:
            import psutil

            try:
                pid = psutil.Process(pid).ppid()
            except psutil.Error:
                return None
        if pid == root:
            return True
        if pid <= 1:
            return False
    return False


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and
    parentheses): the state first (the line's 3rd field), the start time at [19] (its 22nd)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()


def _tree_below(root: int) -> list[int]:
    """The live descendants of ``root``: through /proc/<pid>/task/<tid>/children (only the tree
    is read), else psutil (which looks at every process of the machine)."""
    if _PROCFS and os.path.exists(f"/proc/{root}/task/{root}/children"):
        found: list[int] = []
        todo = [root]
        while todo:
            pid = todo.pop()
            for child in _children(pid):
                found.append(child)
                todo.append(child)
        return found
    import psutil

    try:
        return [p.pid for p in psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        return []


def _children(pid: int) -> list[int]:
    # Children are listed per thread: a run's first process is the child of the thread that
    # started it.
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    children: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                children.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return children


def main() -> None:
    owner = sys.argv[1]
    # Only the orchestrator's end ends our watch: terminal signals are for it (we are in our own
    # session, but a user may still signal the group by hand).
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    raw_pid, _, raw_created = owner.partition(":")
    created = None
    with contextlib.suppress(ValueError):
        created = float(raw_created)
    below = Descendants(int(raw_pid), created)
    groups = read_groups(0, below.scan, past_eof=below.watching)
    from autoresearch.process_tree import kill_owned

    kill_owned(owner, groups, below.survivors(), sessions=below.sessions())


if __name__ == "__main__":
    main()
