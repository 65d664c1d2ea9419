"""Recognising a full disk behind a failed write, wherever it happened.

A full filesystem shows up in many shapes: `OSError(ENOSPC)` from a log or results.tsv write,
SQLite's SQLITE_FULL ("database or disk is full"), git failing to write an object or a ref lock
(whose message does not always say why). Each of them, and every error raised while cleaning up
after it, is chained onto the first; `disk_full_error` walks that chain and turns it into one
`DiskFullError` that says where the disk is full, instead of three tracebacks.

Errors that do not name their cause (git's "couldn't write '….lock'", SQLite's I/O errors) count
as a full disk when the filesystem they wrote to has less than `NEARLY_FULL_BYTES` free.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from autoresearch.errors import DiskFullError

__all__ = ["NEARLY_FULL_BYTES", "disk_full_at", "disk_full_error", "free_bytes"]

NEARLY_FULL_BYTES = 1 << 20
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# A failed write whose errno names a cause other than space.
_OTHER_CAUSES = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR,
                 errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL}
_SQLITE_FULL = 13
_SQLITE_IOERR = 10
_FULL_WORDS = ("no space left on device", "disk quota exceeded", "database or disk is full")
# git quotes the file it failed to write: "couldn't write '/repo/.git/refs/…/x.lock'".
_QUOTED_PATH = re.compile(r"'(/[^']+)'")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from or while handling, earliest last."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__context__, current.__cause__):
            if linked is not None:
                pending.append(linked)


def _existing(path: Path) -> Path:
    """The path itself, or its nearest ancestor that exists (a failed write may leave none)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return None


def _mount_point(path: Path) -> Path:
    current = _existing(path).resolve()
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def disk_full_at(path: Path) -> DiskFullError:
    """The error for a write to `path` that failed for lack of space."""
    free = free_bytes(path)
    mount = _mount_point(path)
    try:
        total = shutil.disk_usage(mount).total
        state = f"{_size(free or 0)} free of {_size(total)} on {mount}"
    except OSError:
        state = f"on {mount}"
    return DiskFullError(
        f"disk full at {path} ({state})",
        where=str(path),
        fix="free some space on that filesystem (old sessions' logs under "
            ".autoresearch/sessions/*/logs can go), then run the same command again: everything "
            "recorded before the disk filled up is intact, and a session resumes where it stopped",
    )


def _path_of(exc: BaseException) -> Path | None:
    for name in ("filename", "filename2"):
        value = getattr(exc, name, None)
        if isinstance(value, str | os.PathLike) and str(value):
            return Path(os.fsdecode(value))
    ledger_path = getattr(exc, "ledger_path", None)  # set by the ledger on its SQLite errors
    if isinstance(ledger_path, Path):
        return ledger_path
    found = _QUOTED_PATH.search(_message(exc))
    return Path(found.group(1)) if found else None


def _message(exc: BaseException) -> str:
    stderr = getattr(exc, "stderr", None)
    return f"{exc} {stderr if isinstance(stderr, str) else ''}"


def _says_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    if isinstance(exc, sqlite3.Error) and (
            (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF) == _SQLITE_FULL:
        return True
    return any(words in _message(exc).lower() for words in _FULL_WORDS)


def _may_be_full(exc: BaseException) -> bool:
    """A failed write that does not say why: I/O errors, git's failed locks and objects."""
    from autoresearch.gitops.runner import GitError

    if isinstance(exc, sqlite3.Error):
        return ((getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF) == _SQLITE_IOERR
    if isinstance(exc, OSError) and exc.errno in _OTHER_CAUSES:
        return False  # it says why, and it is not space
    return isinstance(exc, OSError | GitError)


def disk_full_error(exc: BaseException, near: Path | None = None) -> DiskFullError | None:
    """The `DiskFullError` behind `exc` (anywhere in its chain), or None when there is none.

    `near` is where to look for free space when an error names no file (the repository).
    """
    chain = list(_chain(exc))
    for linked in chain:
        if isinstance(linked, DiskFullError):
            return linked
    for linked in chain:
        if _says_full(linked):
            return disk_full_at(_path_of(linked) or near or Path.cwd())
    for linked in chain:
        if _may_be_full(linked):
            path = _path_of(linked) or near
            if path is not None and _nearly_full(path):
                return disk_full_at(path)
    return None


def _nearly_full(path: Path) -> bool:
    """Less than NEARLY_FULL_BYTES free on a filesystem that has a size at all: /proc, /sys
    and other pseudo filesystems report 0 of 0, and a write refused there is not a full disk."""
    try:
        usage = shutil.disk_usage(_existing(path))
    except OSError:
        return False
    return usage.total > 0 and usage.free < NEARLY_FULL_BYTES
