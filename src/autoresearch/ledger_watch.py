"""Nothing but the session writes its rows of the ledger: checked before and after every proposer
call and every run, and the session stops at the first sign of another writer.

A coding agent (or a verify run, or any process of the same user) can open `ledger.db` itself
and rewrite what was measured; before this, nothing noticed (tamper finding #3). The harness owns
the verdict, so at every one of those moments the session checks:

- `PRAGMA data_version` of its own connection (~5 µs): SQLite changes it when *another*
  connection commits, never for the session's own writes. Unchanged: nobody else wrote;
- when it changed, the session's rows (its experiments, runs, metrics, usage, events, reviews)
  against the private copy its own connection keeps of them (`ledger.shadow`): another session
  of the repository, `autoresearch review`, a checkpoint are other writers with every right to
  the file, but none of them writes this session's rows;
- `ledger.db` is still the file the session opened (not replaced or removed), and its lock file
  is still the one it holds (removing it would let a second process start the same session).
  A removed lock file alone stops the session (`SessionLockLostError`, exit 3) without refusing
  the ledger: its rows are still the session's own, so the same command resumes.

On a mismatch the ledger is refused (`Ledger.refuse`: nothing more is written, no backup is
taken from it at the end) and the session stops with `LedgerTamperedError` (exit 3), naming what
changed and how to recover, as for a damaged ledger; `ledger.db.tampered`, written beside it,
makes every later writer refuse the file until it is recovered (moved aside). Not watched: other sessions' rows (their own
sessions watch them while they run), the run logs and results.tsv, which are views (results.tsv
is rewritten from the ledger after every experiment).

The recovery steps offer `ledger-backup.db` only if it is still what the harness wrote: the
session reads the backup's record (its sha256) when it starts and keeps it in memory, since the
process that changed the ledger may have rewritten the record along with the backup; the mark
carries that record to the later commands that refuse the file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from autoresearch.errors import LedgerTamperedError, SessionLockLostError
from autoresearch.ledger import Ledger
from autoresearch.ledger.integrity import BackupKnowledge, record_to_mark, recovery, tampered_mark
from autoresearch.state import SessionLock, StatePaths

__all__ = ["LedgerTamperedError", "LedgerWatch", "SessionLockLostError"]


class LedgerWatch:
    """The session's watch over its ledger: `check` at every moment another process may have
    had its turn (around proposer calls and runs)."""

    def __init__(self, ledger: Ledger, paths: StatePaths, session_id: int,
                 lock: SessionLock) -> None:
        self.ledger = ledger
        self.paths = paths
        self.session_id = session_id
        self.lock = lock
        ledger.watch_session(session_id)
        # No run has had its turn yet: the record is still what the harness wrote.
        self._backup: BackupKnowledge = ledger.backup_record()
        self._version = ledger.data_version()
        self._inode = _inode(ledger.path)

    def check(self, moment: str) -> None:
        """Raise `LedgerTamperedError` (and refuse the ledger) if another process changed it
        since the last check; ``moment`` says when this check happens, for the message."""
        if self.ledger.refused is not None:
            raise self.ledger.refused
        problems = []
        if _inode(self.ledger.path) != self._inode:
            problems.append(f"{self.ledger.path.name} was replaced or removed")
        lock_lost = not self.lock.held()
        if lock_lost:
            problems.append(f"the session's lock file {self.paths.lock} was removed or replaced")
        version = self.ledger.data_version()
        if version != self._version:  # another connection committed: was it to our rows?
            self._version = version
            changed = self.ledger.session_changes(self.session_id)
            if changed:
                problems.append(f"the rows of session {self.paths.tag!r} in "
                                f"{', '.join(changed)} are not what it wrote")
        if lock_lost and len(problems) == 1:  # the lock alone: the ledger is still ours
            self._lock_lost(moment)
        if problems:
            self._stop(moment, problems)

    def _lock_lost(self, moment: str) -> None:
        """Only the lock file is gone (a cleanup of .autoresearch, by hand or by a script): the
        ledger holds what the session wrote and nothing else, so it is not refused, but the
        session stops, since a second `run` of it could now start beside it."""
        raise SessionLockLostError(
            f"the session's lock file was removed or replaced {moment}: a second `autoresearch "
            f"run` of session {self.paths.tag!r} could start beside this one, so it stops. The "
            "ledger was not changed: everything the session recorded is kept",
            where=str(self.paths.lock),
            fix="make sure no other `autoresearch run` of this session is running (`autoresearch "
                "status` says), then run the same command to resume; leave .autoresearch/ alone "
                "while a session runs")

    def _stop(self, moment: str, problems: list[str]) -> None:
        error = LedgerTamperedError(
            f"the ledger was changed by another process {moment}: {'; '.join(problems)}. The "
            "session stops and writes nothing more to it: it no longer holds only what this "
            "session measured", where=str(self.ledger.path),
            fix="find what wrote it (an agent, a verify command, a script of yours) and stop it; "
                "then recover as from a damaged ledger: "
                + recovery(self.ledger.path, self._backup))
        self.ledger.refuse(error)
        # Beside the ledger, named like it: a later `run` refuses the file until it is
        # recovered, and the recovery's `mv ledger.db* damaged/` takes the mark along.
        with contextlib.suppress(OSError):
            tampered_mark(self.ledger.path).write_text(
                error.what + "\n" + record_to_mark(self._backup) + "\n")
        raise error


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None
