"""The decision rule: statistics decide, and they are conservative on noise."""

from __future__ import annotations

import random

import pytest

from autoresearch.config import Amount, GuardConfig
from autoresearch.decision import (
    MeasurementFailed,
    Noise,
    Rule,
    check_metric_guards,
    decide,
    judge,
    pooled_noise,
    t_quantile,
)

MIN = Rule("minimize", Amount(value=0.0, relative=False))


def test_t_quantiles_match_tables() -> None:
    assert t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.975, 2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(0.975, 5) == pytest.approx(2.571, abs=2e-3)
    assert t_quantile(0.975, 30) == pytest.approx(2.042, abs=2e-3)


def test_pooled_noise_ignores_singletons_and_non_finite() -> None:
    noise = pooled_noise([[1.0, 1.2], [5.0], [2.0, 2.2, float("nan")]])
    assert noise.dof == 2
    assert noise.sigma == pytest.approx(0.1414, abs=1e-3)
    assert pooled_noise([[1.0]]).sigma is None


def test_clear_improvement_is_kept_and_clear_regression_discarded() -> None:
    noise = Noise(0.01, 10)
    keep = judge([0.90], [1.0, 1.0, 1.0], noise, MIN)
    assert keep.outcome == "keep" and keep.improvement == pytest.approx(0.1)
    worse = judge([1.1], [1.0, 1.0, 1.0], noise, MIN)
    assert worse.outcome == "discard" and "worse" in worse.reason


def test_direction_maximize() -> None:
    rule = Rule("maximize", Amount(value=0.0, relative=False))
    assert judge([1.1], [1.0, 1.0], Noise(0.01, 10), rule).outcome == "keep"
    assert judge([0.9], [1.0, 1.0], Noise(0.01, 10), rule).outcome == "discard"


def test_ambiguous_results_ask_for_confirmation_and_cap_is_respected() -> None:
    noise = Noise(0.01, 2)  # few dof: the t quantile is large
    v = judge([0.965], [1.0, 1.0, 1.0], noise, MIN)
    assert v.outcome == "confirm"
    capped = judge([0.965], [1.0, 1.0, 1.0], noise, MIN, can_confirm=False)
    assert capped.outcome == "discard"


def test_min_effect_absolute_and_relative() -> None:
    absolute = Rule("minimize", Amount.parse(0.05))
    assert judge([0.96], [1.0, 1.0], Noise(0.0, 5), absolute).outcome == "discard"
    relative = Rule("minimize", Amount.parse("2%"))
    assert judge([0.97], [1.0, 1.0], Noise(0.0, 5), relative).outcome == "keep"
    assert judge([0.99], [1.0, 1.0], Noise(0.0, 5), relative).outcome == "discard"


def test_unknown_noise_confirms_before_trusting() -> None:
    v = judge([0.9], [1.0], Noise(None, 0), MIN)
    assert v.outcome == "confirm" and "unknown" in v.reason


def test_simplicity_keeps_fewer_lines_within_noise_only() -> None:
    noise = Noise(0.01, 10)
    simpler = judge([1.001], [1.0, 1.0], noise, MIN, lines_added=1, lines_removed=5,
                    can_confirm=False)
    assert simpler.outcome == "keep" and "simpler" in simpler.reason
    longer = judge([1.001], [1.0, 1.0], noise, MIN, lines_added=5, lines_removed=1,
                   can_confirm=False)
    assert longer.outcome == "discard"
    much_worse = judge([1.5], [1.0, 1.0], noise, MIN, lines_added=0, lines_removed=5)
    assert much_worse.outcome == "discard"


def test_decide_interleaves_incumbent_first() -> None:
    order: list[str] = []
    rng = random.Random(1)

    def measure(role: str) -> float:
        order.append(role)
        return (0.97 if role == "candidate" else 1.0) + rng.gauss(0, 0.002)

    verdict, pairs = decide([0.97], [1.0, 1.01, 0.99], [], MIN, measure, max_pairs=4)
    assert pairs >= 1
    assert order[:2] == ["incumbent", "candidate"]
    assert verdict.outcome == "keep"


def test_decide_propagates_a_crashing_confirmation() -> None:
    def measure(role: str) -> float:
        raise MeasurementFailed(role, "crash")

    with pytest.raises(MeasurementFailed):
        decide([0.985], [1.0, 1.0, 1.0], [[1.0, 1.01]], MIN, measure, max_pairs=2)


def test_null_changes_are_rarely_kept_but_real_ones_are() -> None:
    """The measured property behind bench/decision_noise.py, at a fixed seed."""
    rng = random.Random(7)
    sigma = 0.01

    def session(effect: float) -> int:
        true = 1.0
        incumbent = [true + rng.gauss(0, sigma) for _ in range(3)]
        history: list[list[float]] = []
        kept = 0
        for _ in range(30):
            cand_true = true - effect * sigma
            candidate = [cand_true + rng.gauss(0, sigma)]

            def measure(role: str, c: float = cand_true, i: float = true) -> float:
                return (c if role == "candidate" else i) + rng.gauss(0, sigma)

            verdict, _ = decide(candidate, incumbent, history, MIN, measure, max_pairs=4)
            if verdict.outcome == "keep":
                kept += 1
                history.append(incumbent)
                incumbent, true = candidate, cand_true
            else:
                history.append(candidate)
        return kept

    null_keeps = sum(session(0.0) for _ in range(60))
    assert null_keeps / (60 * 30) < 0.03
    real_keeps = sum(session(3.0) for _ in range(20))
    assert real_keeps / (20 * 30) > 0.4


def test_metric_guards() -> None:
    guards = [
        GuardConfig(metric="mem", max_increase=Amount.parse("10%")),
        GuardConfig(metric="mem", max=150.0),
        GuardConfig(metric="acc", min=0.5, max_decrease=Amount.parse(0.1)),
    ]
    ok = check_metric_guards(guards, {"mem": 105.0, "acc": 0.9}, {"mem": 100.0, "acc": 0.95})
    assert all(g.passed for g in ok)
    bad = check_metric_guards(guards, {"mem": 200.0, "acc": 0.7}, {"mem": 100.0, "acc": 0.95})
    assert [g.passed for g in bad] == [False, False, False]
    missing = check_metric_guards(guards[:1], {}, {"mem": 100.0})
    assert not missing[0].passed and "missing" in missing[0].detail
