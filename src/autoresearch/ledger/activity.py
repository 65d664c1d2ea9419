"""The ledger's usage and events tables: what LLM calls cost, and what happened in a session
(warnings, repairs, simplicity bookings...) besides experiments and runs. Part of `Ledger`."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from autoresearch.ledger.tables import LedgerTables
from autoresearch.unicode_controls import clean_prose

# The event a run of the session records when it stops: why, in the words `run` printed
# ("stopped: the spending limit is reached: ..."); `status` shows the latest.
STOP_EVENT = "stop"


class ActivityTables(LedgerTables):
    """Usage and events, written and read through the ledger's connection."""

    def add_usage(
        self,
        session_id: int,
        experiment_id: str | None,
        *,
        provider: str,
        model: str,
        purpose: str = "propose",
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cost_usd: float = 0.0,
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO usage (experiment_id, session_id, provider, model, purpose,"
                " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (experiment_id, session_id, provider, model, purpose, input_tokens, output_tokens,
                 cache_read_tokens, cache_write_tokens, cost_usd, time.time()),
            )
            if experiment_id is not None:
                c.execute(
                    "UPDATE experiments SET cost_usd = cost_usd + ? WHERE id = ?",
                    (cost_usd, experiment_id),
                )

    def usage_totals(self, session_id: int) -> dict[str, float]:
        return self._usage_where("session_id", session_id)

    def experiment_usage(self, experiment_id: str) -> dict[str, float]:
        """One experiment's model calls, tokens and cost (`show`), as `usage_totals` sums them."""
        return self._usage_where("experiment_id", experiment_id)

    def work_spans(self, session_id: int) -> list[tuple[float, float | None]]:
        """When the session was at work: every experiment's and every run's (start, end), the
        end None while open (a headline's runs go on after their experiment ended)."""
        rows = self._query(
            "SELECT started_at, finished_at FROM experiments WHERE session_id = ? UNION ALL "
            "SELECT r.started_at, r.finished_at FROM runs r JOIN experiments e "
            "ON r.experiment_id = e.id WHERE e.session_id = ?", (session_id, session_id))
        return [(float(r[0]), None if r[1] is None else float(r[1])) for r in rows
                if r[0] is not None]

    def _usage_where(self, column: str, value: object) -> dict[str, float]:
        assert column in ("session_id", "experiment_id")  # never user text in the SQL
        (row,) = self._query(
            "SELECT COUNT(*) AS calls, COALESCE(SUM(input_tokens), 0) AS input_tokens,"
            " COALESCE(SUM(output_tokens), 0) AS output_tokens,"
            " COALESCE(SUM(cache_read_tokens), 0) AS cache_read_tokens,"
            " COALESCE(SUM(cache_write_tokens), 0) AS cache_write_tokens,"
            f" COALESCE(SUM(cost_usd), 0) AS cost_usd FROM usage WHERE {column} = ?",
            (value,),
        )
        return {k: float(row[k]) for k in row.keys()}  # noqa: SIM118 - sqlite3.Row

    def add_event(
        self,
        session_id: int,
        kind: str,
        message: str,
        *,
        experiment_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO events (session_id, experiment_id, at, kind, message, data_json)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                # The message may quote a model or an agent (store.py says why it is cleaned);
                # `data` is the harness's own record, compared later, and kept as it is.
                (session_id, experiment_id, time.time(), kind, clean_prose(message),
                 None if data is None else json.dumps(data)),
            )

    def events(self, session_id: int, *, after_id: int = 0,
               kind: str | None = None) -> list[dict[str, Any]]:
        """The session's events after `after_id` (of one `kind` only, when given), in order."""
        rows = self._query(
            "SELECT * FROM events WHERE session_id = ? AND id > ? AND (? IS NULL OR kind = ?)"
            " ORDER BY id",
            (session_id, after_id, kind, kind),
        )
        return [
            {"id": r["id"], "experiment_id": r["experiment_id"], "at": r["at"], "kind": r["kind"],
             "message": clean_prose(r["message"]),
             "data": None if r["data_json"] is None else json.loads(r["data_json"])}
            for r in rows
        ]
