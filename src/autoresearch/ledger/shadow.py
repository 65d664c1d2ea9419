"""A private copy of one session's rows, kept by the session's own connection, to tell its own
writes from anybody else's.

`install` copies the session's rows into TEMP tables and adds TEMP triggers on the ledger's
tables that mirror every insert, update and delete made *through this connection* (temp objects
belong to the connection: no other process can see or change them, and their triggers do not fire
for other connections' writes). `differences` then compares the ledger's rows of the session with
the copy: any difference was made by another process. SQLite does the work in C, once per check
where `PRAGMA data_version` says another connection committed (see ledger_watch); a session of
2000 experiments (6000 runs, 18000 metrics) compares in tens of milliseconds.
"""

from __future__ import annotations

import sqlite3

__all__ = ["differences", "install"]

# Each table holding a session's rows, and how its rows of session :sid are found; `{s}` is the
# schema prefix of the tables the filter joins (the ledger's, or the copies).
_ROWS: dict[str, str] = {
    "sessions": "id = :sid",
    "experiments": "session_id = :sid",
    "runs": "experiment_id IN (SELECT id FROM {s}experiments WHERE session_id = :sid)",
    "metrics": ("run_id IN (SELECT r.id FROM {s}runs r JOIN {s}experiments e"
                " ON e.id = r.experiment_id WHERE e.session_id = :sid)"),
    "usage": "session_id = :sid",
    "events": "session_id = :sid",
    "reviews": "session_id = :sid",
    "review_findings": "review_id IN (SELECT id FROM {s}reviews WHERE session_id = :sid)",
}
_COPY = "temp.shadow_"


def install(conn: sqlite3.Connection, session_id: int) -> None:
    """Copy the session's rows and start mirroring this connection's writes (idempotent)."""
    present = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if conn.execute("SELECT 1 FROM temp.sqlite_master WHERE name = 'shadow_sessions'").fetchone():
        return
    for table, rows in _ROWS.items():
        if table not in present:
            continue
        copy = f"shadow_{table}"  # a trigger names its targets unqualified: only temp has it
        conn.execute(f"CREATE TEMP TABLE shadow_{table} AS SELECT rowid AS _rid, * FROM "
                     f"main.{table} WHERE {rows.format(s='main.')}", {"sid": session_id})
        conn.execute(f"CREATE INDEX temp.shadow_{table}_rid ON shadow_{table}(_rid)")
        same = f"SELECT rowid, * FROM main.{table} WHERE rowid = NEW.rowid"
        conn.executescript(f"""
            CREATE TEMP TRIGGER shadow_{table}_insert AFTER INSERT ON main.{table} BEGIN
                INSERT INTO {copy} {same};
            END;
            CREATE TEMP TRIGGER shadow_{table}_update AFTER UPDATE ON main.{table} BEGIN
                DELETE FROM {copy} WHERE _rid = OLD.rowid;
                INSERT INTO {copy} {same};
            END;
            CREATE TEMP TRIGGER shadow_{table}_delete AFTER DELETE ON main.{table} BEGIN
                DELETE FROM {copy} WHERE _rid = OLD.rowid;
            END;
        """)


def differences(conn: sqlite3.Connection, session_id: int) -> list[str]:
    """The tables whose rows of the session differ from the copy, with how many rows differ
    (empty: only this connection wrote them)."""
    found = []
    copies = {name[len("shadow_"):] for (name,) in conn.execute(
        "SELECT name FROM temp.sqlite_master WHERE type = 'table'")
        if name.startswith("shadow_")}
    for table, rows in _ROWS.items():
        if table not in copies:
            continue
        ledger = f"SELECT rowid AS _rid, * FROM main.{table} WHERE {rows.format(s='main.')}"
        copy = f"SELECT * FROM {_COPY}{table} WHERE {rows.format(s=_COPY)}"
        (count,) = conn.execute(  # rows changed, added or removed, each counted once
            f"SELECT count(*) FROM (SELECT _rid FROM ({ledger} EXCEPT {copy})"
            f" UNION SELECT _rid FROM ({copy} EXCEPT {ledger}))", {"sid": session_id}).fetchone()
        if count:
            found.append(f"{table} ({count} row{'s' * (count > 1)})")
    return found
