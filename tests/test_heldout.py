"""Held-out metrics (`[metric] heldout`): never shown to the proposer, compared after each keep.
A change that improves the objective while a held-out metric gets worse is kept with a warning
recorded; a change whose runs stop printing a held-out metric the incumbent prints is a crash,
or dropping the line would pass the comparison unseen."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

from tests.conftest import CONFIG, git, make_repo, run_cli, use_script

SCORE = textwrap.dedent(
    """
    import target
    print(f"score: {(target.X - 7) ** 2}")
    if not getattr(target, "HIDE", False):
        print(f"held: {(target.X - 7) ** 2 + getattr(target, 'LEAK', 0)}")
    """
)


def experiments(repo: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute("SELECT hypothesis, status, decision_reason FROM experiments "
                            "WHERE kind = 'candidate' ORDER BY seq").fetchall()


def test_a_change_that_stops_printing_a_heldout_metric_is_a_crash(tmp_path: Path) -> None:
    config = CONFIG.replace('record = ["mem_mb"]', 'heldout = ["held"]')
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE,
                                         "autoresearch.toml": config})
    use_script(repo, [
        {"hypothesis": "better, held-out worse", "edits": {"target.py": "X = 4.0\nLEAK = 50\n"}},
        {"hypothesis": "better, held-out hidden", "edits": {"target.py": "X = 6.0\nHIDE = True\n"}},
        {"hypothesis": "better, honest", "edits": {"target.py": "X = 6.5\n"}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "-n", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    (worse, hidden, honest) = experiments(repo)
    assert worse[1] == "keep"  # the objective decides; the held-out metric warns
    assert hidden[1] == "crash" and "did not print the held-out metric held" in hidden[2]
    assert honest[1] == "keep"
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        (warned,) = conn.execute("SELECT message FROM events WHERE kind = 'heldout_divergence'"
                                 ).fetchone()
    assert "held-out held got worse (16 → 59)" in warned


def test_a_change_whose_runs_stop_varying_in_a_noisy_session_is_not_kept(tmp_path: Path) -> None:
    # The session's runs are noisy; a change that fixes the seed inside the code makes its own
    # runs exact, so its spread says nothing and its one lucky draw would stand for its mean.
    # (A printed constant or an early exit looks the same.) An honest change is kept.
    config = CONFIG.replace("deterministic = true", "deterministic = false").replace(
        "[verify]\n", '[verify]\nenv = { NOISE = "0.3" }\n')
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE,
                                         "autoresearch.toml": config})
    (repo / "score.py").write_text(SCORE.replace(
        'print(f"score: {(target.X - 7) ** 2}")',
        'import os, random\nprint(f"score: {(target.X - 7) ** 2 + random.gauss(0, float('
        'os.environ[\'NOISE\']))}")'))
    git(repo, "commit", "-qam", "a noisy score")
    use_script(repo, [
        {"hypothesis": "better, seed fixed", "edits": {
            "target.py": "import random\nrandom.seed(0)\nX = 5.0\n"}},
        {"hypothesis": "better, honest", "edits": {"target.py": "X = 5.0\n"}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "-n", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    (frozen, honest) = experiments(repo)
    assert frozen[1] == "discard" and "does not depend on the run" in frozen[2], frozen
    assert honest[1] == "keep", honest
