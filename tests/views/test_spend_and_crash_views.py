"""The views of a session's spend and of a crashed baseline, end to end through the CLI:
`show` gives an experiment's cost and tokens and takes a bare number, JSON money is rounded, a
crashed experiment's metric is empty in results.tsv, and the report never says a baseline that
crashed "ran once"."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import git, run_cli, use_script


def _add_usage(repo: Path, exp_id: str, costs: list[float]) -> None:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        session_id = conn.execute("SELECT session_id FROM experiments WHERE id = ?",
                                  (exp_id,)).fetchone()[0]
        for cost in costs:
            conn.execute("INSERT INTO usage (experiment_id, session_id, provider, model, purpose,"
                         " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
                         " cost_usd, at) VALUES (?, ?, 'anthropic', 'm', 'propose', 1000, 200, 0,"
                         " 0, ?, 0)", (exp_id, session_id, cost))
            conn.execute("UPDATE experiments SET cost_usd = cost_usd + ? WHERE id = ?",
                         (cost, exp_id))


@pytest.mark.slow
def test_show_gives_the_spend_and_takes_a_bare_number(toy_repo: Path) -> None:
    use_script(toy_repo, [{"hypothesis": "closer", "edits": {"target.py": "X = 6.0\n"}}])
    for tag in ("a", "b"):
        result = run_cli(toy_repo, "run", "--tag", tag, "--iterations", "2")
        assert result.returncode == 0, result.stdout + result.stderr
    _add_usage(toy_repo, "a-0002", [1.2, 1.2, 1.2])
    _add_usage(toy_repo, "a-0001", [0.1, 0.2])  # 0.30000000000000004 in floats

    by_number = run_cli(toy_repo, "show", "2", "--tag", "a")
    by_id = run_cli(toy_repo, "show", "a-0002")
    assert by_number.returncode == 0 and by_number.stdout == by_id.stdout, by_number.stderr
    shown = " ".join(by_id.stdout.split())
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        calls, inp, out, cost = conn.execute(
            "SELECT count(*), sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM usage "
            "WHERE experiment_id = 'a-0002'").fetchone()
    assert calls == 4  # the scripted proposer's own call and the three above
    assert f"spend ${cost:.4f} over 4 model calls ({inp:,} in, {out:,} out" in shown
    latest = " ".join(run_cli(toy_repo, "show", "2").stdout.split())  # the latest session: b
    assert "b-0002 of session b" in latest
    baseline = " ".join(run_cli(toy_repo, "show", "1", "--tag", "b").stdout.split())
    assert "spend no model calls" in baseline
    missing = run_cli(toy_repo, "show", "9")
    assert missing.returncode == 1 and "no experiment 'b-0009'" in missing.stderr
    assert "Traceback" not in missing.stderr

    data = json.loads(run_cli(toy_repo, "results", "--json", "--tag", "a").stdout)
    costs = {e["id"]: e["cost_usd"] for e in data["experiments"]}
    assert costs["a-0002"] == round(cost, 6) and costs["a-0001"] == 0.3
    assert data["session"]["usage"]["cost_usd"] == round(cost + 0.3, 6)


@pytest.mark.slow
def test_a_crashed_baseline_is_neither_a_perfect_score_nor_said_to_have_run(
        toy_repo: Path) -> None:
    use_script(toy_repo, [{"hypothesis": "closer", "edits": {"target.py": "X = 6.0\n"}}])
    (toy_repo / "target.py").write_text("X = 3.0\nCRASH = True\n")
    git(toy_repo, "commit", "-qam", "a target that crashes")
    result = run_cli(toy_repo, "run", "--tag", "z", "--iterations", "2")
    assert result.returncode == 5, result.stdout + result.stderr
    lines = (toy_repo / ".autoresearch" / "sessions" / "z" / "results.tsv").read_text()
    header, row = (line.split("\t") for line in lines.splitlines()[:2])
    assert len(row) == len(header) and row[header.index("status")] == "crash"
    assert row[header.index("score")] == ""  # not 0.000000, a perfect score to minimise
    report = run_cli(toy_repo, "report", "--tag", "z")
    assert report.returncode == 0, report.stdout + report.stderr
    md = (toy_repo / ".autoresearch" / "sessions" / "z" / "report" / "report.md").read_text()
    assert "the baseline produced no measurement and nothing was re-run" in md
    assert "ran once" not in md
