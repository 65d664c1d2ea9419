"""The ledger watch's comparison (ledger.shadow.differences) finds every change another
connection makes to the session's rows, counts each changed row once, and ignores other
sessions' rows: on every kind of change it reports what comparing the two row sets whole
(EXCEPT both ways, how it compared them before it paired rows by rowid) reports."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from autoresearch.ledger import Ledger
from autoresearch.ledger.shadow import _COPY, _ROWS, differences, install


def _except_reference(conn: sqlite3.Connection, session_id: int) -> list[str]:
    """The whole-row comparison, as shadow.py did it before."""
    found = []
    for table, rows in _ROWS.items():
        ledger = (f"SELECT rowid AS _rid, * FROM main.{table}"
                  f" WHERE {rows.format(t='', s='main.')}")
        copy = f"SELECT * FROM {_COPY}{table} WHERE {rows.format(t='', s=_COPY)}"
        (count,) = conn.execute(
            f"SELECT count(*) FROM (SELECT _rid FROM ({ledger} EXCEPT {copy})"
            f" UNION SELECT _rid FROM ({copy} EXCEPT {ledger}))", {"sid": session_id}).fetchone()
        if count:
            found.append(f"{table} ({count} row{'s' * (count > 1)})")
    return found


def _build(path: Path) -> None:
    ledger = Ledger(path)
    for tag in ("mine", "theirs"):
        session = ledger.create_session(tag=tag, branch=f"autoresearch/{tag}",
                                        base_commit="a" * 40, worktree="/nowhere",
                                        metric="score", direction="minimize", config={},
                                        proposer="llm")
        for n in range(3):
            exp = ledger.create_experiment(session, status="running", hypothesis=f"{tag} {n}")
            for idx in range(2):
                ledger.add_run(exp.id, role="candidate", idx=idx, commit_sha=f"{n:040d}",
                               status="ok", exit_code=0, duration_s=1.0, log_path=None,
                               fingerprint=None, fingerprint_key=None, started_at=time.time(),
                               metrics={"score": 1.0 + n + idx / 10, "peak_memory_mb": 9.0})
            ledger.add_usage(session.id, exp.id, provider="p", model="m", cost_usd=0.01)
            ledger.add_event(session.id, "note", f"{tag} {n}", experiment_id=exp.id)
            if n == 2:  # the last one never got a commit: commit_sha stays NULL
                continue
            ledger.finish_experiment(exp.id, status="discard", reason="worse", objective=1.0)
            ledger.record_commit(exp.id, commit_sha=f"{n:040d}", tree_sha="t" * 40)
        with sqlite3.connect(path) as conn:  # a review with findings, as the review gate stores
            cur = conn.execute(
                "INSERT INTO reviews (subject_key, subject, kind, session_id, experiment_id,"
                " started_at, duration_s) VALUES (?, ?, 'gate', ?, ?, 0, 1)",
                (f"k-{tag}", f"s-{tag}", session.id, f"{tag}-0001"))
            for idx in range(2):
                conn.execute(
                    "INSERT INTO review_findings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (cur.lastrowid, idx, f"fp{idx}", "yellow", "a.py", 1, 2, "angle", "cat",
                     "minor", "title", "body", "evidence", 0.5, "[]", 1, 0))
    ledger.close()


# (what another process does, whether it touches session "mine" (id 1))
CHANGES = [
    ("UPDATE experiments SET hypothesis = 'x' WHERE id = 'mine-0001'", True),
    ("UPDATE experiments SET hypothesis = 'x' WHERE session_id = 1", True),
    ("UPDATE experiments SET objective = NULL WHERE id = 'mine-0001'", True),
    ("UPDATE experiments SET commit_sha = 'c' WHERE id = 'mine-0003'", True),  # NULL -> value
    # Same value (1.0 stored as 1): the triggers still move the row's version stamp.
    ("UPDATE experiments SET objective = 1 WHERE id = 'mine-0001'", True),
    ("UPDATE metrics SET value = 1 WHERE run_id = 1 AND name = 'score'", False),  # 1.0 is 1
    ("UPDATE experiments SET session_id = 2, seq = 9 WHERE id = 'mine-0002'", True),
    ("UPDATE experiments SET session_id = 1, seq = 9 WHERE id = 'theirs-0002'", True),
    ("UPDATE experiments SET rowid = 999 WHERE id = 'mine-0001'", True),
    ("DELETE FROM metrics WHERE run_id IN (SELECT id FROM runs"
     " WHERE experiment_id = 'mine-0001')", True),
    ("UPDATE metrics SET value = value + 1e-9 WHERE run_id = 1 AND name = 'score'", True),
    ("UPDATE metrics SET value = NULL WHERE run_id = 2", True),
    ("DELETE FROM runs WHERE id = 2", True),
    ("INSERT INTO runs (experiment_id, role, idx, commit_sha, status, started_at)"
     " VALUES ('mine-0002', 'candidate', 5, 'c', 'ok', 0)", True),
    ("UPDATE runs SET experiment_id = 'theirs-0001' WHERE id = 1", True),
    ("UPDATE usage SET cost_usd = 0 WHERE session_id = 1", True),
    ("INSERT INTO events (session_id, at, kind, message) VALUES (1, 0, 'note', 'forged')", True),
    ("UPDATE events SET data_json = '{}' WHERE session_id = 1", True),
    ("UPDATE sessions SET noise = 0.5 WHERE id = 1", True),
    ("UPDATE sessions SET status = 'finished' WHERE id = 1", True),
    ("UPDATE reviews SET red = 3 WHERE session_id = 1", True),
    ("UPDATE review_findings SET title = 'nothing' WHERE review_id IN"
     " (SELECT id FROM reviews WHERE session_id = 1)", True),
    ("DELETE FROM review_findings WHERE review_id IN"
     " (SELECT id FROM reviews WHERE session_id = 1) AND idx = 0", True),
    # Another session's rows are its own business.
    ("UPDATE experiments SET hypothesis = 'x' WHERE session_id = 2", False),
    ("DELETE FROM metrics WHERE run_id IN (SELECT r.id FROM runs r JOIN experiments e"
     " ON e.id = r.experiment_id WHERE e.session_id = 2)", False),
    ("INSERT INTO events (session_id, at, kind, message) VALUES (2, 0, 'note', 'theirs')", False),
    ("UPDATE review_findings SET title = 'theirs' WHERE review_id IN"
     " (SELECT id FROM reviews WHERE session_id = 2)", False),
    ("UPDATE sessions SET status = 'finished' WHERE id = 2", False),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shadow") / "ledger.db"
    _build(path)
    return path


@pytest.mark.parametrize(("change", "ours"), CHANGES, ids=[c for c, _ in CHANGES])
def test_a_change_by_another_process_is_found_as_comparing_whole_rows_finds_it(
        built: Path, tmp_path: Path, change: str, ours: bool) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(built, path)
    session = sqlite3.connect(path, isolation_level=None)  # the session's own connection
    try:
        install(session, 1)
        # Its own writes are mirrored in the copy: no difference.
        session.execute("INSERT INTO events (session_id, at, kind, message)"
                        " VALUES (1, 0, 'note', 'ours')")
        session.execute("UPDATE experiments SET hypothesis = 'ours' WHERE id = 'mine-0002'")
        assert differences(session, 1) == [] == _except_reference(session, 1)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            assert other.execute(change).rowcount > 0  # the change did change something
        finally:
            other.close()
        found = differences(session, 1)
        assert found == _except_reference(session, 1)
        assert bool(found) == ours, found
    finally:
        session.close()
