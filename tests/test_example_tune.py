"""The offline proposer improves the shipped noisy example through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import git, run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "noisy-bowl"


@pytest.mark.slow
def test_tune_improves_the_noisy_example(tmp_path: Path) -> None:
    repo = tmp_path / "bowl"
    shutil.copytree(EXAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(run_cli(repo, "results", "--json").stdout)
    exps = data["experiments"]
    assert len(exps) == 30
    baseline = exps[0]["objective"]
    kept = [e for e in exps if e["status"] == "keep"]
    best = kept[-1]["objective"]
    # The baseline sits ~1.8 above the optimum; noise is 0.01.
    assert best < baseline - 0.8, (baseline, best)
    # Never the same configuration twice.
    configs = [json.dumps(e["params"], sort_keys=True) for e in exps if e["params"]]
    assert len(configs) == len(set(configs))
    # The branch ends at the best kept commit, whose params.py holds the kept values.
    tip = git(repo, "rev-parse", "autoresearch/t")
    assert tip == kept[-1]["commit"]
    assert "LEARNING_RATE" in git(repo, "show", f"{tip}:params.py")
