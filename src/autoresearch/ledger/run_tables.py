"""The ledger's runs, metrics and fingerprints tables: every run of an experiment with the numbers
it reported and the machine it ran on, and reading runs back with their metrics. Part of
`Ledger`."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from autoresearch.ledger.rows import RunRow
from autoresearch.ledger.tables import LedgerTables


class RunTables(LedgerTables):
    """Runs, their metrics and fingerprints, written and read through the ledger's connection."""

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
