"""What the user is shown when a command fails: an `AutoresearchError` as it is, and the
errors of the environment (a file that cannot be written, a full disk, a stop from the engine)
turned into one that says where and what to do. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from autoresearch.config import STATE_DIR
from autoresearch.errors import AutoresearchError, PreconditionError
from autoresearch.stop_signals import SessionStopped


def user_error(exc: BaseException) -> AutoresearchError | None:
    """The error to show the user for `exc`, or None for a bug (which keeps its traceback).

    A full disk anywhere in the chain wins: the errors raised while cleaning up after it (a git
    lock, SQLite's "database or disk is full") are consequences, and the message says where.
    """
    from autoresearch.diskfull import disk_full_error

    full = disk_full_error(exc, Path.cwd())
    if full is not None:
        return full
    if isinstance(exc, AutoresearchError):
        return exc
    if isinstance(exc, SessionStopped) and exc.exit_code:
        # `check` and `finalize --verify` run through the session's executor: its stops (the
        # shared data changed, a worktree deleted) are theirs to show as well.
        stopped = AutoresearchError(exc.reason)
        stopped.exit_code = exc.exit_code
        return stopped
    if isinstance(exc, OSError) and exc.filename:
        path = Path(os.fsdecode(exc.filename))
        if exc.errno == errno.ENOTDIR:  # name the file in the way, not the path through it
            path = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()),
                        path)
        fix = _FILE_FIXES.get(exc.errno or 0, "check that path (it exists, you may write "
                              "there, the filesystem is a real one), then run the command again")
        if exc.errno in _UNWRITABLE:
            # The environment refuses the write, as a read-only ledger.db is refused: exit 3.
            if _in_default_report_dir(path):
                fix = ("write the report elsewhere: autoresearch report --out DIR (a writable "
                       f"directory); or {fix}")
            return PreconditionError(f"cannot use {path}: {exc.strerror}", where=str(path),
                                     fix=fix)
        return AutoresearchError(f"cannot use {path}: {exc.strerror}", where=str(path), fix=fix)
    return None


_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _in_default_report_dir(path: Path) -> bool:
    """Whether `path` is in .autoresearch/sessions/<tag>/report/, where `report` writes
    unless it is given --out."""
    parts = path.parts
    return any(parts[i:i + 2] == (STATE_DIR, "sessions") and parts[i + 3:i + 4] == ("report",)
               for i in range(len(parts)))


# A file or directory autoresearch must write, in a state that forbids it.
_FILE_FIXES = {
    errno.EACCES: "make it writable by you (its owner and permissions), then run the command "
                  "again",
    errno.EPERM: "make it writable by you (its owner and permissions), then run the command again",
    errno.EROFS: "the filesystem is mounted read-only: work on a writable copy of the repository",
    errno.EEXIST: "something else is in the way at that path: move it aside, then run the command "
                  "again",
    errno.ENOTDIR: "a file stands where autoresearch needs a directory: move it aside, then run "
                   "the command again",
    errno.EISDIR: "a directory stands where autoresearch needs a file: move it aside, then run "
                  "the command again",
    errno.ENOENT: "a directory on the way does not exist and cannot be created there: pick a "
                  "path on a writable filesystem, then run the command again",
}
