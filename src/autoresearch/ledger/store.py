"""The ledger: SQLite (WAL) is the source of truth for sessions, experiments, runs and costs.

Every write is its own short transaction, so a `kill -9` at any moment leaves a consistent file:
the worst case is an experiment whose status is still `running`, which the session marks
`interrupted` when it resumes. Readers (status, dashboard) open their own connection and never
block the writer.

The write API is typed: one method per thing that happens to a session or an experiment (it was
created, proposed, committed, judged, finished...), each naming the columns it writes. Nothing
writes an arbitrary set of columns, so a misspelt field is a type error, not a silent no-op.

Free text from a proposer (a hypothesis, a rationale, a decision reason that quotes a model's
reply, an event's message, a review's findings) is cleaned where it enters the ledger, by
`unicode_controls.clean_prose`: whatever reads the file (the views, `results --json`, results.tsv,
the sqlite3 shell, another tool) gets no escape sequence or control character, and sees a
bidirectional override as its marker ⟨U+202E⟩. Tabs and newlines are kept. The same cleaning is
applied as rows are read, so rows an older autoresearch stored come out the same way (no
migration rewrites them); on clean text it is one `str.isprintable` check.

This module opens and checks the file and owns the connection, its lock and its transactions;
each group of tables is read and written through them from its own module: `session_tables`,
`experiment_tables`, `run_tables` (runs, metrics, fingerprints), `activity` (usage and events)
and `review_tables`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from autoresearch.errors import LedgerEmptyError
from autoresearch.ledger import integrity, shadow
from autoresearch.ledger.activity import ActivityTables
from autoresearch.ledger.experiment_tables import ExperimentTables
from autoresearch.ledger.review_tables import ReviewTables
from autoresearch.ledger.run_tables import RunTables
from autoresearch.ledger.schema import MIGRATIONS, migrate
from autoresearch.ledger.session_tables import SessionTables


class Ledger(SessionTables, ExperimentTables, RunTables, ActivityTables, ReviewTables):
    """One SQLite file per repository, shared by all its sessions.

    Opening checks the file first (`integrity`): a damaged ledger, or one from a newer
    autoresearch, is refused with a `LedgerError` before anything is written, by writers and
    read-only views alike. Every later SQLite error is translated the same way (a full disk is a
    `DiskFullError`), so no command shows a raw sqlite3 traceback.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        """Open the ledger at `path` (a writer creates or migrates it), after checking it: its
        header, its schema version, and SQLite's quick_check of every page (~0.15 s for a
        ledger of 5000 experiments), so that a damaged page is found before anything reads or
        writes it, not in the middle of a session or a page of the dashboard."""
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        # Once another process is found to have changed the ledger under the session, why
        # nothing may be written any more (see ledger_watch).
        self.refused: Exception | None = None
        integrity.check_header(path)
        existed = path.exists()
        restored = False
        if not readonly:
            integrity.refuse_tampered(path)
            if existed:
                # Judge the file through a read-only connection first: closing a read-write one
                # would checkpoint it, and a refused ledger must not be written at all.
                self._connect(readonly=True, existed=True).close()
                # Before this connection writes a byte: is it a copy of the backup?
                restored = integrity.restored_from_backup(path)
            path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect(readonly, existed=existed, check=readonly or not existed)
        if not readonly:
            try:
                with self._translated():
                    self._conn.execute("PRAGMA journal_mode=WAL")
                    # NORMAL in WAL mode survives a process kill (only a power loss may drop
                    # the tail).
                    self._conn.execute("PRAGMA synchronous=NORMAL")
                    self._conn.execute("PRAGMA foreign_keys=ON")
                    migrate(self._conn)
                    integrity.note_backup_at_open(self._conn, path, existed=existed,
                                                  restored=restored)
            except BaseException:
                self._conn.close()
                raise

    def _connect(self, readonly: bool, *, existed: bool, check: bool = True
                 ) -> sqlite3.Connection:
        """A connection to the ledger, which `integrity.check_opened` judged (unless `check` is
        False: it was judged already)."""
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        with self._translated():
            conn = sqlite3.connect(
                uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        try:
            with self._translated():
                version = integrity.check_opened(conn, self.path, len(MIGRATIONS),
                                                 existed=existed) if check else 1
            if self.readonly and version == 0:
                raise LedgerEmptyError("the ledger holds no session yet", where=str(self.path),
                                       fix="start one with `autoresearch run`")
        except BaseException:
            conn.close()
            raise
        conn.row_factory = sqlite3.Row
        return conn

    def close(self) -> None:
        """Close the connection (a writer checkpoints first: see `checkpoint`)."""
        with self._lock:
            try:
                if not self.readonly:
                    self.checkpoint()
            finally:
                self._conn.close()

    def checkpoint(self) -> None:
        """Fold the WAL into ledger.db (TRUNCATE) and refresh the backup beside it.

        Called when a session ends (normally, on Ctrl-C, on a pause or an error), so that the
        research is in ledger.db itself (copying that one file copies it) and a copy of a
        known-good ledger sits beside it (`ledger-backup.db`), its sha256 recorded in the ledger
        (see `integrity.write_backup`). Both are best effort: after a failure (a full disk) the
        WAL still holds every write, and the next open replays it.
        """
        if self.readonly or self.refused is not None:
            return  # a ledger another process changed must not become the backup
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if integrity.write_backup(self._conn, self.path) is not None:
                # Fold the backup's record in too: ledger.db alone still holds everything.
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def backup_record(self) -> integrity.BackupRecord | Literal["none", "unrecorded"]:
        """What the ledger records of the backup beside it (see `integrity.write_backup`)."""
        with self._lock, self._translated():
            return integrity.read_backup_record(self._conn)

    def refuse(self, error: Exception) -> None:
        """Write nothing more (every write raises ``error``), and take no backup at close: the
        file was changed by another process and is no longer what this one recorded."""
        self.refused = error

    def data_version(self) -> int:
        """SQLite's `PRAGMA data_version`: it changes when *another* connection commits, never
        for this one's own writes (~10 µs)."""
        with self._lock, self._translated():
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def watch_session(self, session_id: int) -> None:
        """Keep a private copy of the session's rows, mirrored from this connection's own
        writes (see `shadow`), so that `session_changes` can tell anybody else's."""
        with self._lock, self._translated():
            shadow.install(self._conn, session_id)

    def session_changes(self, session_id: int) -> list[str]:
        """What another process changed in the session's rows since `watch_session`: one
        phrase per table (empty: nothing)."""
        with self._lock, self._translated():
            return shadow.differences(self._conn, session_id)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """SQLite errors as the user-facing errors they stand for (a programming error, such as
        bad SQL, stays itself)."""
        try:
            yield
        except sqlite3.Error as exc:
            translated = integrity.translate(exc, self.path)
            if translated is None:
                raise
            raise translated from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self.refused is not None:
            raise self.refused
        with self._lock, self._translated():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                # A failed COMMIT (a full disk) may have ended the transaction already.
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees the ledger as of one moment (one read transaction, which WAL
        gives without blocking the writer): a view composed from several queries is never torn
        by a session recording an experiment between them. Nothing may be written inside."""
        if self.refused is not None:
            raise self.refused
        with self._lock, self._translated():
            if self._conn.in_transaction:  # inside one already: the same moment
                yield
                return
            self._conn.execute("BEGIN")
            try:
                yield
            finally:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")  # it read only

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._translated():
            return self._conn.execute(sql, args).fetchall()

    @property
    def schema_version(self) -> int:
        """How far this file's schema is migrated (a read-only opener does not migrate)."""
        (row,) = self._query("PRAGMA user_version")
        return int(row[0])

    def change_marker(self, session_id: int) -> tuple[int, int, int, float]:
        """A cheap value that changes whenever anything visible changes (for live views).

        A live page asks every second. The experiments' version stamps (schema 2) make it a few
        index look-ups: the newest stamp moves with every write to an experiment and every run
        of one (the triggers), so it stands for both the newest run and the newest start or
        finish, which were found by reading every run and experiment of the session (~5 ms a
        poll at 5,000 experiments, growing with the session). A ledger from before the stamps,
        opened read-only, is asked the old way."""
        if self.schema_version >= 2:
            (row,) = self._query(
                "SELECT (SELECT COUNT(*) FROM experiments WHERE session_id = ?) AS n,"
                " (SELECT COALESCE(MAX(id), 0) FROM events WHERE session_id = ?) AS e,"
                " (SELECT COALESCE(MAX(touched), 0) FROM experiments WHERE session_id = ?) AS r",
                (session_id, session_id, session_id),
            )
            return (int(row["n"]), int(row["e"]), int(row["r"]), 0.0)
        (row,) = self._query(
            "SELECT (SELECT COUNT(*) FROM experiments WHERE session_id = ?) AS n,"
            " (SELECT COALESCE(MAX(id), 0) FROM events WHERE session_id = ?) AS e,"
            " (SELECT COALESCE(MAX(runs.id), 0) FROM runs JOIN experiments"
            "   ON runs.experiment_id = experiments.id WHERE experiments.session_id = ?) AS r,"
            " (SELECT COALESCE(MAX(COALESCE(finished_at, started_at)), 0) FROM experiments"
            "   WHERE session_id = ?) AS f",
            (session_id, session_id, session_id, session_id),
        )
        return (int(row["n"]), int(row["e"]), int(row["r"]), float(row["f"]))
