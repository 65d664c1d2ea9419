"""One story in every view: the terminal, the dashboard, the report and `results --json` agree on
every count, sign and baseline — here over a real session whose first baseline attempt failed
and whose resumed one passed (the failed attempt's good run must not count as the baseline's)."""

from __future__ import annotations

import json
import statistics
import textwrap
import urllib.request
from pathlib import Path

import pytest

from autoresearch.views.format import fmt_counts, fmt_experiments, fmt_rate, fmt_value
from tests.views.conftest import autoresearch, serve
from tests.views.ledger_factory import init_repo

# Run 1 (the first baseline attempt's second run) crashes; every other run prints X + noise.
SCORE = textwrap.dedent(
    """
    import os, pathlib, sys
    import target
    OFFSETS = [0.30, 0.0, 0.05, -0.04, 0.02, 0.01, -0.03, 0.04, 0.0, -0.02, 0.03, -0.01]
    counter = pathlib.Path(os.environ["COUNTER"])
    i = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(i + 1))
    if i == 1:
        sys.exit("the machine hiccuped")
    print(f"score: {target.X + OFFSETS[i % len(OFFSETS)]:.6f}")
    """
)
CONFIG = textwrap.dedent(
    """
    scope = ["target.py"]
    protected = ["score.py"]

    [verify]
    command = "{python} score.py"
    budget_seconds = 5
    env = { COUNTER = "../../counter" }

    [metric]
    name = "score"
    direction = "minimize"

    [proposer]
    name = "tests.support.scripted_proposer:ScriptedProposer"
    script = "script.json"
    """
)
SCRIPT = [
    {"hypothesis": "lower X to 12, a long description that no terminal column should ever cut "
                   "short: the reader wants the whole of it", "edits": {"target.py": "X = 12.0\n"}},
    {"hypothesis": "raise X to 14", "edits": {"target.py": "X = 14.0\n"}},
    {"hypothesis": "lower X to 11", "edits": {"target.py": "X = 11.0\n"}},
    {"hypothesis": "raise X to 11.5", "edits": {"target.py": "X = 11.5\n"}},
]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    repo = tmp_path_factory.mktemp("story") / "repo"
    init_repo(repo, {"target.py": "X = 13.0\n", "score.py": SCORE, "autoresearch.toml": CONFIG,
                     "program.md": "Make score small.\n",
                     ".gitignore": ".autoresearch/\nscript.json\n"})
    (repo / "script.json").write_text(json.dumps(SCRIPT))
    first = autoresearch(repo, "run", "--iterations", "6", "--tag", "s")
    assert first.returncode == 5, first.stdout + first.stderr  # the baseline crashed
    second = autoresearch(repo, "run", "--iterations", "6", "--tag", "s")
    assert second.returncode == 0, second.stdout + second.stderr
    return repo, second.stdout


def flat(text: str) -> str:
    return " ".join(text.split())


def test_every_view_tells_the_same_story(resumed: tuple[Path, str]) -> None:
    repo, run_output = resumed
    data = json.loads(autoresearch(repo, "results", "--json", "--tag", "s").stdout)
    exps = data["experiments"]
    # The failed attempt, then the baseline that passed, then 4 candidates.
    assert [e["kind"] for e in exps[:2]] == ["baseline", "baseline"]
    assert exps[0]["status"] == "crash" and exps[1]["status"] == "keep"
    resumed_runs = [r["metrics"]["score"] for r in exps[1]["runs"] if r["status"] == "ok"]
    assert len(resumed_runs) == 3
    baseline = statistics.fmean(resumed_runs)
    # The engine measured every delta against the same baseline the views show: the failed
    # attempt's good run (13.30) is not part of it.
    first_candidate = exps[2]
    assert first_candidate["incumbent_objective"] == pytest.approx(baseline)
    summary = data["summary"]
    assert summary["baseline"] == pytest.approx(baseline)
    assert summary["baseline_runs"] == 3
    assert summary["improvement"] > 0 and summary["best_delta"] < 0  # minimize: lower is better
    counts = summary["counts"]
    assert counts["baseline"] == 1 and counts["baseline_failed"] == 1
    assert counts["candidates"] == 4 and counts["total"] == 6
    experiments_line = f"{fmt_experiments(counts)}: {', '.join(fmt_counts(counts))}"
    assert "6 experiments (the baseline + 4 candidates + 1 failed baseline attempt)" in \
        experiments_line
    # A rate needs at least a second of activity; a quick machine may finish sooner, and then
    # every view leaves the rate out rather than print a meaningless one.
    per_hour = summary["experiments_per_hour"]
    rate_part = f" · {fmt_rate(per_hour)}" if per_hour else ""

    # The dashboard's read model is the same numbers.
    with serve(repo, "s") as url, urllib.request.urlopen(url + "/api/session?tag=s") as resp:
        page = json.loads(resp.read())
    for key in ("baseline", "best", "improvement", "improvement_pct", "best_delta",
                "baseline_runs", "counts", "experiments_per_hour", "best_id"):
        assert page["summary"][key] == summary[key], key
    assert page["confidence"]["label"] == data["confidence"]["label"]
    by_id = {e["id"]: e for e in page["experiments"]}
    for e in exps:
        shown = by_id[e["id"]]
        assert shown["improvement"] == e["improvement"]
        assert (shown["improvement"] is None) or (shown["improvement"] == -e["delta"])

    # The terminal: status and the end of `run`.
    status = flat(autoresearch(repo, "status", "--tag", "s").stdout)
    assert experiments_line + rate_part in status
    assert f"baseline score = {fmt_value(baseline)} (3 runs)" in status
    assert f"score = {fmt_value(summary['best'])} at {summary['best_id']}" in status
    assert "better than the baseline (Δ score -" in status
    assert experiments_line in flat(run_output)
    assert f"baseline score = {fmt_value(baseline)} (3 runs)" in flat(run_output)
    # Descriptions are whole, in `results` as in `status`.
    table = autoresearch(repo, "results", "--tag", "s").stdout
    assert SCRIPT[0]["hypothesis"] in flat(table)
    shown_one = flat(autoresearch(repo, "show", exps[2]["id"]).stdout)
    assert SCRIPT[0]["hypothesis"] in shown_one and "improvement" in shown_one

    # The report.
    out = repo.parent / "report"
    assert autoresearch(repo, "report", "--tag", "s", "--out", str(out)).returncode == 0
    md = (out / "report.md").read_text()
    assert f"(baseline {fmt_value(baseline)} over 3 runs)" in md
    assert "better than the baseline (Δ score -" in md
    assert experiments_line.split(":")[0] in flat(md)
    assert ", ".join(fmt_counts(counts)) in flat(md)
    assert f"| {exps[0]['id']} | crash |" in md and f"| {exps[1]['id']} | baseline |" in md
