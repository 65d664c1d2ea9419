"""The live views' change marker (Ledger.change_marker): it moves with every write a page shows,
for the session asked about only, on a current ledger and on one from before the version
stamps (opened read-only, not migrated)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from autoresearch.ledger import Ledger, SessionRow
from autoresearch.ledger.schema import MIGRATIONS


def _session(ledger: Ledger, tag: str) -> SessionRow:
    return ledger.create_session(tag=tag, branch=f"autoresearch/{tag}", base_commit="a" * 40,
                                 worktree="/nowhere", metric="score", direction="minimize",
                                 config={}, proposer="llm")


def _run(ledger: Ledger, exp_id: str, idx: int) -> None:
    ledger.add_run(exp_id, role="candidate", idx=idx, commit_sha="b" * 40, status="ok",
                   exit_code=0, duration_s=1.0, log_path=None, fingerprint=None,
                   fingerprint_key=None, started_at=time.time(), metrics={"score": 1.0})


def test_the_marker_moves_with_every_write_to_the_session_and_only_its_own(
        tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    mine, other = _session(ledger, "mine"), _session(ledger, "other")
    theirs = ledger.create_experiment(other, status="running")
    seen = [ledger.change_marker(mine.id)]

    def moved() -> bool:
        seen.append(ledger.change_marker(mine.id))
        return seen[-1] != seen[-2]

    assert not moved()  # nothing written: the same marker
    exp = ledger.create_experiment(mine, status="proposed")
    assert moved()
    ledger.record_proposal(exp.id, hypothesis="try a wider layer")
    assert moved()  # a hypothesis arrives while the experiment runs
    ledger.record_commit(exp.id, commit_sha="b" * 40, tree_sha="c" * 40, files=["train.py"])
    assert moved()
    _run(ledger, exp.id, 0)
    assert moved()
    ledger.record_judgement(exp.id, incumbent_objective=1.1, delta=-0.1, threshold=0.05)
    assert moved()
    ledger.finish_experiment(exp.id, status="keep", reason="better", objective=1.0)
    assert moved()
    ledger.add_event(mine.id, "warning", "the machine is busy")
    assert moved()
    # Another session's writes leave this session's marker as it was.
    _run(ledger, theirs.id, 0)
    ledger.finish_experiment(theirs.id, status="discard", reason="worse", objective=2.0)
    ledger.add_event(other.id, "warning", "elsewhere")
    ledger.create_experiment(other, status="proposed")
    assert not moved()
    unstarted = ledger.create_experiment(mine, status="proposed")
    assert moved()
    ledger.discard_unstarted(unstarted.id)
    assert moved()
    ledger.close()


def test_a_ledger_from_before_the_version_stamps_still_gets_a_moving_marker(
        tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO sessions (id, tag, branch, base_commit, worktree, metric,"
                 " direction, config_json, created_at, updated_at) VALUES"
                 " (1, 'old', 'autoresearch/old', 'a', '/nowhere', 'score', 'minimize', '{}',"
                 " 0, 0)")
    conn.execute("INSERT INTO experiments (id, session_id, seq, status, started_at)"
                 " VALUES ('old-0001', 1, 1, 'running', 1.0)")
    conn.commit()

    def marker() -> tuple[int, int, int, float]:
        ledger = Ledger(path, readonly=True)
        try:
            assert ledger.schema_version == 1
            return ledger.change_marker(1)
        finally:
            ledger.close()

    first = marker()
    assert marker() == first
    conn.execute("INSERT INTO runs (experiment_id, role, idx, commit_sha, status, started_at)"
                 " VALUES ('old-0001', 'candidate', 0, 'b', 'ok', 2.0)")
    conn.commit()
    second = marker()
    assert second != first
    conn.execute("UPDATE experiments SET status = 'keep', finished_at = 3.0")
    conn.commit()
    assert marker() != second
    conn.close()
