"""results.tsv: no blank description (a failed proposal says why), and memory_gb filled from
whatever the run reports its peak memory as."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch.ledger import ExperimentRow, RunRow
from autoresearch.results_tsv import memory_advice, memory_gb, memory_metric, render
from tests.conftest import run_cli, use_script
from tests.llm.conftest import use_fake_agent


def tsv_rows(repo: Path, tag: str) -> list[dict[str, str]]:
    lines = (repo / ".autoresearch" / "sessions" / tag / "results.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


@pytest.mark.slow
def test_an_agents_failed_proposal_is_described_by_why_it_failed(toy_repo: Path,
                                                                 tmp_path: Path) -> None:
    env = use_fake_agent(toy_repo, tmp_path, "nothing\nimprove\n")
    result = run_cli(toy_repo, "run", "--tag", "a", "--iterations", "3", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = tsv_rows(toy_repo, "a")
    assert [r["status"] for r in rows] == ["keep", "rejected", "keep"]
    assert rows[1]["description"].startswith("proposal failed: the agent made no change; it said:")
    assert rows[2]["description"] == "set X to the optimum 7"
    assert all(r["description"] for r in rows)


def test_a_scripted_failed_proposal_and_memory_under_another_name(toy_repo: Path) -> None:
    # The toy target prints `mem_mb: 100` (recorded): memory_gb is 100 / 1024, not 0.0.
    use_script(toy_repo, [{"error": "the model answered 400"},
                          {"hypothesis": "closer", "edits": {"target.py": "X = 6.0\nMEM = 2048\n"}}])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = tsv_rows(toy_repo, "t")
    assert [(r["status"], r["description"], r["memory_gb"]) for r in rows] == [
        ("keep", "baseline", "0.1"),
        ("rejected", "proposal failed: the model answered 400", "0.0"),
        ("keep", "closer", "2.0"),
    ]


@pytest.mark.parametrize(("metrics", "configured", "gb"), [
    ({"peak_vram_mb": 2048.0}, None, 2.0),
    ({"max_rss_kb": 3 * 1024 * 1024.0}, None, 3.0),
    ({"peak_memory_bytes": 1.5 * 1024**3}, None, 1.5),
    ({"gpu_mem_gib": 4.0, "loss": 1.0}, None, 4.0),
    ({"memory_gb": 0.5}, None, 0.5),
    ({"rss": 512.0}, "rss", 0.5),  # configured, no unit in its name: MB
    ({"vram_total_mb": 1024.0}, "vram_total_mb", 1.0),
    ({"num_params_M": 3.0, "total_tokens_M": 1.0}, None, 0.0),  # not memory
    ({"peak_vram_mb": 2048.0}, "other_mb", 0.0),  # the configured name wins, even if missing
])
def test_memory_gb_from_the_names_runs_use(metrics: dict[str, float], configured: str | None,
                                           gb: float) -> None:
    run = RunRow(id=1, experiment_id="e", role="candidate", idx=0, attempt=1, commit_sha="c",
                 status="ok", exit_code=0, duration_s=1.0, log_path=None, fingerprint_key=None,
                 started_at=0.0, finished_at=1.0, metrics=metrics)
    assert memory_gb([run], configured) == pytest.approx(gb)


def test_the_peak_over_an_experiments_runs_is_reported() -> None:
    runs = [RunRow(id=i, experiment_id="e", role="candidate", idx=i, attempt=1, commit_sha="c",
                   status="ok", exit_code=0, duration_s=1.0, log_path=None, fingerprint_key=None,
                   started_at=0.0, finished_at=1.0, metrics={"peak_vram_mb": mb})
            for i, mb in enumerate((1024.0, 3072.0, 2048.0))]
    assert render("m", [(_experiment(1.0, None), runs)]).splitlines()[1].split("\t")[2] == "3.0"


def _experiment(objective: float, delta: float | None) -> ExperimentRow:
    return ExperimentRow(
        id="e", session_id=1, seq=1, kind="candidate", status="keep", hypothesis="h",
        rationale="", proposer="p", params=None, parent_commit=None, commit_sha="abcdef0123",
        tree_sha=None, files=[], lines_added=0, lines_removed=0, objective=objective,
        incumbent_objective=None, delta=delta, threshold=None, decision_reason="",
        guards=[], attempts=1, cost_usd=0.0, worker="inline", started_at=0.0, finished_at=1.0)


@pytest.mark.parametrize(("objective", "delta", "shown"), [
    (0.9979, 0.0021, ("0.997900", "+0.002100")),  # Karpathy's six decimals
    (9.97e-08, 2.53e-08, ("9.97e-08", "+2.53e-08")),  # not 0.000000 and +0.000000
    (1234.5, -0.0004, ("1234.500000", "-0.0004")),
    (0.0, 0.0, ("0.000000", "+0.000000")),
])
def test_a_metric_on_any_scale_is_written_with_its_digits(
        objective: float, delta: float, shown: tuple[str, str]) -> None:
    fields = render("m", [(_experiment(objective, delta), [])]).splitlines()[1].split("\t")
    assert (fields[1], fields[5]) == shown


def test_check_says_what_the_memory_column_needs() -> None:
    assert memory_advice({"peak_vram_mb": 1.0}, ["peak_vram_mb"], None) is None
    assert "add memory = 'rss_mb' under [metric]" in (memory_advice({"rss_mb": 1.0}, [], None)
                                                      or "")
    assert "reports no peak memory" in (memory_advice({"loss": 1.0}, ["loss"], None) or "")
    assert "does not print custom" in (memory_advice({"loss": 1.0}, [], "custom") or "")
    assert memory_metric({"mem_mb", "peak_vram_mb"}) == "peak_vram_mb"  # the GPU's peak first


def test_check_prints_the_advice(tmp_path: Path) -> None:
    from tests.conftest import CONFIG, SCORE_PY, make_repo

    config = CONFIG.replace('record = ["mem_mb"]', "record = []") + (
        '\n[knobs]\n"target.py:X" = "float(0, 10)"\n')
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": config})
    result = run_cli(repo, "check", env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("the run prints mem_mb, which is not recorded: add memory = 'mem_mb' under [metric]"
            in " ".join(result.stdout.split()))
