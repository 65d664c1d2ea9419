"""The ledger's experiments table: one typed write per thing that happens to an experiment
(created, proposed, committed, judged, finished...), and reading experiments back. Part of
`Ledger`.

Experiments may overlap in time (a worker pool runs several candidates at once): sequence numbers
are allocated inside one transaction, every write names its experiment, and nothing here assumes
a single open experiment (`open_experiments` returns all of them). A proposer's free text is
cleaned as it is written and as it is read (store.py says why).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from autoresearch.ledger.rows import FINAL_STATUSES, OPEN_STATUSES, ExperimentRow, SessionRow
from autoresearch.ledger.tables import LedgerTables
from autoresearch.unicode_controls import clean_prose

# An event's data key: new experiments of the session are numbered past this sequence number.
# Recovery records it when git, the logs or results.tsv hold experiments the ledger does not (a
# ledger restored from an older backup): MAX(seq) + 1 alone would give their ids out again.
NUMBERED_PAST = "numbered_past"
NUMBERING_EVENT = "recovery"  # the kind of event that records it
_NEXT_SEQ = (
    "SELECT MAX(COALESCE((SELECT MAX(seq) FROM experiments WHERE session_id = ?), 0),"
    " COALESCE((SELECT MAX(CAST(json_extract(data_json, '$." + NUMBERED_PAST + "') AS INTEGER))"
    f"  FROM events WHERE session_id = ? AND kind = '{NUMBERING_EVENT}'"
    "  AND data_json IS NOT NULL), 0)) + 1")


def _loads(raw: str | None, default: Any) -> Any:
    return default if raw is None else json.loads(raw)


def _dumps(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


class ExperimentTables(LedgerTables):
    """Experiments, written and read through the ledger's connection."""

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
        """Allocate the next sequence number atomically (safe with overlapping experiments):
        past every experiment of the session, and past any number recovery reserved."""
        now = time.time() if started_at is None else started_at
        with self._tx() as c:
            (seq,) = c.execute(_NEXT_SEQ, (session.id, session.id)).fetchone()
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

    def next_seq(self, session_id: int) -> int:
        """The sequence number the session's next experiment gets."""
        (row,) = self._query(_NEXT_SEQ, (session_id, session_id))
        return int(row[0])

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

    def last_sign_of_life(self, exp_id: str) -> float | None:
        """When the experiment was last seen at work: its latest run's end, model call or event,
        or its start (None: no such experiment). What a session killed mid-experiment is taken
        to have ended it at, so that the time until a resume is not counted as its work."""
        rows = self._query(
            "SELECT MAX(t) FROM ("
            " SELECT started_at AS t FROM experiments WHERE id = ?"
            " UNION ALL SELECT COALESCE(finished_at, started_at) FROM runs"
            "  WHERE experiment_id = ?"
            " UNION ALL SELECT at FROM usage WHERE experiment_id = ?"
            " UNION ALL SELECT at FROM events WHERE experiment_id = ?)",
            (exp_id, exp_id, exp_id, exp_id))
        value = rows[0][0] if rows else None
        return float(value) if value is not None else None

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
