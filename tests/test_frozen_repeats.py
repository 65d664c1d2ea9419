"""A candidate whose repeats stop varying in a noisy session: its output no longer depends on
the run (a seed fixed in the code, a value printed rather than measured, an early exit), so it
is discarded rather than kept on its one draw; a metric printed on a coarse grid, whose runs
tie by chance, is judged as usual."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from autoresearch.policy import Evidence, Observation
from autoresearch.sequential import SequentialPolicy
from tests.conftest import CONFIG, make_repo, run_cli, use_script
from tests.test_heldout import experiments

SCORE = textwrap.dedent(
    """
    import os, random
    import target
    print(f"score: {(target.X - 7) ** 2 + random.gauss(0, float(os.environ['NOISE']))}")
    """
)


def test_a_change_whose_runs_stop_varying_in_a_noisy_session_is_not_kept(tmp_path: Path) -> None:
    # The session's runs are noisy; a change that fixes the seed inside the code makes its own
    # runs exact, so its spread says nothing and its one lucky draw would stand for its mean.
    # (A printed constant or an early exit looks the same.) An honest change is kept.
    config = CONFIG.replace("deterministic = true", "deterministic = false").replace(
        "[verify]\n", '[verify]\nenv = { NOISE = "0.3" }\n')
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE,
                                         "autoresearch.toml": config})
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


def observations(values: list[float], start: float) -> list[Observation]:
    return [Observation(v, start + i, control=True) for i, v in enumerate(values)]


@pytest.mark.parametrize(("incumbent", "candidate", "frozen"), [
    # Printed to six decimals with σ ≈ 0.02: two runs tie about once in 70,000.
    ([2.443962, 2.467311, 2.421774, 2.455019], [2.101113, 2.101113], True),
    # Accuracy on 100 examples (a 0.01 grid) with σ ≈ 0.02: ties are common, not a sign.
    ([0.91, 0.93, 0.90, 0.94], [0.97, 0.97], False),
    # Three tied runs on that grid: still within chance (about 1 in 50 squared: no).
    ([0.91, 0.93, 0.90, 0.94], [0.97, 0.97, 0.97], False),
    # Accuracy on 97 examples printed with Python's repr: the grid is 1/97, not 1e-16.
    ([68 / 97, 71 / 97, 65 / 97, 73 / 97], [90 / 97, 90 / 97], False),
    # A printed round constant does not choose its own grid: 0.9 among six-decimal values.
    ([0.853214, 0.861177, 0.842306, 0.849951], [0.9, 0.9], True),
    # A varying candidate is never frozen.
    ([2.443962, 2.467311, 2.421774, 2.455019], [2.101113, 2.104471], False),
])
def test_only_ties_chance_cannot_explain_count_as_frozen(incumbent: list[float],
                                                          candidate: list[float],
                                                          frozen: bool) -> None:
    evidence = Evidence(candidate=observations(candidate, 100.0),
                        incumbent=observations(incumbent, 0.0),
                        other_groups=[observations([v + 0.3 for v in incumbent], 50.0)])
    policy = SequentialPolicy(direction="maximize" if incumbent[0] < 1 else "minimize")
    assert policy._frozen_amid_noise(evidence) is frozen
