"""Orphans come back to the orchestrator, and die after the run or agent call that left them.

A process that clears its environment (`env -i`) and leaves its run's session (`setsid`, a
double fork) carries no mark and no group a `ProcessTree` could find it by; once the run's first
process is gone it is not a descendant of anything we watch either. Without help the kernel hands
it to init and it outlives the run, the session and the orchestrator, free to rewrite the worktree
while later runs are measured (a coding agent's daemon did exactly that).

On Linux the orchestrator makes itself a *child subreaper* (`prctl(PR_SET_CHILD_SUBREAPER)`,
`adopt_orphans`, once when the `autoresearch` command starts): every orphaned descendant is then
re-parented to the orchestrator instead of init, so it stays one of our children. After every run
and every agent call, `sweep` kills the strays among them (SIGTERM, SIGKILL after a grace period,
then whatever they started in turn) and reaps the ones that already died. Meanwhile a thread reaps
each one that dies, within a fraction of a second (`reap_dead_strays`): the kernel hands the dead
to us as zombies, and unreaped they fill the process table.

Which of our children is a stray? Our own helpers (git, setpriv's probe) stay in our session: a
process that left it can never come back (a session cannot be joined, only created), so anything
in our session is ours. Outside it: the first process of every run or agent call in progress
(registered by `spawn` while a lock keeps the sweep from looking), our helpers that run in a
session of their own (`spawn_helper`: the watchdog, git with a time limit, a reviewer's analyzer,
which the code that started them waits for), a process in the
session or process group of a run in progress (a shell's orphaned grandchild in a pipeline of
another slot's run), and a process carrying a live run's id (`AUTORESEARCH_RUN_ID`) all belong to
something still running and are left alone: a sibling slot's live run is never touched. The rest
were left behind by a finished run or agent call. A process that cleared its environment *and*
left its run's session while that run goes on cannot be told from a stray, so it may die as soon
as any other run of the session ends: that is the price of catching the daemons.

Only the `autoresearch` command turns this on: a library user (the test suite) keeps its process
as it is, and `sweep` does nothing there. Elsewhere than Linux there is no subreaper, and the
process tree's other means (marks, groups, the watchdog) are what there is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psutil

from autoresearch.process_tree import RUN_ID_ENV

__all__ = ["adopt_orphans", "adopting", "forget", "reap_dead_strays", "spawn", "spawn_helper",
           "sweep"]

_PR_SET_CHILD_SUBREAPER = 36
_KILL_ROUNDS_S = 2.0  # how long SIGKILL rounds go on after the grace period
_REAP_EVERY_S = 0.2  # how often dead strays are reaped while runs go on
T = TypeVar("T")


class _State:
    def __init__(self) -> None:
        # Held while a run's first process is started and registered, and while the sweep
        # decides what is a stray: a run started by another thread is never caught half-born.
        self.lock = threading.Lock()
        self.enabled = False
        self.runs: dict[int, bytes] = {}  # first process of a live run -> its run id entry
        self.helpers: set[int] = set()  # our own processes in other sessions (the watchdog)
        # pid -> what `spawn` or `spawn_helper` started under it: `forget` drops a registration
        # only for the process it was made for. Once that process is reaped its pid is free, and
        # a run started meanwhile in another slot may get it before its `forget` comes.
        self.handles: dict[int, object] = {}


_STATE = _State()


def adopt_orphans() -> bool:
    """Make this process the child subreaper of everything it starts (Linux), and turn on the
    sweep after every run. True when it took effect."""
    from autoresearch.lifeline import load_prctl  # here: lifeline imports this module

    prctl = load_prctl()
    if prctl is None or prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return False
    with _STATE.lock:
        if _STATE.enabled:
            return True
        _STATE.enabled = True
    threading.Thread(target=_reap_while_alive, name="autoresearch-reaper", daemon=True).start()
    return True


def adopting() -> bool:
    """Whether orphans come back to this process and strays are swept."""
    return _STATE.enabled


def spawn(run_id: str, start: Callable[[], T], pid_of: Callable[[T], int]) -> T:
    """Start a run's (or agent call's) first process with ``start`` and register it as live
    until ``forget``; a sweep cannot run in between."""
    with _STATE.lock:
        started = start()
        pid = pid_of(started)
        _STATE.runs[pid] = f"{RUN_ID_ENV}={run_id}".encode()
        _STATE.helpers.discard(pid)  # a helper's pid, reused: that helper is gone
        _STATE.handles[pid] = started
        return started


def spawn_helper(start: Callable[[], T], pid_of: Callable[[T], int]) -> T:
    """Start one of our own long-lived processes outside our session (the watchdog)."""
    with _STATE.lock:
        started = start()
        pid = pid_of(started)
        _STATE.helpers.add(pid)
        _STATE.runs.pop(pid, None)  # a run's pid, reused: that run's first process is gone
        _STATE.handles[pid] = started
        return started


def forget(pid: int, handle: object) -> None:
    """A run's first process (or a helper) has been reaped: what it left is now a stray.
    `handle` is what `spawn` returned for it: a later process given the same pid keeps its own
    registration (dropping it would expose a live run to the sweep and its status to the
    reaper)."""
    with _STATE.lock:
        if _STATE.handles.get(pid) is not handle:
            return
        del _STATE.handles[pid]
        _STATE.runs.pop(pid, None)
        _STATE.helpers.discard(pid)


def sweep(grace_s: float) -> int:
    """Kill every stray child of this process and what it started: SIGTERM, SIGKILL after
    ``grace_s``, until none is left; reap them. Returns how many were found (0 when the sweep
    is off: see ``adopt_orphans``)."""
    if not _STATE.enabled:
        return 0
    found = _strays()
    if not found:
        return 0  # the common case costs one look at our children
    seen: set[int] = set()
    deadline = time.monotonic() + grace_s
    sig = signal.SIGTERM
    # Each round also takes what the last one orphaned (it has come back to us); the bound
    # only stops a fork loop we cannot outpace from holding the session forever.
    while time.monotonic() < deadline + _KILL_ROUNDS_S:
        procs = _with_descendants(found)
        seen |= {p.pid for p in procs} | found
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        time.sleep(0.02)
        _reap(found)
        found = _strays()
        if not found:
            break
        if time.monotonic() >= deadline:
            sig = signal.SIGKILL
    return len(seen)


def _strays() -> set[int]:
    with _STATE.lock:
        runs = dict(_STATE.runs)
        helpers = set(_STATE.helpers)
        mine = os.getpid()
        own_session = os.getsid(0)
        strays = set()
        for pid in _children():
            if pid in runs or pid in helpers or pid == mine:
                continue
            try:
                session, group = os.getsid(pid), os.getpgid(pid)
            except OSError:
                continue  # reaped meanwhile
            if session == own_session:
                continue  # our own helpers: nothing that left our session comes back
            if session in runs or group in runs:
                continue  # part of a run still going; its end will deal with it
            environ = b"\0" + _environ(pid) + b"\0"
            if any(b"\0" + entry + b"\0" in environ for entry in runs.values()):
                continue
            strays.add(pid)
        return strays


def _children() -> Iterator[int]:
    """Our children: /proc/self/task/*/children (microseconds), else psutil (a scan of all)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        tasks = []
    pids: set[int] = set()
    readable = False
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                pids.update(int(p) for p in f.read().split())
            readable = True
        except (OSError, ValueError):
            continue
    if not readable:
        with contextlib.suppress(psutil.Error):
            pids = {p.pid for p in psutil.Process().children()}
    return iter(sorted(pids))


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _with_descendants(pids: set[int]) -> list[psutil.Process]:
    """The live processes among `pids` and their descendants, from one look at the process
    table: asking each process for its children scans the whole table each time, which took
    minutes (and held the session past its own timeout) with the thousands a fork loop leaves."""
    children: dict[int, list[psutil.Process]] = {}
    by_pid: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["ppid", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE or info["ppid"] is None:
            continue  # dead already: nothing to signal
        by_pid[proc.pid] = proc
        children.setdefault(info["ppid"], []).append(proc)
    found: dict[int, psutil.Process] = {}
    todo = [by_pid[pid] for pid in pids if pid in by_pid]
    while todo:
        proc = todo.pop()
        if proc.pid not in found:
            found[proc.pid] = proc
            todo.extend(children.get(proc.pid, ()))
    return list(found.values())


def _reap_while_alive() -> None:
    """Reap the strays that die while runs go on. Orphans come back to us when they die, as
    zombies, and each holds a pid until it is reaped: a run forking short-lived daemons in a
    loop filled the machine's process table (32,000 zombies; no process could start anywhere)
    long before its run ended and a sweep came."""
    while True:
        time.sleep(_REAP_EVERY_S)
        with contextlib.suppress(Exception):  # a daemon thread must not die of a /proc race
            reap_dead_strays()


def reap_dead_strays() -> int:
    """Reap every dead child of ours that nobody else will wait for; how many were reaped.

    Not a child someone waits for: a run's first process (its runner waits), a helper, or a
    process in our session (git and the like, started by subprocess, which reaps them). Every
    other child is an orphan that came back to us, and its exit status is of no use to anyone."""
    if not _STATE.enabled:
        return 0
    reaped = 0
    with _STATE.lock:
        own_session = os.getsid(0)
        for pid in _children():
            if pid in _STATE.runs or pid in _STATE.helpers:
                continue
            stat = _stat(pid)
            if stat is None or stat[0] != "Z" or stat[1] == own_session:
                continue
            with contextlib.suppress(ChildProcessError, OSError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped += 1
    return reaped


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, session) of `pid` from /proc (a zombie keeps both until it is reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    try:
        return fields[0].decode(), int(fields[3])
    except (IndexError, ValueError):
        return None


def _reap(pids: set[int]) -> None:
    """Collect the exit status of the strays that died (they are our children: nobody else
    will, and a zombie would stay until we exit)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
