"""The ledger's sessions table: a session created, opened or resumed, restarted from another
commit, its status, noise and fingerprint, and reading sessions back. Part of `Ledger`."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from autoresearch.ledger.rows import SessionRow
from autoresearch.ledger.tables import LedgerTables


class SessionTables(LedgerTables):
    """Sessions, written and read through the ledger's connection."""

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
