"""Where a session keeps its state in the user's repository, and the lock that guards it.

    .autoresearch/                 git-ignored (it writes its own .gitignore)
        ledger.db                  the SQLite ledger of every session in this repo
        worktrees/<tag>/           the session's checkout; the user's checkout is never touched
        sessions/<tag>/results.tsv a view of the ledger, Karpathy's columns first
        sessions/<tag>/logs/<experiment>/<role>-<n>.log
        sessions/<tag>/lock        pid of the live session process
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from autoresearch.config import STATE_DIR
from autoresearch.errors import ConfigError, SessionLockedError

TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_tag(tag: str) -> str:
    if not TAG_PATTERN.match(tag) or tag.endswith(".lock") or ".." in tag:
        raise ConfigError(
            f"invalid session tag {tag!r}",
            where="--tag",
            fix="use letters, digits, '.', '_' or '-' (up to 64 characters), e.g. --tag mar5",
        )
    return tag


def default_tag() -> str:
    """Karpathy names runs by date: mar5, nov23."""
    return time.strftime("%b%d").lower().replace(" ", "")


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
        self.session_dir.mkdir(parents=True, exist_ok=True)
        ignore = self.state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# autoresearch state: never committed\n*\n")


def repo_key_of(root: Path) -> str:
    return hashlib.sha1(str(root).encode()).hexdigest()[:8]


def run_ids_of_worktree(worktree: Path) -> str:
    """The run-id prefix of the repository a session worktree (`<root>/.autoresearch/worktrees/
    <tag>[/<slot>]`) belongs to; for any other directory, one of its own."""
    parts = worktree.parts
    if STATE_DIR in parts:
        root = Path(*parts[: len(parts) - 1 - parts[::-1].index(STATE_DIR)])
        return StatePaths(root, "_").repo_run_ids
    return f"ar-{repo_key_of(worktree)}-"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            return False
    return True


class SessionLock:
    """One live process per session; a lock left by a dead process is detected by pid and cleared."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cleared_stale: dict[str, object] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                pid = self.live_holder()
                if pid and pid != os.getpid():
                    raise SessionLockedError(
                        f"session is already running in process {pid}",
                        where=str(self.path),
                        fix="stop that process first (Ctrl-C), or use another --tag",
                    ) from None
                self.cleared_stale = holder
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            return
        raise SessionLockedError("could not take the session lock", where=str(self.path))

    def live_holder(self) -> int | None:
        """The pid of the live process holding the lock, or None (no lock, or a dead holder).

        A lock taken on another host (a shared filesystem) can't be checked: it counts as live.
        """
        holder = self._read()
        raw_pid = holder.get("pid", 0)
        pid = raw_pid if isinstance(raw_pid, int) else 0
        if pid <= 0:
            return None
        if holder.get("host") not in (None, socket.gethostname()):
            return pid
        return pid if pid_alive(pid) else None

    def recorded_pid(self) -> int | None:
        """The pid written in the lock file, alive or not (None: no lock file)."""
        raw_pid = self._read().get("pid", 0)
        return raw_pid if isinstance(raw_pid, int) and raw_pid > 0 else None

    def _read(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        holder = self._read()
        if holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
