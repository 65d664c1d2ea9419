"""The ledger's review tables (schema migration 3): reviews and their findings, written by
`autoresearch review` and the in-loop review gate, read by the review views and the session
views' marks. Part of `Ledger`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autoresearch.ledger.reviews import (
    ReviewFindingRecord,
    ReviewMark,
    ReviewRecord,
    ReviewRow,
)
from autoresearch.ledger.tables import LedgerTables
from autoresearch.review.model import llm_not_asked
from autoresearch.unicode_controls import clean_prose


def _clean_strings(value: Any) -> Any:
    """Every string in a JSON value cleaned (a reviewer's note may quote a model's error)."""
    if isinstance(value, str):
        return clean_prose(value)
    if isinstance(value, dict):
        return {k: _clean_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_strings(v) for v in value]
    return value


class ReviewTables(LedgerTables):
    """Reviews and findings, written and read through the ledger's connection."""

    if TYPE_CHECKING:  # provided by Ledger, which these tables are part of
        @property
        def schema_version(self) -> int: ...

    def add_review(self, record: ReviewRecord) -> int:
        """Store a review and its findings in one transaction; returns the review's id.

        What a reviewer model wrote (titles, explanations, notes) and the code it quotes (the
        evidence) are cleaned as the ledger's other free text is (store.py); the path names a
        file of the repository and is kept as it is."""
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO reviews (subject_key, subject, kind, base_commit, head_commit,"
                " session_id, experiment_id, started_at, duration_s, red, yellow, purple, blocked,"
                " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,"
                " capped, scale, reviewers_json, notes_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.subject_key, clean_prose(record.subject), record.kind, record.base_commit,
                 record.head_commit, record.session_id, record.experiment_id, record.started_at,
                 record.duration_s, record.red, record.yellow, record.purple, int(record.blocked),
                 record.input_tokens, record.output_tokens, record.cache_read_tokens,
                 record.cache_write_tokens, record.cost_usd, int(record.capped), record.scale,
                 json.dumps(_clean_strings(record.reviewers)),
                 json.dumps(_clean_strings(record.notes))),
            )
            review_id = int(cur.lastrowid or 0)
            c.executemany(
                "INSERT INTO review_findings (review_id, idx, fingerprint, colour, path,"
                " start_line, end_line, angle, category, severity, title, body, evidence,"
                " confidence, sources_json, inline, known)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(review_id, i, f.fingerprint, f.colour, f.path, f.start_line, f.end_line,
                  clean_prose(f.angle), clean_prose(f.category), clean_prose(f.severity),
                  clean_prose(f.title), clean_prose(f.body), clean_prose(f.evidence),
                  f.confidence, json.dumps(_clean_strings(f.sources)), int(f.inline),
                  int(f.known))
                 for i, f in enumerate(record.findings)],
            )
        return review_id

    def reviews(self, *, subject_key: str | None = None, experiment_id: str | None = None,
                session_id: int | None = None) -> list[ReviewRow]:
        """Reviews, oldest first, optionally of one subject, experiment or session."""
        where, args = [], []
        for column, value in (("subject_key", subject_key), ("experiment_id", experiment_id),
                              ("session_id", session_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM reviews" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._query(sql + " ORDER BY id", args)
        return [self._review(r) for r in rows]

    def _review(self, r: sqlite3.Row) -> ReviewRow:
        findings = [
            ReviewFindingRecord(
                fingerprint=f["fingerprint"], colour=f["colour"], path=f["path"],
                start_line=f["start_line"], end_line=f["end_line"],
                angle=clean_prose(f["angle"]), category=clean_prose(f["category"]),
                severity=clean_prose(f["severity"]), title=clean_prose(f["title"]),
                body=clean_prose(f["body"]), evidence=clean_prose(f["evidence"]),
                confidence=f["confidence"], sources=_clean_strings(json.loads(f["sources_json"])),
                inline=bool(f["inline"]),
                known=bool(f["known"]))
            for f in self._query(
                "SELECT * FROM review_findings WHERE review_id = ? ORDER BY idx", (r["id"],))
        ]
        return ReviewRow(
            id=r["id"], subject_key=r["subject_key"], subject=clean_prose(r["subject"]),
            kind=r["kind"],
            base_commit=r["base_commit"], head_commit=r["head_commit"],
            session_id=r["session_id"], experiment_id=r["experiment_id"],
            started_at=r["started_at"], duration_s=r["duration_s"], red=r["red"],
            yellow=r["yellow"], purple=r["purple"], blocked=bool(r["blocked"]),
            input_tokens=r["input_tokens"], output_tokens=r["output_tokens"],
            cache_read_tokens=r["cache_read_tokens"], cache_write_tokens=r["cache_write_tokens"],
            cost_usd=r["cost_usd"], capped=bool(r["capped"]), scale=r["scale"],
            reviewers=_clean_strings(json.loads(r["reviewers_json"])),
            notes=_clean_strings(json.loads(r["notes_json"])),
            findings=findings)

    def reported_fingerprints(self, subject_key: str) -> set[str]:
        """Fingerprints of every finding earlier reviews of this subject reported."""
        rows = self._query(
            "SELECT DISTINCT f.fingerprint FROM review_findings f JOIN reviews r"
            " ON f.review_id = r.id WHERE r.subject_key = ?", (subject_key,))
        return {row["fingerprint"] for row in rows}

    # --- reviews as the session views read them (read-only) -------------------------------

    REVIEWS_SCHEMA = 3  # the migration that added the review tables

    def review_marks(self, session_id: int,
                     experiment_ids: Sequence[str] | None = None) -> dict[str, ReviewMark]:
        """Each reviewed experiment of the session (or of those ids) → its latest review in
        brief. Empty for a ledger from before the review tables (opened read-only)."""
        if self.schema_version < self.REVIEWS_SCHEMA:
            return {}
        sql = ("SELECT r.id, r.experiment_id, r.red, r.yellow, r.purple, r.blocked, r.notes_json"
               " FROM reviews r"
               " JOIN experiments e ON r.experiment_id = e.id WHERE e.session_id = ?")
        if experiment_ids is None:
            rows = self._query(sql + " ORDER BY r.id", (session_id,))
        else:
            ids, rows = list(experiment_ids), []
            for i in range(0, len(ids), 500):  # SQLite's limit on bound parameters
                chunk = ids[i:i + 500]
                rows += self._query(
                    sql + f" AND r.experiment_id IN ({','.join('?' * len(chunk))}) ORDER BY r.id",
                    (session_id, *chunk))
        marks: dict[str, ReviewMark] = {}
        for r in sorted(rows, key=lambda row: int(row["id"])):  # the latest review wins
            earlier = marks.get(r["experiment_id"])
            marks[r["experiment_id"]] = ReviewMark(
                review_id=int(r["id"]), red=int(r["red"]), yellow=int(r["yellow"]),
                purple=int(r["purple"]), blocked=bool(r["blocked"]),
                reviews=1 + (earlier.reviews if earlier else 0),
                offline_only=llm_not_asked(json.loads(r["notes_json"])) is not None)
        return marks

    def review_stamp(self, session_id: int) -> int:
        """The id of the session's newest experiment review (0 when none): changes when a
        review is recorded, for a live view's change marker."""
        if self.schema_version < self.REVIEWS_SCHEMA:
            return 0
        (row,) = self._query(
            "SELECT COALESCE(MAX(r.id), 0) AS n FROM reviews r JOIN experiments e"
            " ON r.experiment_id = e.id WHERE e.session_id = ?", (session_id,))
        return int(row["n"])
