"""The watchdog process: kills what an orchestrator started, once that orchestrator is gone.

Started by `lifeline.Watchdog` as ``python -I -c ... <owner token>``, in its own session, with a
pipe on stdin whose write end only the orchestrator holds. It reads the process groups of the
runs in progress (``+pgid`` / ``-pgid`` lines) until EOF, which comes when the orchestrator exits,
normally or not (kill -9, a crash): the kernel closes its descriptors either way. (It also sees
the orchestrator gone on each scan, in case a run's process holds the pipe open.) Then it kills
every process carrying the orchestrator's owner mark, every group still listed, every
descendant of the orchestrator it saw and every member of their sessions but the orchestrator's
own (see `Descendants`), and exits. After a normal exit nothing
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

if TYPE_CHECKING:
    import psutil

# Each scan costs well under a millisecond on Linux for a tree of a few dozen processes (see
# `Descendants.scan`); four a second is nothing, and a daemon has to start and escape within a
# quarter of a second of the orchestrator's death to be missed.
SCAN_INTERVAL_S = 0.25


def read_groups(fd: int, tick: Callable[[], bool] = lambda: True,
                interval_s: float = SCAN_INTERVAL_S) -> set[int]:
    """Follow the protocol until EOF, or until ``tick`` (called at least every ``interval_s``)
    says the orchestrator is gone; the process groups still listed then.

    Not EOF alone: a run's process can open the pipe's write end through
    /proc/<orchestrator>/fd/ and hold it, and EOF then never comes (a reviewer's train.py did,
    and it and its daemon outlived a kill -9 of the orchestrator, and a resume after it)."""
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
    pid may be reused: only a process that still has the start time it was seen with counts).

    The record is a union, not the last snapshot: a process that left the tree (to init, when
    the root is not a subreaper) is still remembered. Entries are dropped once their process is
    gone, so the record stays the size of what is alive.
    """

    def __init__(self, root: int) -> None:
        self._root = root
        self._root_start = start_time(root)
        self._me = os.getpid()
        self.seen: dict[int, str] = {}
        self._sessions: dict[int, int] = {}  # pid -> its session when it was first seen
        # Never to be killed: the orchestrator's session (its user's shell is in it) and ours.
        # Read now: once the orchestrator is dead its session can no longer be asked.
        self._root_session: int | None = None
        with contextlib.suppress(OSError):
            self._root_session = os.getsid(root)
        self._spared = {0, os.getsid(0), self._root_session}

    def scan(self) -> bool:
        """Record the tree below the root; whether the root still lives (True when it could
        not be seen from the start: a /proc of another pid namespace, say, and then only the
        pipe's EOF tells)."""
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
                self._sessions.pop(pid, None)
        for pid in tree - self.seen.keys():
            start = start_time(pid)
            if start is not None:
                self.seen[pid] = start
                with contextlib.suppress(OSError):
                    self._sessions[pid] = os.getsid(pid)
        return True

    def sessions(self) -> set[int]:
        """The sessions of the recorded processes, but the orchestrator's own (its user's
        terminal is in it) and ours. Nothing outside the orchestrator's tree can join one of
        them, and each lives on in every process its members start: a daemon that called
        setsid() once and then forks a fresh copy of itself and exits every few milliseconds
        is never at a pid a look saw, but it stays in the session a look saw (a reviewer's
        outlived a kill -9 of the orchestrator)."""
        if self._root_session is None:
            return set()  # the orchestrator's session is unknown: none can be told safe
        return {sid for sid in self._sessions.values() if sid not in self._spared}

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


_PROCFS = sys.platform.startswith("linux") and os.path.isdir("/proc/self/task")


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
    # Only EOF ends our watch: terminal signals are for the orchestrator (we are in our own
    # session, but a user may still signal the group by hand).
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    below = Descendants(int(owner.partition(":")[0]))
    groups = read_groups(0, below.scan)
    from autoresearch.process_tree import kill_owned

    kill_owned(owner, groups, below.survivors(), sessions=below.sessions())


if __name__ == "__main__":
    main()
