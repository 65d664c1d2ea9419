"""The ledger: SQLite (WAL) is the source of truth for sessions, experiments, runs and costs.

Every write is its own short transaction, so a `kill -9` at any moment leaves a consistent file:
the worst case is an experiment whose status is still `running`, which the session marks
`interrupted` when it resumes. Readers (status, dashboard) open their own connection and never
block the writer.

Experiments may overlap in time (a worker pool runs several candidates at once): sequence numbers
are allocated inside one transaction, every write names its experiment, and nothing here assumes
a single open experiment (`open_experiments` returns all of them).

The write API is typed: one method per thing that happens to a session or an experiment (it was
created, proposed, committed, judged, finished...), each naming the columns it writes. Nothing
writes an arbitrary set of columns, so a misspelt field is a type error, not a silent no-op.

Free text from a proposer (a hypothesis, a rationale, a decision reason that quotes a model's
reply, an event's message, a review's findings) is cleaned here, where it enters the ledger, by
`unicode_controls.clean_prose`: whatever reads the file (the views, `results --json`, results.tsv,
the sqlite3 shell, another tool) gets no escape sequence or control character, and sees a
bidirectional override as its marker ⟨U+202E⟩. Tabs and newlines are kept. The same cleaning is
applied as rows are read, so rows an older autoresearch stored come out the same way (no
migration rewrites them); on clean text it is one `str.isprintable` check.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autoresearch.errors import LedgerEmptyError
from autoresearch.ledger import integrity, shadow
from autoresearch.ledger.activity import ActivityTables
from autoresearch.ledger.review_tables import ReviewTables
from autoresearch.ledger.rows import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    ExperimentRow,
    RunRow,
    SessionRow,
    TrialStatus,
)
from autoresearch.ledger.schema import MIGRATIONS, migrate
from autoresearch.unicode_controls import clean_prose

__all__ = ["FINAL_STATUSES", "OPEN_STATUSES", "ExperimentRow", "Ledger", "RunRow", "SessionRow",
           "TrialStatus"]


def _loads(raw: str | None, default: Any) -> Any:
    return default if raw is None else json.loads(raw)


def _dumps(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


class Ledger(ActivityTables, ReviewTables):
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
        if not readonly:
            integrity.refuse_tampered(path)
            if existed:
                # Judge the file through a read-only connection first: closing a read-write one
                # would checkpoint it, and a refused ledger must not be written at all.
                self._connect(readonly=True, existed=True).close()
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
        known-good ledger sits beside it (`ledger-backup.db`). Both are best effort: after a
        failure (a full disk) the WAL still holds every write, and the next open replays it.
        """
        if self.readonly or self.refused is not None:
            return  # a ledger another process changed must not become the backup
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            integrity.write_backup(self._conn, self.path)

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

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._translated():
            return self._conn.execute(sql, args).fetchall()

    # --- sessions -------------------------------------------------------------------------

    def create_session(
        self,
        *,
        tag: str,
        branch: str,
        base_commit: str,
        worktree: str,
        metric: str,
        direction: str,
        config: Mapping[str, Any],
        proposer: str,
        created_at: float | None = None,
    ) -> SessionRow:
        now = time.time() if created_at is None else created_at
        with self._tx() as c:
            c.execute(
                "INSERT INTO sessions (tag, branch, base_commit, worktree, metric, direction,"
                " config_json, proposer, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'created', ?, ?)",
                (tag, branch, base_commit, worktree, metric, direction, json.dumps(config),
                 proposer, now, now),
            )
        session = self.session(tag)
        assert session is not None
        return session

    def session(self, tag: str) -> SessionRow | None:
        rows = self._query("SELECT * FROM sessions WHERE tag = ?", (tag,))
        return self._session(rows[0]) if rows else None

    def sessions(self) -> list[SessionRow]:
        return [self._session(r) for r in self._query("SELECT * FROM sessions ORDER BY id")]

    def latest_session(self) -> SessionRow | None:
        rows = self._query("SELECT * FROM sessions ORDER BY updated_at DESC LIMIT 1")
        return self._session(rows[0]) if rows else None

    def _update_session(self, session_id: int, sets: str, args: Sequence[Any]) -> None:
        with self._tx() as c:
            c.execute(f"UPDATE sessions SET {sets}, updated_at = ? WHERE id = ?",
                      (*args, time.time(), session_id))

    def session_opened(self, session_id: int, *, proposer: str,
                       config: Mapping[str, Any]) -> None:
        """A process opened (or resumed) the session with this proposer and config (what it
        measures can only have changed while it had measured nothing: resume_contract)."""
        metric = config.get("metric")
        name, direction = ((metric.get("name"), metric.get("direction"))
                           if isinstance(metric, Mapping) else (None, None))
        self._update_session(
            session_id, "proposer = ?, config_json = ?, metric = COALESCE(?, metric), "
            "direction = COALESCE(?, direction), status = 'running'",
            (proposer, json.dumps(config), name, direction))

    def restart_session_from(self, session_id: int, base_commit: str) -> None:
        """A session whose baseline never passed starts again from another commit (the user
        fixed the evaluation): its failed baseline attempts stay recorded."""
        self._update_session(session_id, "base_commit = ?", (base_commit,))

    def set_session_status(self, session_id: int, status: str) -> None:
        """running, paused (waiting out an outage, or stopped by a pause), finished, stopped."""
        self._update_session(session_id, "status = ?", (status,))

    def set_session_noise(self, session_id: int, sigma: float | None) -> None:
        self._update_session(session_id, "noise = ?", (sigma,))

    def set_session_fingerprint(self, session_id: int, key: str) -> None:
        self._update_session(session_id, "fingerprint_key = ?", (key,))

    @staticmethod
    def _session(r: sqlite3.Row) -> SessionRow:
        return SessionRow(
            id=r["id"], tag=r["tag"], branch=r["branch"], base_commit=r["base_commit"],
            worktree=r["worktree"], metric=r["metric"], direction=r["direction"],
            config=json.loads(r["config_json"]), proposer=r["proposer"], status=r["status"],
            created_at=r["created_at"], updated_at=r["updated_at"], noise=r["noise"],
            fingerprint_key=r["fingerprint_key"],
        )

    # --- experiments ----------------------------------------------------------------------

    def create_experiment(
        self,
        session: SessionRow,
        *,
        kind: str = "candidate",
        status: str = "proposed",
        hypothesis: str = "",
        rationale: str = "",
        proposer: str = "",
        params: Mapping[str, Any] | None = None,
        parent_commit: str | None = None,
        worker: str = "inline",
        started_at: float | None = None,
    ) -> ExperimentRow:
        """Allocate the next sequence number atomically (safe with overlapping experiments)."""
        now = time.time() if started_at is None else started_at
        with self._tx() as c:
            (seq,) = c.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM experiments WHERE session_id = ?",
                (session.id,),
            ).fetchone()
            exp_id = f"{session.tag}-{seq:04d}"
            c.execute(
                "INSERT INTO experiments (id, session_id, seq, kind, status, hypothesis, rationale,"
                " proposer, params_json, parent_commit, worker, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (exp_id, session.id, seq, kind, status, clean_prose(hypothesis),
                 clean_prose(rationale), proposer,
                 None if params is None else json.dumps(params), parent_commit, worker, now),
            )
        exp = self.experiment(exp_id)
        assert exp is not None
        return exp

    def _update_experiment(self, exp_id: str, sets: str, args: Sequence[Any]) -> None:
        with self._tx() as c:
            c.execute(f"UPDATE experiments SET {sets} WHERE id = ?", (*args, exp_id))

    def record_proposal(self, exp_id: str, *, hypothesis: str, rationale: str = "",
                        params: Mapping[str, Any] | None = None) -> None:
        """What the proposer proposed (before the guardrails look at it)."""
        self._update_experiment(exp_id, "hypothesis = ?, rationale = ?, params_json = ?",
                                (clean_prose(hypothesis), clean_prose(rationale),
                                 _dumps(params)))

    def record_hypothesis(self, exp_id: str, hypothesis: str) -> None:
        """What a proposal that failed meant to try (it is still worth showing)."""
        self._update_experiment(exp_id, "hypothesis = ?", (clean_prose(hypothesis),))

    def record_params(self, exp_id: str, params: Mapping[str, Any] | None) -> None:
        self._update_experiment(exp_id, "params_json = ?", (_dumps(params),))

    def record_commit(self, exp_id: str, *, commit_sha: str, tree_sha: str,
                      files: Sequence[str] = (), lines_added: int = 0, lines_removed: int = 0,
                      parent_commit: str | None = None) -> None:
        """The experiment's commit (a candidate's change, or the baseline's base); it runs now.

        A new attempt (a crash repair, a replay onto a newer incumbent) records its own commit;
        `parent_commit` changes when the commit sits on another incumbent than before.
        """
        sets = ("status = 'running', commit_sha = ?, tree_sha = ?, files_json = ?,"
                " lines_added = ?, lines_removed = ?")
        args: list[Any] = [commit_sha, tree_sha, json.dumps(list(files)), lines_added,
                           lines_removed]
        if parent_commit is not None:
            sets += ", parent_commit = ?"
            args.append(parent_commit)
        self._update_experiment(exp_id, sets, args)

    def record_attempt(self, exp_id: str, *, attempts: int, hypothesis: str) -> None:
        """The experiment goes on with another commit (attempt number `attempts`)."""
        self._update_experiment(exp_id, "attempts = ?, hypothesis = ?",
                                (attempts, clean_prose(hypothesis)))

    def record_judgement(self, exp_id: str, *, incumbent_objective: float | None,
                         delta: float | None, threshold: float | None,
                         guards: Sequence[Mapping[str, Any]] = ()) -> None:
        """The numbers the verdict was decided on, and the guards applied to a would-be keep."""
        self._update_experiment(
            exp_id, "incumbent_objective = ?, delta = ?, threshold = ?, guards_json = ?",
            (incumbent_objective, delta, threshold, json.dumps([dict(g) for g in guards])))

    def finish_experiment(self, exp_id: str, *, status: str, reason: str,
                          objective: float | None = None,
                          finished_at: float | None = None) -> None:
        """The verdict: a final status and its reason (and the objective it was decided on)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final status")
        sets = "status = ?, decision_reason = ?, finished_at = ?"
        args: list[Any] = [status, clean_prose(reason),
                           time.time() if finished_at is None else finished_at]
        if objective is not None:
            sets += ", objective = ?"
            args.append(objective)
        self._update_experiment(exp_id, sets, args)

    def discard_unstarted(self, exp_id: str) -> None:
        """Remove an experiment that never got a proposal (nothing ran, nothing was spent)."""
        with self._tx() as c:
            c.execute(
                "DELETE FROM experiments WHERE id = ? AND status = 'proposed' AND NOT EXISTS"
                " (SELECT 1 FROM runs WHERE experiment_id = ?) AND NOT EXISTS"
                " (SELECT 1 FROM usage WHERE experiment_id = ?)",
                (exp_id, exp_id, exp_id),
            )

    def experiment(self, exp_id: str) -> ExperimentRow | None:
        rows = self._query("SELECT * FROM experiments WHERE id = ?", (exp_id,))
        return self._experiment(rows[0]) if rows else None

    def experiments(self, session_id: int, *, since_seq: int = 0) -> list[ExperimentRow]:
        rows = self._query(
            "SELECT * FROM experiments WHERE session_id = ? AND seq > ? ORDER BY seq",
            (session_id, since_seq),
        )
        return [self._experiment(r) for r in rows]

    @property
    def schema_version(self) -> int:
        """How far this file's schema is migrated (a read-only opener does not migrate)."""
        (row,) = self._query("PRAGMA user_version")
        return int(row[0])

    def changed_experiments(self, session_id: int,
                            since: int = 0) -> list[tuple[int, ExperimentRow]]:
        """(version, experiment) of every experiment written to (or given a run) after version
        `since`, in sequence order; a live view passes the highest version it has seen."""
        rows = self._query(
            "SELECT * FROM experiments WHERE session_id = ? AND touched > ? ORDER BY seq",
            (session_id, since),
        )
        return [(int(r["touched"]), self._experiment(r)) for r in rows]

    def experiment_count(self, session_id: int) -> int:
        (row,) = self._query("SELECT COUNT(*) AS n FROM experiments WHERE session_id = ?",
                             (session_id,))
        return int(row["n"])

    def experiment_runs(self, experiment_ids: Sequence[str]) -> list[RunRow]:
        """Every run of the given experiments (with metrics), in the order they were recorded."""
        out: list[RunRow] = []
        ids = list(experiment_ids)
        for i in range(0, len(ids), 500):  # SQLite's limit on bound parameters
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out += self._attach_metrics(self._query(
                f"SELECT * FROM runs WHERE experiment_id IN ({marks}) ORDER BY id", chunk))
        return sorted(out, key=lambda r: r.id)

    def open_experiments(self, session_id: int) -> list[ExperimentRow]:
        marks = ",".join("?" * len(OPEN_STATUSES))
        rows = self._query(
            f"SELECT * FROM experiments WHERE session_id = ? AND status IN ({marks}) ORDER BY seq",
            (session_id, *OPEN_STATUSES),
        )
        return [self._experiment(r) for r in rows]

    @staticmethod
    def _experiment(r: sqlite3.Row) -> ExperimentRow:
        return ExperimentRow(
            id=r["id"], session_id=r["session_id"], seq=r["seq"], kind=r["kind"],
            status=r["status"], hypothesis=clean_prose(r["hypothesis"]),
            rationale=clean_prose(r["rationale"]),
            proposer=r["proposer"], params=_loads(r["params_json"], None),
            parent_commit=r["parent_commit"], commit_sha=r["commit_sha"], tree_sha=r["tree_sha"],
            files=_loads(r["files_json"], []), lines_added=r["lines_added"],
            lines_removed=r["lines_removed"], objective=r["objective"],
            incumbent_objective=r["incumbent_objective"], delta=r["delta"],
            threshold=r["threshold"], decision_reason=clean_prose(r["decision_reason"]),
            guards=_loads(r["guards_json"], []), attempts=r["attempts"], cost_usd=r["cost_usd"],
            worker=r["worker"], started_at=r["started_at"], finished_at=r["finished_at"],
        )

    # --- runs and metrics -----------------------------------------------------------------

    def add_run(
        self,
        experiment_id: str,
        *,
        role: str,
        idx: int,
        commit_sha: str,
        status: str,
        exit_code: int | None,
        duration_s: float | None,
        log_path: str | None,
        fingerprint: Mapping[str, Any] | None,
        fingerprint_key: str | None,
        started_at: float,
        metrics: Mapping[str, float],
        attempt: int = 1,
    ) -> int:
        with self._tx() as c:
            if fingerprint is not None and fingerprint_key is not None:
                c.execute(
                    "INSERT OR IGNORE INTO fingerprints (key, json) VALUES (?, ?)",
                    (fingerprint_key, json.dumps(fingerprint, sort_keys=True)),
                )
            cur = c.execute(
                "INSERT INTO runs (experiment_id, role, idx, attempt, commit_sha, status, exit_code,"
                " duration_s, log_path, fingerprint_key, started_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (experiment_id, role, idx, attempt, commit_sha, status, exit_code, duration_s,
                 log_path, fingerprint_key, started_at, time.time()),
            )
            run_id = int(cur.lastrowid or 0)
            c.executemany(
                "INSERT INTO metrics (run_id, name, value) VALUES (?, ?, ?)",
                [(run_id, k, v) for k, v in metrics.items()],
            )
        return run_id

    def run(self, run_id: int) -> RunRow | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        found = self._attach_metrics(rows)
        return found[0] if found else None

    def runs(self, experiment_id: str) -> list[RunRow]:
        rows = self._query("SELECT * FROM runs WHERE experiment_id = ? ORDER BY id", (experiment_id,))
        return self._attach_metrics(rows)

    def session_runs(self, session_id: int) -> list[RunRow]:
        rows = self._query(
            "SELECT runs.* FROM runs JOIN experiments ON runs.experiment_id = experiments.id"
            " WHERE experiments.session_id = ? ORDER BY runs.id",
            (session_id,),
        )
        return self._attach_metrics(rows)

    def _attach_metrics(self, rows: list[sqlite3.Row]) -> list[RunRow]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        values: dict[int, dict[str, float]] = {i: {} for i in ids}
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            for m in self._query(
                f"SELECT run_id, name, value FROM metrics WHERE run_id IN ({marks})", chunk
            ):
                values[m["run_id"]][m["name"]] = (
                    m["value"] if m["value"] is not None else float("nan")
                )
        return [
            RunRow(
                id=r["id"], experiment_id=r["experiment_id"], role=r["role"], idx=r["idx"],
                attempt=r["attempt"], commit_sha=r["commit_sha"], status=r["status"],
                exit_code=r["exit_code"], duration_s=r["duration_s"], log_path=r["log_path"],
                fingerprint_key=r["fingerprint_key"], started_at=r["started_at"],
                finished_at=r["finished_at"], metrics=values[r["id"]],
            )
            for r in rows
        ]

    def fingerprint(self, key: str) -> dict[str, Any] | None:
        rows = self._query("SELECT json FROM fingerprints WHERE key = ?", (key,))
        return json.loads(rows[0]["json"]) if rows else None

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
