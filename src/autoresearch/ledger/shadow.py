"""A private copy of one session's rows, kept by the session's own connection, to tell its own
writes from anybody else's.

`install` copies the session's rows into TEMP tables and adds TEMP triggers on the ledger's
tables that mirror every insert, update and delete made *through this connection* (temp objects
belong to the connection: no other process can see or change them, and their triggers do not fire
for other connections' writes). `differences` then compares the ledger's rows of the session with
the copy: any difference was made by another process. SQLite does the work in C, once per check
where `PRAGMA data_version` says another connection committed (see ledger_watch). Rows are paired
by rowid (the copy's indexed `_rid`) and compared column by column with `IS NOT`: a session of
5,000 experiments with long hypotheses (10,000 runs, 20,000 metrics) compares in ~90 ms, where
comparing whole rows with EXCEPT (which sorts them) took ~250 ms (bench/big_ledger.py).
"""

from __future__ import annotations

import sqlite3

__all__ = ["differences", "install"]

# Each table holding a session's rows, and how its rows of session :sid are found; `{t}` is the
# prefix of the row's own columns (an alias, or nothing), `{s}` the schema prefix of the tables
# the filter joins (the ledger's, or the copies).
_ROWS: dict[str, str] = {
    "sessions": "{t}id = :sid",
    "experiments": "{t}session_id = :sid",
    "runs": "{t}experiment_id IN (SELECT id FROM {s}experiments WHERE session_id = :sid)",
    "metrics": ("{t}run_id IN (SELECT r.id FROM {s}runs r JOIN {s}experiments e"
                " ON e.id = r.experiment_id WHERE e.session_id = :sid)"),
    "usage": "{t}session_id = :sid",
    "events": "{t}session_id = :sid",
    "reviews": "{t}session_id = :sid",
    "review_findings": "{t}review_id IN (SELECT id FROM {s}reviews WHERE session_id = :sid)",
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
                     f"main.{table} WHERE {rows.format(t='', s='main.')}", {"sid": session_id})
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
        (count,) = conn.execute(_differing_rows(conn, table, rows),
                                {"sid": session_id}).fetchone()
        if count:
            found.append(f"{table} ({count} row{'s' * (count > 1)})")
    return found


def _differing_rows(conn: sqlite3.Connection, table: str, rows: str) -> str:
    """SQL counting the rows of `table` that differ between the ledger's rows of the session and
    the copy's, each counted once: a ledger row of the session whose copy (same rowid) is
    missing, is not the session's in the copy, or differs in a column; and a copy row of the
    session whose ledger row is missing, is no longer the session's, or differs. (What an EXCEPT
    of the two row sets, both ways, counts, without sorting every row.)"""
    columns = [name for (_, name, *_rest) in conn.execute(f"PRAGMA main.table_info({table})")]
    ours = rows.format(t="m.", s="main.")
    kept = rows.format(t="c.", s=_COPY)
    # IS NOT: NULL against NULL is no difference, NULL against a value is one (as in EXCEPT).
    # A missing partner fails the other side's filter too (NULL, taken as false); the IS NULL
    # tests say it plainly.
    differ = " OR ".join(f'm."{name}" IS NOT c."{name}"' for name in columns)
    copy = f"{_COPY}{table}"
    return (
        f"SELECT count(*) FROM ("
        f"SELECT m.rowid FROM main.{table} AS m LEFT JOIN {copy} AS c ON c._rid = m.rowid"
        f" WHERE ({ours}) AND (c._rid IS NULL OR NOT COALESCE(({kept}), 0) OR {differ})"
        f" UNION SELECT c._rid FROM {copy} AS c LEFT JOIN main.{table} AS m ON m.rowid = c._rid"
        f" WHERE ({kept}) AND (m.rowid IS NULL OR NOT COALESCE(({ours}), 0) OR {differ}))")
