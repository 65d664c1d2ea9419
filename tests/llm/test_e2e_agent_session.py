"""End to end: `autoresearch run` with the agent proposer and a fake `claude` CLI on PATH."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import CONFIG, SCORE_PY, git, make_repo, run_cli
from tests.llm.conftest import use_fake_agent


@pytest.mark.slow
def test_agent_session_keeps_good_changes_and_rejects_forbidden_ones(toy_repo: Path,
                                                                     tmp_path: Path) -> None:
    env = use_fake_agent(toy_repo, tmp_path,
                         "improve\nprotected\noutside\ncommit\ncommitprotected\n")
    result = run_cli(toy_repo, "run", "--tag", "a", "--iterations", "6", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr

    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        exps = conn.execute("SELECT status, decision_reason, hypothesis, cost_usd FROM experiments"
                            " ORDER BY seq").fetchall()
        usage = conn.execute("SELECT provider, purpose, cost_usd FROM usage").fetchall()
    assert [e[0] for e in exps] == ["keep", "keep", "rejected", "rejected", "discard",
                                    "rejected"], exps
    assert exps[1][2] == "set X to the optimum 7" and exps[1][3] == pytest.approx(0.0123)
    assert "score.py" in exps[2][1] and "protected" in exps[2][1]
    assert "notes.md" in exps[3][1] and "outside the scope" in exps[3][1]
    # The agent committed on its detached HEAD: its change (X = 6.9) was measured, with its
    # commit message as the hypothesis, and discarded (worse than 7.0).
    assert exps[4][2] == "Set X to 6.9, just below the optimum"
    # The same tamper committed by the agent on its HEAD is folded back and refused all the same.
    assert "score.py" in exps[5][1] and "protected" in exps[5][1]
    assert {u[0] for u in usage} == {"agent:claude"} and len(usage) == 5
    # The protected file and the user's checkout are untouched; the branch holds the keep.
    assert "tampered" not in (toy_repo / "score.py").read_text()
    assert git(toy_repo, "show", "autoresearch/a:target.py") == "X = 7.0"
    assert "tampered" not in git(toy_repo, "log", "--all", "-p")


@pytest.mark.slow
def test_honest_cli_behaviours_in_a_session(toy_repo: Path, tmp_path: Path) -> None:
    """Claude Code as it really behaves: commits its change, answers without changing anything,
    runs out of turns (exit 0, `error_max_turns`), floods stream-json, then loses its login."""
    env = use_fake_agent(toy_repo, tmp_path, "commit\nanswer\nmaxturns\nflood\njsonauth\n")
    env["FAKE_AGENT_FLOOD_MB"] = "12"
    result = run_cli(toy_repo, "run", "--tag", "h", "--iterations", "10", env=env, timeout=240)
    # A refused login stops the session at once, saying how to fix it: not 10 rejections.
    assert result.returncode == 5, result.stdout + result.stderr
    out = " ".join((result.stdout + result.stderr).split())
    assert "cannot authenticate" in out and "/login" in out
    assert len((tmp_path / "calls.jsonl").read_text().splitlines()) == 5

    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        exps = conn.execute("SELECT id, status, decision_reason, hypothesis, cost_usd FROM "
                            "experiments ORDER BY seq").fetchall()
    by_seq = exps[1:]
    # The agent's own commit: its change measured and kept, named by its commit message, and
    # committed once, by the harness, on the session branch.
    assert by_seq[0][1:2] == ("keep",) and by_seq[0][3] == "Set X to 6.9, just below the optimum"
    assert git(toy_repo, "show", "autoresearch/h~1:target.py") == "X = 6.9"
    # Two keeps, two commits: the agent's own commit never reached the branch.
    assert git(toy_repo, "rev-list", "--count", "HEAD..autoresearch/h") == "2"
    # Only an answer: recorded with what it said.
    assert "made no change; it said: X = 3.0 looks deliberate" in by_seq[1][2]
    # Out of turns, exit 0: a clear reason, its partial change not measured.
    assert "reported an error: error_max_turns; its unfinished change was discarded" in by_seq[2][2]
    assert by_seq[2][4] == pytest.approx(0.004)
    # 12 MB of stream-json: read to its result object, and the whole log kept.
    assert by_seq[3][1] == "keep" and by_seq[3][3] == "set X to the optimum 7"
    log = (toy_repo / ".autoresearch" / "sessions" / "h" / "logs" / by_seq[3][0]
           / "agent-propose-1.log")
    assert log.stat().st_size > 12 * 1024 * 1024
    assert git(toy_repo, "show", "autoresearch/h:target.py") == "X = 7.0"


SECRET = "TOKEN=do-not-leak-123"


@pytest.mark.slow
def test_a_repair_linking_a_protected_secret_never_commits_it_nor_shows_it_again(
        tmp_path: Path) -> None:
    """The crashed candidate's repair links lib/notes.py (in scope) to the protected secrets.txt:
    read through the link, the secret would be committed as lib/notes.py and shown in the next
    prompt's diff. The repair is refused as a link, as a proposal with the same link is."""
    config = CONFIG.replace('scope = ["target.py"]', 'scope = ["target.py", "lib/*.py"]').replace(
        'protected = ["score.py"]', 'protected = ["score.py", "secrets.txt"]')
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "secrets.txt": SECRET + "\n",
                                         "autoresearch.toml": config})
    env = use_fake_agent(repo, tmp_path, "crash\nlinkrepair\nimprove\nimprove\nimprove\n")
    result = run_cli(repo, "run", "--tag", "s", "--iterations", "3", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert len(calls) >= 3  # the crash, the refused repair, and the proposals after it
    assert not [c for c in calls if SECRET in c["prompt"]]
    assert SECRET not in git(repo, "log", "--all", "-p", "--", "lib", "target.py")
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        repairs = [r[0] for r in conn.execute("SELECT message FROM events WHERE kind = 'repair'")]
    assert repairs == ["repair attempt failed: the repair cannot be taken: lib/notes.py is a "
                       "symbolic link (a repair may only write files)"]


@pytest.mark.slow
def test_an_impossible_reported_cost_neither_crashes_the_session_nor_pays_for_later_runs(
        toy_repo: Path, tmp_path: Path) -> None:
    """JSON admits NaN and negatives: a NaN cost could not be stored in the ledger, and a cost of
    -50 USD would pay for every later call, so max_usd would never stop the session. Both are
    ignored: the calls are priced from their tokens (Claude's model has a price) instead."""
    env = use_fake_agent(toy_repo, tmp_path, "nancost\nnegcost\n" + "paid\n" * 8)
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text() + "\n[limits]\nmax_usd = 0.05\n")
    git(toy_repo, "commit", "-qam", "a spending limit")
    result = run_cli(toy_repo, "run", "--tag", "c", "--iterations", "10", env=env, timeout=240)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, output
    assert "the claude agent reported the cost nan: not a cost in USD" in output
    assert "the claude agent reported the cost -50.0: not a cost in USD" in output
    assert "stopped: the spending limit is reached" in output, output
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        costs = [r[0] for r in conn.execute("SELECT cost_usd FROM usage ORDER BY id")]
        statuses = [r[0] for r in conn.execute("SELECT status FROM experiments ORDER BY seq")]
    assert len(costs) < 8, costs  # stopped by the limit, not by running out of iterations
    assert all(0 < cost < 0.05 for cost in costs), costs
    assert costs[0] == costs[1] != 0.0123  # priced from the tokens, the same for both calls
    assert statuses[:3] == ["keep", "keep", "keep"], statuses
