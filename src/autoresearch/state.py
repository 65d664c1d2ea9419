"""Where a session keeps its state in the user's repository, and the lock that guards it.

    .autoresearch/                 git-ignored (it writes its own .gitignore)
        ledger.db                  the SQLite ledger of every session in this repo
        worktrees/<tag>/           the session's checkout; the user's checkout is never touched
        sessions/<tag>/results.tsv a view of the ledger, Karpathy's columns first
        sessions/<tag>/logs/<experiment>/<role>-<n>.log
        sessions/<tag>/lock        flock()ed by the live session process; holds its pid
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from autoresearch.config import STATE_DIR
from autoresearch.errors import ConfigError, PreconditionError, SessionLockedError

TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_tag(tag: str) -> str:
    """A tag names the branch autoresearch/<tag>, so it must be a valid git ref component too
    (no trailing '.', no '..', no '.lock' ending): checked here, before anything is recorded."""
    if (not TAG_PATTERN.match(tag) or tag.endswith((".lock", ".")) or ".." in tag):
        raise ConfigError(
            f"invalid session tag {tag!r}",
            where="--tag",
            fix="start with a letter or digit, then letters, digits, '.', '_' or '-' (up to 64 "
                "characters; not ending in '.' or '.lock', no '..'), e.g. --tag mar5",
        )
    return tag


def default_tag(when: time.struct_time | None = None) -> str:
    """Karpathy names runs by date: mar5, nov23 (the day not zero-padded)."""
    now = when or time.localtime()
    return time.strftime("%b", now).lower() + str(now.tm_mday)


@dataclass(frozen=True)
class StatePaths:
    root: Path
    tag: str

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def ledger(self) -> Path:
        return self.state_dir / "ledger.db"

    @property
    def worktree(self) -> Path:
        return self.state_dir / "worktrees" / self.tag

    @property
    def session_dir(self) -> Path:
        return self.state_dir / "sessions" / self.tag

    @property
    def results_tsv(self) -> Path:
        return self.session_dir / "results.tsv"

    @property
    def lock(self) -> Path:
        return self.session_dir / "lock"

    def log_path(self, experiment_id: str, role: str, index: int, attempt: int = 1) -> Path:
        suffix = f"-a{attempt}" if attempt > 1 else ""
        return self.session_dir / "logs" / experiment_id / f"{role}-{index}{suffix}.log"

    @property
    def branch(self) -> str:
        return f"autoresearch/{self.tag}"

    @property
    def discarded_prefix(self) -> str:
        return f"refs/autoresearch/{self.tag}/discarded/"

    def discarded_ref(self, experiment_id: str) -> str:
        return self.discarded_prefix + experiment_id

    @property
    def repo_key(self) -> str:
        """A short id of this repository, so run ids of two repos never collide."""
        return repo_key_of(self.root)

    @property
    def repo_run_ids(self) -> str:
        """What every run id of this repository starts with, whatever its session's tag
        (`executor.run_id_prefix` adds the tag)."""
        return f"ar-{self.repo_key}-"

    def prepare(self) -> None:
        ensure_state_dir(self.state_dir)
        self.session_dir.mkdir(parents=True, exist_ok=True)


def keep_in_state(root: Path, log: Path, name: str) -> Path:
    """Copy a run's output (empty when it wrote none) to `.autoresearch/<name>`, where it
    outlives the temporary directory it was written in; the copy's path (print it with
    `path_for_user`)."""
    state = root / STATE_DIR
    ensure_state_dir(state)
    kept = state / name
    if log.exists():
        shutil.copyfile(log, kept)
    else:
        kept.write_text("")
    return kept


def path_for_user(path: Path, root: Path) -> str:
    """`path` (absolute, or relative to the repository `root`) as a path that works where the
    user stands: relative to the working directory when that is inside the repository (from a
    subdirectory, `../.autoresearch/check.log`), absolute otherwise (`--repo` from elsewhere).
    A path relative to the root alone would name nothing from a subdirectory."""
    full = path if path.is_absolute() else root / path
    try:
        here = Path.cwd().resolve()
    except OSError:  # the working directory was removed: only an absolute path still works
        return str(full)
    if here.is_relative_to(root.resolve()):
        return os.path.relpath(full.resolve(), here)
    return str(full)


def ensure_state_dir(state_dir: Path) -> None:
    """Create `.autoresearch/` git-ignored: whatever writes there first (a session's pinned
    thread count, check's log, a review's ledger) must not leave files `git add -A` would take."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# autoresearch state: never committed\n*\n")


def repo_key_of(root: Path) -> str:
    return hashlib.sha1(str(root).encode()).hexdigest()[:8]


def root_of_worktree(worktree: Path) -> Path | None:
    """The repository a session worktree (`<root>/.autoresearch/worktrees/<tag>[/<slot>]`)
    belongs to; None for any other directory."""
    parts = worktree.parts
    if STATE_DIR in parts:
        return Path(*parts[: len(parts) - 1 - parts[::-1].index(STATE_DIR)])
    return None


def run_ids_of_worktree(worktree: Path) -> str:
    """The run-id prefix of the repository a session worktree belongs to; for any other
    directory, one of its own."""
    root = root_of_worktree(worktree)
    if root is not None:
        return StatePaths(root, "_").repo_run_ids
    return f"ar-{repo_key_of(worktree)}-"


# A probe (`live_holder`, from `status` or the dashboard) holds a shared lock for microseconds;
# an acquirer that meets one tries again for this long before it calls the session running.
_ACQUIRE_PATIENCE_S = 0.5


class SessionLock:
    """One live process per session: an exclusive flock on the lock file, held while it runs.

    The kernel releases a flock when its holder dies, however it dies (kill -9 included), so
    there is no stale lock to detect: a lock left by a dead process is free, and taking it is
    one atomic system call, never a read-then-delete that two processes could interleave. The
    file also holds the holder's pid and host, for messages and `status`; it is removed when the
    session ends. Requires flock() semantics from the file system (local ones, NFSv4).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cleared_stale: dict[str, object] | None = None
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _ACQUIRE_PATIENCE_S
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                pid = self.recorded_pid()
                raise SessionLockedError(
                    f"session is already running in process {pid or '(starting)'}",
                    where=str(self.path),
                    fix="stop that process first (Ctrl-C), or use another --tag",
                ) from None
            except OSError as exc:  # a file system without flock (some network or FUSE ones)
                os.close(fd)
                raise PreconditionError(
                    f"cannot lock the session: {exc.strerror or exc}", where=str(self.path),
                    fix="keep the repository (its .autoresearch directory) on a local file system",
                ) from None
            except BaseException:
                os.close(fd)
                raise
            if not self._still_linked(fd):
                # The holder we waited for removed the file as it released it: the lock we got
                # is on a file nobody else will ever open. Take the one at the path instead.
                os.close(fd)
                continue
            break
        previous = _parse(os.read(fd, 4096))
        if previous.get("pid") not in (None, os.getpid()):
            self.cleared_stale = previous  # its holder died without removing it (kill -9)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd

    def _still_linked(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def held(self) -> bool:
        """Whether this process holds the lock on the file that is at the path now (another
        process may have removed or replaced it, which would let a second holder in)."""
        return self._fd is not None and self._still_linked(self._fd)

    def live_holder(self) -> int | None:
        """The pid of the live process holding the lock, or None (no lock, or a dead holder)."""
        if self._fd is not None:
            return os.getpid()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                # Held. Its holder writes its pid right after taking it: wait for that.
                for _ in range(50):
                    if (pid := self.recorded_pid()) is not None:
                        return pid
                    time.sleep(0.01)
                return -1  # held by a process that has not written its pid (yet)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def recorded_pid(self) -> int | None:
        """The pid written in the lock file, alive or not (None: no lock file)."""
        raw_pid = self._read().get("pid", 0)
        return raw_pid if isinstance(raw_pid, int) and raw_pid > 0 else None

    def _read(self) -> dict[str, object]:
        try:
            return _parse(self.path.read_bytes())
        except OSError:
            return {}

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._still_linked(fd):
                self.path.unlink(missing_ok=True)  # while still holding it: see acquire
        finally:
            os.close(fd)


def _parse(data: bytes) -> dict[str, object]:
    try:
        parsed = json.loads(data or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
