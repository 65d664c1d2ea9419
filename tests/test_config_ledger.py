"""The contract file's parsing and the ledger's durability guarantees."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from autoresearch.config import Amount, parse_config
from autoresearch.errors import ConfigError, LedgerTooNewError
from autoresearch.ledger import Ledger, TrialStatus
from autoresearch.ledger.schema import MIGRATIONS

BASE = {"scope": ["a.py"], "verify": {"command": "true", "budget_seconds": 10},
        "metric": {"name": "m", "direction": "minimize"}}


def test_defaults_and_derived_values() -> None:
    config = parse_config(BASE)
    assert config.verify.timeout == 4 * 80  # nothing measured yet: 4 x (2 x budget + 60)
    assert config.decision.baseline_repeats(10) == 3
    assert config.decision.baseline_repeats(300) == 1
    assert "autoresearch.toml" in config.all_protected
    assert config.proposer.name == "auto"


def test_amounts() -> None:
    assert Amount.parse("0.5%").resolve(2.0) == pytest.approx(0.01)
    assert Amount.parse(0.01).resolve(100.0) == 0.01
    with pytest.raises(ValueError):
        Amount.parse("lots")


def test_proposer_options_pass_through() -> None:
    config = parse_config({**BASE, "proposer": {"name": "llm", "model": "x", "temperature": 0.2}})
    assert config.proposer.options == {"model": "x", "temperature": 0.2}


def test_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "verify": {"command": "true"}})
    assert "verify.budget_seconds" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "guards": [{"command": "x", "metric": "y", "max": 1}]})
    assert "guards[0]" in str(err.value)


def test_ledger_migrates_a_new_file_and_refuses_a_newer_one(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(LedgerTooNewError, match="newer"):
        Ledger(path)


def test_overlapping_experiments_get_distinct_sequence_numbers(tmp_path: Path) -> None:
    a = Ledger(tmp_path / "l.db")
    b = Ledger(tmp_path / "l.db")
    session = a.create_session(tag="t", branch="b", base_commit="c", worktree="w", metric="m",
                               direction="minimize", config={}, proposer="p")
    ids = [ledger.create_experiment(session).id for ledger in (a, b, a, b)]
    assert ids == ["t-0001", "t-0002", "t-0003", "t-0004"]
    a.discard_unstarted("t-0004")
    assert [e.seq for e in b.experiments(session.id)] == [1, 2, 3]


def test_an_experiments_life_is_written_through_typed_steps(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    session = ledger.create_session(tag="t", branch="b", base_commit="c", worktree="w",
                                    metric="m", direction="minimize", config={}, proposer="p")
    exp = ledger.create_experiment(session, parent_commit="p0")
    assert exp.status == TrialStatus.PROPOSED and not TrialStatus(exp.status).final
    ledger.record_proposal(exp.id, hypothesis="h", rationale="r", params={"lr": 0.1})
    ledger.record_commit(exp.id, commit_sha="c1", tree_sha="t1", files=["a.py"],
                         lines_added=2, lines_removed=1)
    ledger.record_attempt(exp.id, attempts=2, hypothesis="h, replayed")
    ledger.record_commit(exp.id, commit_sha="c2", tree_sha="t2", files=["a.py"],
                         parent_commit="p1")
    ledger.record_judgement(exp.id, incumbent_objective=1.0, delta=-0.5, threshold=0.1,
                            guards=[{"guard": "g", "passed": True, "detail": "ok"}])
    with pytest.raises(ValueError, match="not a final status"):
        ledger.finish_experiment(exp.id, status="running", reason="no")
    ledger.finish_experiment(exp.id, status=TrialStatus.KEEP, reason="better", objective=0.5)
    row = ledger.experiment(exp.id)
    assert row is not None
    assert (row.status, row.hypothesis, row.params, row.commit_sha, row.parent_commit,
            row.attempts, row.delta, row.objective, row.decision_reason) == (
        "keep", "h, replayed", {"lr": 0.1}, "c2", "p1", 2, -0.5, 0.5, "better")
    assert row.guards == [{"guard": "g", "passed": True, "detail": "ok"}]
    assert row.finished_at is not None and TrialStatus(row.status).final


@pytest.mark.parametrize(
    ("scope", "protected", "overlap"),
    [
        ("*.py", "score.py", True),  # the protected file is one the scope selects
        ("src/**/*.py", "src/eval/*.py", True),
        ("src/eval/*.py", "src/**", True),  # the whole scope is protected
        ("train.py", "train.py", True),
        ("**", "autoresearch.toml", True),
        ("target.py", "score.py", False),
        ("*.py", "data/**", False),
        ("src/**", "**/secret.py", False),  # may share files: only the file-level check knows
    ],
)
def test_obviously_overlapping_globs(scope: str, protected: str, overlap: bool) -> None:
    from autoresearch.globs import globs_overlap

    assert globs_overlap(scope, protected) is overlap
