"""The verdict seam: a policy answers keep, discard, or which runs it needs next."""

from __future__ import annotations

import math

import pytest

from autoresearch.config import Amount
from autoresearch.decision import Rule
from autoresearch.policy import ClassicPolicy, Evidence, Observation, paired_interval

MIN = Rule("minimize", Amount(value=0.0, relative=False))


def obs(*values: float) -> list[Observation]:
    return [Observation(v, float(i)) for i, v in enumerate(values)]


def test_classic_policy_concludes_or_asks_for_an_interleaved_pair() -> None:
    policy = ClassicPolicy(MIN, max_pairs=4)
    baseline = obs(1.0, 1.01, 0.99)
    clear = policy.step(Evidence(candidate=obs(0.9), incumbent=baseline))
    assert clear.action == "keep" and clear.improvement == pytest.approx(0.1)
    worse = policy.step(Evidence(candidate=obs(1.1), incumbent=baseline))
    assert worse.action == "discard"
    unsure = policy.step(Evidence(candidate=obs(0.975), incumbent=baseline))
    assert unsure.action == "measure" and unsure.runs == ("incumbent", "candidate")
    # The cap: after max_pairs confirmation pairs the policy must conclude.
    capped = ClassicPolicy(MIN, max_pairs=0).step(Evidence(candidate=obs(0.975),
                                                           incumbent=baseline))
    assert capped.concluded


def test_nothing_measured_asks_for_the_missing_roles() -> None:
    step = ClassicPolicy(MIN, max_pairs=4).step(Evidence(candidate=[], incumbent=obs(1.0)))
    assert step.action == "measure" and step.runs == ("candidate",)


def test_simplicity_keep_is_flagged_so_its_cost_can_be_booked() -> None:
    step = ClassicPolicy(MIN, max_pairs=0).step(Evidence(
        candidate=obs(1.002), incumbent=obs(1.0, 1.01, 0.99), lines_added=0, lines_removed=3))
    assert step.action == "keep" and step.simpler


def test_paired_interval_is_a_t_interval_on_signed_differences() -> None:
    # Differences 1, 2, 3 (maximize): mean 2, sd 1, t(0.975, 2) = 4.303.
    iv = paired_interval([(1.0, 0.0), (2.0, 0.0), (3.0, 0.0)], "maximize")
    assert iv.estimate == pytest.approx(2.0)
    assert iv.high - iv.estimate == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)
    assert iv.covers(0.0) and not iv.covers(5.0)
    # minimize: a lower candidate is an improvement.
    assert paired_interval([(0.9, 1.0), (0.8, 1.0)], "minimize").estimate == pytest.approx(0.15)
    one = paired_interval([(0.9, 1.0)], "minimize")
    assert one.low == -math.inf and one.high == math.inf


def test_pairs_that_differ_only_by_rounding_have_no_spread() -> None:
    # (1 + n) - (16 + n) is -15 but for the last bits of each float: no interval of that width.
    rounded = paired_interval([(1.0 + n, 16.0 + n) for n in (0.0123456, -0.0371, 0.0449)],
                              "minimize")
    assert rounded.zero_noise and rounded.low == rounded.high == rounded.estimate
    assert rounded.estimate == pytest.approx(15.0)
    # A real spread, however small against the values, is not rounding: at full precision, or
    # of more than two last printed digits (each printed value is off by half a digit at most).
    small = paired_interval([(1.0, 16.0), (1.0 + 1e-9 * math.pi, 16.0)], "minimize")
    assert not small.zero_noise and small.low < small.estimate < small.high
    digits = paired_interval([(1.000001, 16.0), (1.000004, 16.0)], "minimize")
    assert not digits.zero_noise


def test_pairs_that_differ_only_in_their_last_printed_digit_have_no_spread() -> None:
    # A score printed to 6 decimals, each pair's runs sharing a seed whose noise cancels: the
    # differences vary by the rounding of the print alone (a quick start session showed
    # "+1.747 [+1.747, +1.747] at 95%" and "110.7σ" from it).
    printed = [(6.760123, 8.507364), (6.812347, 8.559589), (6.700010, 8.447250)]
    shown = paired_interval(printed, "minimize")
    assert shown.zero_noise and shown.estimate == pytest.approx(1.747241, abs=2e-6)
    # Counts and scores of one or two decimals are taken as exact: their spread is noise.
    counts = paired_interval([(13.0, 16.0), (12.0, 16.0), (14.0, 16.0)], "minimize")
    assert not counts.zero_noise and counts.low < counts.estimate < counts.high


def test_noise_the_size_of_the_last_printed_digit_is_not_taken_for_rounding() -> None:
    # A loss printed to 3 decimals with independent noise of about 0.001 in each run: the
    # differences move by a digit or two because the runs do, not because a shared seed's noise
    # cancelled. A tester's session showed "+0.001625 in every pair" (a value no pair had) and
    # "the noise it drew cancelled" from these pairs.
    coarse = [(0.999, 1.0), (0.999, 1.0), (0.999, 1.001), (0.999, 1.0), (0.997, 1.0),
              (0.997, 1.0), (0.999, 1.0), (0.998, 0.999)]
    shown = paired_interval(coarse, "minimize")
    assert not shown.zero_noise
    assert shown.low == pytest.approx(0.00086, abs=1e-5)
    assert shown.high == pytest.approx(0.00239, abs=1e-5)


def test_headline_pairs_grow_as_the_claim_shrinks_relative_to_the_noise() -> None:
    from autoresearch.policy import headline_pairs

    big = headline_pairs(10.0, 1.0)
    small = headline_pairs(2.5, 1.0)
    assert big == 3 and 3 < small <= 8
    assert headline_pairs(0.1, 1.0) == 8  # a claim within the noise: as many pairs as allowed
    assert headline_pairs(1.0, None) == 8
