"""The session lock: real processes racing for it, a holder killed with SIGKILL, probes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch.errors import SessionLockedError
from autoresearch.state import SessionLock

SRC = str(Path(__file__).resolve().parents[1] / "src")

# One contender: for each "go <lock path> <start time>" line it waits for the start time, tries
# to take the lock and answers "won <pid>" or "lost"; "release" lets a won lock go.
CONTENDER = textwrap.dedent(f"""
    import sys, time
    sys.path.insert(0, {SRC!r})
    from pathlib import Path
    from autoresearch import state
    from autoresearch.errors import SessionLockedError
    from autoresearch.state import SessionLock
    state._ACQUIRE_PATIENCE_S = 0.0  # no status probes here: a busy lock is a lost race
    held = None
    print("ready", flush=True)
    for line in sys.stdin:
        word, *args = line.split()
        if word == "go":
            lock = SessionLock(Path(args[0]))
            start = float(args[1])
            while time.time() < start:
                pass
            try:
                lock.acquire()
            except SessionLockedError:
                print("lost", flush=True)
                continue
            held = lock
            print("won", (lock.cleared_stale or {{}}).get("pid", "-"), flush=True)
        elif word == "release" and held is not None:
            held.release()
            held = None
            print("released", flush=True)
""")


class Contender:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CONTENDER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.ask(None) == "ready"

    def ask(self, line: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def answer(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()


@pytest.fixture
def contenders() -> Iterator[list[Contender]]:
    group = [Contender() for _ in range(8)]
    yield group
    for c in group:
        c.proc.kill()
        c.proc.wait()


@pytest.mark.slow
def test_exactly_one_of_many_racing_processes_takes_the_lock(
        tmp_path: Path, contenders: list[Contender]) -> None:
    lock = tmp_path / "sessions" / "t" / "lock"
    for round_ in range(150):
        start = time.time() + 0.05
        for c in contenders:
            c.send(f"go {lock} {start}")
        answers = [c.answer() for c in contenders]
        winners = [c for c, a in zip(contenders, answers, strict=True) if a.startswith("won")]
        assert len(winners) == 1, f"round {round_}: {answers}"
        assert SessionLock(lock).live_holder() == winners[0].proc.pid
        assert winners[0].ask("release") == "released"
        assert SessionLock(lock).live_holder() is None


@pytest.mark.slow
def test_the_lock_of_a_sigkilled_holder_is_taken_over(
        tmp_path: Path, contenders: list[Contender]) -> None:
    lock = tmp_path / "lock"
    holder, successor, late = contenders[:3]
    assert holder.ask(f"go {lock} 0").startswith("won")
    assert successor.ask(f"go {lock} 0") == "lost"
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait()
    assert SessionLock(lock).live_holder() is None
    assert SessionLock(lock).recorded_pid() == holder.proc.pid  # for `status`: who died
    # Taken over at once, and the new holder knows whose lock it cleared (a recovery event).
    assert successor.ask(f"go {lock} 0") == f"won {holder.proc.pid}"
    assert late.ask(f"go {lock} 0") == "lost"


def test_probing_the_lock_never_makes_a_start_fail(tmp_path: Path) -> None:
    # `status` and the dashboard look at the lock while a session may be starting.
    lock = tmp_path / "lock"
    prober = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {SRC!r})
        from pathlib import Path
        from autoresearch.state import SessionLock
        end = time.monotonic() + 3
        while time.monotonic() < end:
            SessionLock(Path({str(lock)!r})).live_holder()
        """)])
    try:
        for _ in range(100):
            mine = SessionLock(lock)
            mine.acquire()
            assert mine.live_holder() == os.getpid()
            mine.release()
    finally:
        prober.kill()
        prober.wait()


def test_a_second_session_in_the_same_process_is_refused(tmp_path: Path) -> None:
    first = SessionLock(tmp_path / "lock")
    first.acquire()
    with pytest.raises(SessionLockedError, match=f"already running in process {os.getpid()}"):
        SessionLock(tmp_path / "lock").acquire()
    first.release()
    assert not (tmp_path / "lock").exists()


def test_a_file_system_without_flock_is_a_clear_error(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import fcntl

    from autoresearch.errors import PreconditionError

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(PreconditionError, match="cannot lock the session: No locks available"):
        SessionLock(tmp_path / "lock").acquire()
