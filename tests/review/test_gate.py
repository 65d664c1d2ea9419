"""The research loop's review gate, the [review] config, and reviews in the ledger."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from autoresearch.config import ReviewConfig, parse_config
from autoresearch.errors import ConfigError
from autoresearch.ledger import Ledger
from autoresearch.ledger.schema import MIGRATIONS
from autoresearch.review.gate import check_gate, record_gate, review_candidate
from autoresearch.review.settings import load_review_config
from tests.review.conftest import Repo

TRAIN = "import subprocess\n\nLR = 0.1\n\n\ndef log(msg):\n    print(msg)\n"


def candidate(repo: Repo, text: str) -> tuple[str, str]:
    parent = repo.commit("init", **{"train.py": TRAIN})
    return parent, repo.commit("candidate", **{"train.py": text})


def test_a_red_finding_blocks_the_keep_with_the_finding_as_reason(repo: Repo) -> None:
    parent, cand = candidate(repo, TRAIN.replace(
        "    print(msg)\n", "    subprocess.run(f'logger {msg}', shell=True)\n"))
    result = review_candidate(repo.path, parent, cand, ReviewConfig(gate="red"), env={})
    assert result.blocked
    assert result.reason.startswith("review gate (red): red train.py:7 ")
    assert "bandit B602" in result.reason
    assert [f.colour for f in result.blockers] == ["red"]
    assert result.cost_usd == 0 and result.usage == ()
    assert result.review.subject.key == f"commit:{cand}"


def test_a_clean_candidate_passes_and_yellow_blocks_only_with_gate_yellow(repo: Repo) -> None:
    parent, cand = candidate(repo, TRAIN.replace("LR = 0.1", "LR = 0.05"))
    clean = review_candidate(repo.path, parent, cand, ReviewConfig(gate="red"), env={})
    assert not clean.blocked and clean.reason.startswith("review: 0 red")
    tmp = repo.commit("temp file", **{"train.py": TRAIN.replace(
        "    print(msg)\n", "    with open('/tmp/log.txt', 'a') as fh:\n        fh.write(msg)\n")})
    red_gate = review_candidate(repo.path, cand, tmp, ReviewConfig(gate="red"), env={})
    yellow_gate = review_candidate(repo.path, cand, tmp, ReviewConfig(gate="yellow"), env={})
    assert not red_gate.blocked and yellow_gate.blocked
    assert "yellow train.py:7" in yellow_gate.reason


def test_the_gate_stays_offline_unless_llm_is_set(repo: Repo) -> None:
    parent, cand = candidate(repo, TRAIN.replace("LR = 0.1", "LR = 0.2"))
    result = review_candidate(repo.path, parent, cand, ReviewConfig(gate="red"),
                              env={"ANTHROPIC_API_KEY": "sk-not-used"})
    assert "offline reviewers only" in result.review.notes[0]
    statuses = {r.name: r.status for r in result.review.reviewers}
    assert statuses["logic"] == "skipped"


def test_record_gate_attaches_the_review_to_the_experiment(repo: Repo) -> None:
    parent, cand = candidate(repo, TRAIN.replace(
        "    print(msg)\n", "    subprocess.run(f'logger {msg}', shell=True)\n"))
    result = review_candidate(repo.path, parent, cand, ReviewConfig(gate="red"), env={})
    ledger = Ledger(repo.path / ".autoresearch" / "ledger.db")
    session = ledger.create_session(tag="t", branch="autoresearch/t", base_commit=parent,
                                    worktree="wt", metric="loss", direction="minimize",
                                    config={}, proposer="tune")
    exp = ledger.create_experiment(session, hypothesis="shell out to logger")
    review_id = record_gate(ledger, result, session_id=session.id, experiment_id=exp.id)
    (row,) = ledger.reviews(experiment_id=exp.id)
    assert row.id == review_id and row.blocked and row.red == 1 and row.session_id == session.id
    assert row.findings[0].colour == "red" and row.findings[0].path == "train.py"
    assert row.reviewers and row.head_commit == cand
    assert ledger.reported_fingerprints(f"commit:{cand}") == {
        f.fingerprint for f in result.findings}
    ledger.close()


def test_migration_2_upgrades_a_version_1_ledger_without_losing_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path)
    conn.executescript("BEGIN;" + MIGRATIONS[0] + "; PRAGMA user_version = 1; COMMIT;")
    conn.execute("INSERT INTO sessions (tag, branch, base_commit, worktree, metric, direction,"
                 " config_json, created_at, updated_at) VALUES ('old', 'b', 'c', 'w', 'm',"
                 " 'minimize', '{}', 1, 1)")
    conn.commit()
    conn.close()
    ledger = Ledger(path)
    assert ledger.session("old") is not None
    assert ledger.reviews() == []
    ledger.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_review_config_in_autoresearch_toml(tmp_path: Path) -> None:
    base = {"scope": ["a.py"], "verify": {"command": "true", "budget_seconds": 1},
            "metric": {"name": "m", "direction": "minimize"}}
    config = parse_config({**base, "review": {"gate": "red", "llm": {"model": "m1"},
                                              "max_usd": 0.5}})
    assert config.review.gate == "red" and config.review.max_usd == 0.5
    assert parse_config(base).review.gate == "off"
    with pytest.raises(ConfigError) as info:
        parse_config({**base, "review": {"gate": "blue"}})
    assert "review.gate" in info.value.what
    with pytest.raises(ConfigError) as info:
        parse_config({**base, "review": {"llm": {"modle": "x"}}})
    assert "did you mean 'model'" in info.value.what
    with pytest.raises(ConfigError):
        parse_config({**base, "review": {"inline_capp": 3}})
    (tmp_path / "autoresearch.toml").write_text('[review]\nmax_usd = "lots"\n')
    with pytest.raises(ConfigError) as info:
        load_review_config(tmp_path)
    assert "max_usd" in info.value.what and info.value.exit_code == 2
    (tmp_path / "autoresearch.toml").write_text('[review]\nreviewers = ["ruff"]\n')
    review, _ = load_review_config(tmp_path)  # the rest of the file may be absent
    assert review.reviewers == ["ruff"]


def test_check_gate_refuses_a_bad_review_config_before_a_session_starts() -> None:
    assert check_gate(ReviewConfig()) == "review gate off"
    assert check_gate(ReviewConfig(gate="red"), env={}) == (
        "review gate red: ruff, bandit, mypy, history")
    with pytest.raises(ConfigError) as info:
        check_gate(ReviewConfig(gate="red", reviewers=["ruff", "bandid"]), env={})
    assert "did you mean 'bandit'" in (info.value.fix or "")
    with pytest.raises(ConfigError) as info:
        check_gate(ReviewConfig(gate="red", llm=True), env={})
    assert "ANTHROPIC_API_KEY" in info.value.what + (info.value.fix or "")
    with_model = check_gate(ReviewConfig(gate="red", llm={"provider": "ollama",
                                                          "model": "qwen3:8b"}), env={})
    assert "logic, security, regression, rules" in with_model and "qwen3:8b" in with_model


def test_a_sessions_own_experiments_are_not_fix_commits(repo: Repo) -> None:
    """Experiment messages are hypotheses: "Fix the warmup" from a proposer is not a bug fix,
    so a later candidate that puts a line back is not a regression to block."""
    head = "from schedule import compute_warmup\n\n"
    warm = head + "WARMUP_STEPS = compute_warmup(100)\nLR = 0.1\n"
    cold = head + "LR = 0.1\n"
    repo.commit("init", **{"train.py": warm})
    parent = repo.commit("Fix the warmup: none at all\n\nExperiment-Id: t-0002",
                         **{"train.py": cold})
    cand = repo.commit("Bring warmup back\n\nExperiment-Id: t-0003", **{"train.py": warm})
    result = review_candidate(repo.path, parent, cand, ReviewConfig(gate="red"), env={})
    assert not result.blocked, result.reason
    assert not [f for f in result.findings if f.category == "regression"]
    human = repo.commit("Fix the warmup: none at all", **{"train.py": cold})
    again = repo.commit("Bring warmup back", **{"train.py": warm})
    flagged = review_candidate(repo.path, human, again, ReviewConfig(gate="red"), env={})
    assert flagged.blocked and "history reintroduced-line" in flagged.reason
