"""tune's local phase: moves that respect each knob's type, and the trust region's bookkeeping."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from autoresearch.proposers.knob_space import KnobSpace, parse_knob_spec
from autoresearch.proposers.trust_region import (
    GLOBAL_BURST,
    LENGTH_INIT,
    LENGTH_MAX,
    Neighbourhood,
    TrustRegion,
    TrustRegionSampler,
    moves_between,
    step,
    unit,
)
from autoresearch.proposers.tune_study import distribution


def steps(spec: str, value: object, radius: float, sign: int, n: int = 200) -> list[object]:
    space = parse_knob_spec(spec)
    rng = random.Random(0)
    return [step(space, value, radius, sign, rng) for _ in range(n)]  # type: ignore[arg-type]


def test_log_knobs_move_by_factors_within_the_region() -> None:
    # log(1e-4, 1): 4 decades; a radius of 0.1 is up to 0.4 decades (×2.5), at least half that.
    moved = steps("log(1e-4, 1)", 0.01, 0.1, +1)
    ratios = [math.log10(v / 0.01) for v in moved]  # type: ignore[operator]
    assert all(0.2 * 0.999 <= r <= 0.4 * 1.001 for r in ratios)
    down = steps("log(1e-4, 1)", 0.01, 0.1, -1)
    assert all(-0.4 * 1.001 <= math.log10(v / 0.01) <= -0.2 * 0.999 for v in down)  # type: ignore[operator]


def test_linear_knobs_move_by_a_fraction_of_the_range() -> None:
    moved = steps("float(0, 10)", 5.0, 0.2, -1)
    assert all(3.0 - 1e-9 <= v <= 4.0 + 1e-9 for v in moved)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("int(1, 4)", 2, {1, 3}),  # a radius far below one step still moves one step
        ("logint(1, 1024)", 1, {2}),  # at the low end: only up
        ("float(0, 1, 0.25)", 0.5, {0.25, 0.75}),  # stepped floats stay on their grid
        ("choice(1024, 2048, 4096, 8192)", 2048, {1024, 4096}),  # ordered: a neighbouring choice
        ('choice("adamw", "sgd", "lion")', "sgd", {"adamw", "lion"}),  # unordered: any other
        ("choice(True, False)", True, {False}),
    ],
)
def test_small_steps_on_discrete_knobs_move_one_grid_step(
    spec: str, value: object, expected: set[object]
) -> None:
    found = set()
    for sign in (1, -1):
        found |= set(steps(spec, value, 0.01, sign, n=50))
    assert found == expected


def test_at_a_bound_the_move_goes_the_other_way() -> None:
    assert set(steps("int(1, 4)", 4, 0.01, +1, n=20)) == {3}
    assert all(v < 1.0 for v in steps("float(0, 1)", 1.0, 0.2, +1))  # type: ignore[operator]


def test_unit_scale_and_moves_between_configurations() -> None:
    batch = parse_knob_spec("choice(4096, 1024, 2048)")  # declared out of order: sorted by value
    assert [unit(batch, v) for v in (1024, 2048, 4096)] == [0.0, 0.5, 1.0]
    lr = parse_knob_spec("log(0.001, 0.1)")
    assert unit(lr, 0.01) == pytest.approx(0.5)
    spaces: dict[str, KnobSpace] = {"lr": lr, "batch": batch, "opt": parse_knob_spec('choice("a", "b")')}
    a = {"lr": 0.01, "batch": 2048, "opt": "a"}
    b = {"lr": 0.005, "batch": 4096, "opt": "b"}
    assert sorted(moves_between(spaces, a, b)) == [("batch", 1), ("lr", -1), ("opt", 0)]
    assert moves_between(spaces, a, a) == []


def test_region_widens_on_a_keep_and_shrinks_after_local_failures() -> None:
    region = TrustRegion(dims=14)
    assert region.fail_tol == 7  # more knobs, more directions to try before shrinking
    region.success([("lr", 1)])
    assert region.length == 1.5 * LENGTH_INIT and region.momentum == (("lr", 1),)
    for _ in range(10):
        region.success([])
    assert region.length == LENGTH_MAX
    region = TrustRegion(dims=14)
    for _ in range(6):
        region.failure()
    assert region.length == LENGTH_INIT
    region.failure()
    assert region.length == LENGTH_INIT / 2 and region.failures == 0


def test_a_near_miss_widens_the_region_and_favours_its_direction() -> None:
    region = TrustRegion(dims=14)
    region.failure()
    region.near_miss([("wd", -1)])
    assert region.length == 1.5 * LENGTH_INIT and region.momentum == (("wd", -1),)
    assert region.failures == 1  # a near miss is no keep: the failures since the last one stay


def test_a_collapsed_region_owes_global_moves_then_restarts() -> None:
    region = TrustRegion(dims=4)
    assert region.fail_tol == 3 and not region.take_global()
    for _ in range(3 * region.fail_tol):
        region.failure()
    assert region.restarts == 1 and region.length == LENGTH_INIT
    assert [region.take_global() for _ in range(GLOBAL_BURST + 1)] == [True] * GLOBAL_BURST + [False]


def test_the_directions_tried_follow_the_incumbent_when_it_moves() -> None:
    """What counts as tried is read around the current center: after a keep moves the center,
    a trial that was a step up from the old one is the new one's step *down*. (The sampler keeps
    what it read between asks; this fails if that memory outlives its center.)"""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spaces = {"X": parse_knob_spec("float(0, 1)")}
    dists = {k: distribution(s) for k, s in spaces.items()}
    ups = 0
    for seed in range(100):
        sampler = TrustRegionSampler(seed=seed)
        study = optuna.create_study(sampler=sampler)
        for x in (0.5, 0.6):  # the old incumbent, and the step up from it that was kept
            study.add_trial(create_trial(state=TrialState.COMPLETE, value=1.0,
                                         params={"X": x}, distributions=dists))
        for center in ({"X": 0.5}, {"X": 0.6}):
            sampler.neighbourhood = Neighbourhood(center, spaces, dists, TrustRegion(dims=1))
            trial = study.ask(dists)
            study.tell(trial, state=TrialState.FAIL)
        ups += trial.params["X"] > 0.6 + 1e-9
    # From 0.6, X up is untried and X down was tried (0.5): up is drawn ten times as often as
    # down (88 of 100 here). With the old center's reading kept, X up counts as tried too: 48.
    assert ups >= 70
