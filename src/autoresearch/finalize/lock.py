"""One `finalize` of a session at a time.

Two at once would write the same branches and, with --verify, measure in the same worktree
(`.autoresearch/finalize/<tag>/worktree`): each would remove or move the other's checkout under
its runs. The second is refused at once, as a second `run` of a session is (exit 4).

An exclusive flock on `.autoresearch/finalize/<tag>/lock`: the kernel releases it when its holder
dies, however it dies, so a finalize that was killed leaves no lock behind. The file stays (it
holds the last holder's pid, for the message); removing it would let a third process lock a new
file while the second still holds the old one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from autoresearch.errors import PreconditionError, SessionLockedError
from autoresearch.state import StatePaths


class FinalizeLock:
    def __init__(self, repo: Path, tag: str) -> None:
        self.tag = tag
        self.path = StatePaths(repo, tag).state_dir / "finalize" / tag / "lock"
        self._fd: int | None = None

    def __enter__(self) -> FinalizeLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "(starting)"
            os.close(fd)
            raise SessionLockedError(
                f"another `autoresearch finalize` of session {self.tag} is running "
                f"(process {holder})", where=str(self.path),
                fix="wait for it to end, or stop it (Ctrl-C) and finalize again") from None
        except OSError as exc:  # a file system without flock (some network or FUSE ones)
            os.close(fd)
            raise PreconditionError(
                f"cannot lock finalize: {exc.strerror or exc}", where=str(self.path),
                fix="keep the repository (its .autoresearch directory) on a local file system",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
