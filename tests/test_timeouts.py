"""The verify timeout is sized from what the unchanged code's runs need beyond the budget
(startup, evaluation), says so, and never overrides an explicit `timeout_seconds`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from autoresearch.config import VerifyConfig, parse_config
from autoresearch.timeouts import LOAD_FACTOR, MARGIN_S
from tests.conftest import CONFIG, SCORE_PY, make_repo, run_cli, use_script


def verify(**fields: object) -> VerifyConfig:
    data = {"scope": ["a.py"], "verify": {"command": "true", "budget_seconds": 10, **fields},
            "metric": {"name": "m", "direction": "minimize"}}
    return parse_config(data).verify


def test_generous_first_then_sized_from_the_largest_overhead_never_below_the_default() -> None:
    v = verify()
    assert v.timeout == LOAD_FACTOR * (2 * 10 + 60)  # nothing measured yet: generous
    v.note_overhead(3.0)  # a quick run: the default already covers it
    assert v.timeout == 80
    v.note_overhead(30.0)
    assert v.timeout == 10 + LOAD_FACTOR * 30 + MARGIN_S
    v.note_overhead(5.0)  # a faster run later does not shrink it
    assert v.timeout == 10 + LOAD_FACTOR * 30 + MARGIN_S
    v.note_overhead(30.1)  # in whole seconds
    assert v.timeout == 161  # 10 + 4 × 30.1 + 30 = 160.4, rounded up
    # Runtime state, never part of the contract that the ledger records.
    assert "_overhead_s" not in str(v.model_dump())


def test_an_explicit_timeout_always_wins() -> None:
    v = verify(timeout_seconds=25)
    v.note_overhead(100.0)
    assert v.timeout == 25


def slow_repo(tmp_path: Path, config: str, target: str) -> Path:
    """score.py sleeps SLEEP seconds: startup and evaluation that take longer than the budget."""
    return make_repo(tmp_path / "repo", {"target.py": target, "score.py": SCORE_PY,
                                         "autoresearch.toml": config})


ONE_SECOND = (CONFIG.replace("budget_seconds = 5\ntimeout_seconds = 8\n", "budget_seconds = 1\n")
              .replace("repeats = 2", "repeats = 1")) + '\n[knobs]\n"target.py:X" = "float(0, 10)"\n'


def flat(text: str) -> str:
    return " ".join(text.split())


def test_check_measures_startup_and_evaluation_and_says_what_the_timeout_will_be(
        tmp_path: Path) -> None:
    repo = slow_repo(tmp_path, ONE_SECOND, "X = 3.0\nSLEEP = 4\n")
    result = run_cli(repo, "check", env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stdout + result.stderr
    out = flat(result.stdout)
    assert "= the 1 s budget +" in out and "s of startup and evaluation" in out, out
    assert "timeout 62 s: the unchanged code needed" in out
    assert "set [verify] timeout_seconds to choose it yourself" in out


def test_check_warns_when_an_explicit_timeout_leaves_too_little_room(tmp_path: Path) -> None:
    config = ONE_SECOND.replace("budget_seconds = 1\n", "budget_seconds = 1\ntimeout_seconds = 8\n")
    repo = slow_repo(tmp_path, config, "X = 3.0\nSLEEP = 4\n")
    result = run_cli(repo, "check", env={"COLUMNS": "300"})
    out = flat(result.stdout)
    assert "timeout 8 s, set by [verify] timeout_seconds" in out, out
    assert "timeout_seconds = 8 leaves 7 s beyond the budget where this run needed" in out
    assert "raise it to" in out


def events(repo: Path, kind: str) -> list[str]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return [m for (m,) in conn.execute("SELECT message FROM events WHERE kind = ? ORDER BY id",
                                           (kind,))]


@pytest.mark.slow
def test_a_run_slower_than_the_default_timeout_is_not_killed_when_the_baseline_needed_it(
        tmp_path: Path) -> None:
    # The baseline needs ~12 s beyond its 1 s budget, so the timeout becomes about
    # 1 + 4 × 12 + 30 = 79 s. A candidate that takes 66 s (a busy machine) would be killed by
    # the 62 s default; sized from the baseline it is measured.
    # No confirmation runs: the candidate's one 66 s run is the point.
    # The classic rule without confirmations and no headline pairs: one run per experiment, so
    # the test measures the timeout, not the verdict (the sequential policy would run it again).
    config = ONE_SECOND.replace(
        "repeats = 1", 'repeats = 1\nconfirm_runs = 0\npolicy = "classic"\nheadline_pairs = 0')
    repo = slow_repo(tmp_path, config, "X = 3.0\nSLEEP = 13\n")
    use_script(repo, [{"hypothesis": "closer, on a busy machine",
                       "edits": {"target.py": "X = 6.0\nSLEEP = 66\n"}}])
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "2", timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        statuses = [s for (s,) in conn.execute("SELECT status FROM experiments ORDER BY seq")]
    assert statuses == ["keep", "keep"], result.stdout
    sized = events(repo, "timeout")
    assert len(sized) == 1, sized
    assert "the unchanged code needed 1" in sized[0] and "beyond its 1 s budget" in sized[0]
    assert f"budget + {LOAD_FACTOR:g} ×" in sized[0]
    # A resumed session sizes it again from the recorded runs, and says so.
    more = run_cli(repo, "run", "--tag", "t", "--iterations", "2")
    assert more.returncode == 0, more.stdout + more.stderr
    assert len(events(repo, "timeout")) == 2


def test_an_explicit_timeout_is_not_resized(tmp_path: Path) -> None:
    config = ONE_SECOND.replace("budget_seconds = 1\n", "budget_seconds = 1\ntimeout_seconds = 9\n")
    repo = slow_repo(tmp_path, config, "X = 3.0\nSLEEP = 2\n")
    use_script(repo, [{"hypothesis": "too slow", "edits": {"target.py": "X = 6.0\nSLEEP = 12\n"}}])
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        rows = conn.execute("SELECT status, decision_reason FROM experiments ORDER BY seq").fetchall()
    assert rows[1] == ("timeout", "killed after the 9 s timeout"), rows
    assert events(repo, "timeout") == []
