"""End to end: `autoresearch run` with the agent proposer and a fake `claude` CLI on PATH."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import git, run_cli
from tests.llm.conftest import use_fake_agent


@pytest.mark.slow
def test_agent_session_keeps_good_changes_and_rejects_forbidden_ones(toy_repo: Path,
                                                                     tmp_path: Path) -> None:
    env = use_fake_agent(toy_repo, tmp_path, "improve\nprotected\noutside\ncommit\n")
    result = run_cli(toy_repo, "run", "--tag", "a", "--iterations", "5", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr

    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        exps = conn.execute("SELECT status, decision_reason, hypothesis, cost_usd FROM experiments"
                            " ORDER BY seq").fetchall()
        usage = conn.execute("SELECT provider, purpose, cost_usd FROM usage").fetchall()
    assert [e[0] for e in exps] == ["keep", "keep", "rejected", "rejected", "rejected"], exps
    assert exps[1][2] == "set X to the optimum 7" and exps[1][3] == pytest.approx(0.0123)
    assert "score.py" in exps[2][1] and "protected" in exps[2][1]
    assert "notes.md" in exps[3][1] and "outside the scope" in exps[3][1]
    # The agent committed: the proposal is refused (only the harness commits) and undone.
    assert "the agent ran git: it may not commit or switch branches" in exps[4][1]
    assert {u[0] for u in usage} == {"agent:claude"} and len(usage) == 4
    # The protected file and the user's checkout are untouched; the branch holds the keep.
    assert "tampered" not in (toy_repo / "score.py").read_text()
    assert git(toy_repo, "show", "autoresearch/a:target.py") == "X = 7.0"
    assert "tampered" not in git(toy_repo, "log", "--all", "-p")
