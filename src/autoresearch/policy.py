"""The verdict as a policy: given the evidence so far, keep, discard, or ask for more runs.

This is the seam between the engine (which schedules runs on slots and records them) and the
statistics (which decide). The engine never judges numbers itself; it gathers `Evidence` for a
trial, asks `policy.step(evidence)`, and does what the `Step` says: run the requested roles (in
that order, back to back where it can: that is what makes them a pair), or conclude.

Roles: "candidate" is the trial's commit; "incumbent" is the commit the trial started from, the
control arm. The engine re-measures the incumbent as a control arm: when a step asks for it, and
on the cadence `policy.control_due` sets (serial sessions), so that neither the incumbent's mean
nor the noise floor rests on its first runs.

The session's policy comes from `policy_for(decision, direction)`, the one place the engine gets
it: `sequential.SequentialPolicy` (the default, README "The decision rule"), or `ClassicPolicy`,
the rule that shipped first (decision.judge with interleaved confirmation pairs), selected with
`[decision] policy = "classic"`.

Interface changes (newest first; the engine codes against these):
- 2026-12-05 (stats), third: `Observation.control` (default False) marks the runs a commit made
  while it was the incumbent (control-arm runs, the incumbent's half of a pair) and the
  baseline's repeats; the drift is estimated from those alone (a judged candidate's runs trend by
  construction: it goes on while they look good). The engine sets it from the run's role.
- 2026-12-05 (stats), second: simplicity is bounded against the best measured state, measured, not
  booked: `Evidence.simplicity_cost` and `simplicity_cost_after` are gone; `Evidence.reference`
  carries the ok runs of the best measured state (the incumbent as of the last keep that was not
  `Step.simpler`, or the baseline) whenever the incumbent is a simplification of it, else stays
  empty. A simplification is kept only while its cost against that state is, with confidence,
  within the budget, so deleting a line at a time cannot walk the session backwards. `Step.booked`
  is the cost of a simplicity keep against the reference (point estimate, for the record). The
  serial protocol (what the simulator in bench/decision_noise.py does): before a candidate's first
  run, run the incumbent when `policy.control_due(runs since the incumbent's commit last ran, in
  any role)`; then `step` until it concludes, running its `runs` back to back in order.
- 2026-12-05 (stats), first: `Evidence.other_groups` holds `Observation`s (value and start time),
  not bare values: the noise model uses when each run started, to separate drift from noise.
  `Step` gains `look` (the candidate runs this verdict rests on), `zero_noise` (the runs were
  identical: σ = 0 is hidden noise, never "∞σ") and `booked`. New functions:
  `policy_for(decision, direction)` builds the session's policy from `[decision]`;
  `headline_pairs(...)` says how many interleaved (best, baseline) pairs the end-of-session
  verification needs for a useful `paired_interval`; `Interval.zero_noise` flags identical pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean, stdev
from typing import Literal, Protocol

from autoresearch.config import DecisionConfig
from autoresearch.decision import Noise, Rule, judge, pooled_noise, t_quantile

Role = Literal["candidate", "incumbent"]
Action = Literal["keep", "discard", "measure"]
# An experiment that ended so is a failed attempt of its commit.
FAILED_STATUSES = ("crash", "timeout")


def counts_as_measurement(run_role: str, experiment_status: str) -> bool:
    """Whether an ok run is evidence about its commit's objective (means, deltas, noise).

    The candidate runs of a failed attempt are not: a baseline that timed out after one good run
    and was resumed is measured by the resumed attempt's runs alone, in the engine and in every
    view. Runs of the incumbent made while judging another experiment always count.
    """
    return not (run_role == "candidate" and experiment_status in FAILED_STATUSES)


@dataclass(frozen=True)
class Observation:
    """One successful run's objective, and when it started (pairing and drift use the time)."""

    value: float
    at: float
    # A control run: made while its commit was the incumbent (a control-arm run, or the
    # incumbent's half of a pair), or one of the baseline's repeats. Runs made while a commit was
    # a candidate being judged are not: whether they happened depended on their own values.
    control: bool = False


@dataclass(frozen=True)
class Evidence:
    """Everything the policy may use to judge one trial's current attempt."""

    candidate: Sequence[Observation]  # ok runs of the candidate commit, in the order they started
    incumbent: Sequence[Observation]  # ok runs of the incumbent's commit in this session (control)
    # Repeated runs of other commits of the session (not the candidate's, the incumbent's or the
    # reference's): evidence about the noise and drift, never about the effect. Each inner
    # sequence is one commit's ok runs.
    other_groups: Sequence[Sequence[Observation]] = ()
    lines_added: int = 0
    lines_removed: int = 0
    # The best measured state's ok runs (the incumbent as of the last keep that was not
    # `simpler`, or the baseline) when the incumbent is a simplification of it; empty when the
    # incumbent is that state. Simplifications are bounded against it (no backwards ratchet).
    reference: Sequence[Observation] = ()


@dataclass(frozen=True)
class Step:
    """The policy's answer: conclude (keep/discard), or the runs it needs next."""

    action: Action
    reason: str
    improvement: float  # point estimate, signed so that positive is better
    low: float  # interval on the improvement at the policy's confidence
    high: float
    threshold: float
    noise: Noise
    runs: tuple[Role, ...] = ()  # action == "measure": run these next, in this order
    simpler: bool = False  # kept for simplicity: no better, but simpler and within the budget
    booked: float = 0.0  # a simplicity keep: its cost against the best measured state (≥ 0)
    look: int = 0  # how many candidate runs this step rests on
    zero_noise: bool = False  # the runs were identical: the noise is hidden, not absent

    @property
    def concluded(self) -> bool:
        return self.action != "measure"


class Policy(Protocol):
    """Keep-or-not, one look at a time."""

    def step(self, evidence: Evidence) -> Step:
        """The verdict on the evidence so far, or the runs needed before one is possible."""

    def control_due(self, runs_since_control: int) -> bool:
        """Serial sessions: re-measure the incumbent before the next candidate run?"""


@dataclass(frozen=True)
class Interval:
    """An estimate of an improvement (positive = better) with a two-sided confidence interval."""

    estimate: float
    low: float
    high: float
    pairs: int
    confidence: float

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def zero_noise(self) -> bool:
        """Several pairs with identical differences: σ = 0, so the interval says nothing."""
        return self.pairs >= 2 and self.low == self.high


_ROUNDING = 1e-12  # differences closer than this, relative to the values, differ by rounding
_MOST_DECIMALS = 12  # a value with more decimals than this is taken as printed in full


def printed_step(values: Sequence[float]) -> float:
    """The last digit the values were printed to, read from the values themselves: 10^-d for the
    most decimals any of them has (`loss: 6.760123` has 6; trailing zeros drop off a value, so
    the most any has is the printing's). 0 when they carry full float precision, or fewer than 3
    decimals: a count or a score of 2 decimals is more likely exact than rounded, and a spread
    of its last digit is then noise."""
    decimals = 0
    for v in values:
        for d in range(_MOST_DECIMALS + 1):
            if abs(round(v, d) - v) <= _ROUNDING * max(abs(v), 1.0):
                decimals = max(decimals, d)
                break
        else:
            return 0.0
    return 10.0 ** -decimals if decimals >= 3 else 0.0


# How much more the runs must vary than the last printed digit for a difference that moves by
# that digit alone to be noise cancelled within each pair rather than noise of the digit's size.
_CANCELLED = 10


def _same_difference(pairs: Sequence[tuple[float, float]], diffs: Sequence[float]) -> bool:
    """Every pair gave the same difference but for rounding: float rounding (0.1701 and
    0.17010000000000003), or the last printed digit when the runs themselves varied far more
    than it (a score printed to 6 decimals, each pair's two runs sharing a seed whose noise
    cancels in their difference). Runs that vary by about that digit (a loss printed to 3
    decimals with noise of 0.001) are noise of the digit's size, not a cancelled one: their
    differences get a t interval like any other."""
    values = [v for pair in pairs for v in pair if math.isfinite(v)]
    spread, float_rounding = max(diffs) - min(diffs), _ROUNDING * max(abs(v) for v in values)
    if spread <= float_rounding:
        return True
    step = printed_step(values)
    if step == 0.0 or spread > 2 * step + float_rounding:
        return False
    arms = [[p[i] for p in pairs if math.isfinite(p[0]) and math.isfinite(p[1])] for i in (0, 1)]
    return max(max(arm) - min(arm) for arm in arms) >= _CANCELLED * 2 * step


def paired_interval(pairs: Sequence[tuple[float, float]], direction: str,
                    confidence: float = 0.95) -> Interval:
    """Improvement of `a` over `b` from interleaved (a, b) pairs: a t interval on the differences.

    Used for the session's headline (best vs baseline re-measured at the end).
    """
    sign = 1.0 if direction == "maximize" else -1.0
    diffs = [sign * (a - b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    if not diffs:
        raise ValueError("no finite pairs")
    mean = fmean(diffs)
    if len(diffs) < 2:
        return Interval(mean, -math.inf, math.inf, len(diffs), confidence)
    if _same_difference(pairs, diffs):
        # An interval of rounding error would claim a width nothing measured, so it is the
        # zero-width one `Interval.zero_noise` flags.
        return Interval(mean, mean, mean, len(diffs), confidence)
    se = stdev(diffs) / math.sqrt(len(diffs))
    half = t_quantile(0.5 + confidence / 2, len(diffs) - 1) * se
    return Interval(mean, mean - half, mean + half, len(diffs), confidence)


def headline_pairs(claimed: float, sigma: float | None, *, confidence: float = 0.95,
                   least: int = 3, most: int = 8) -> int:
    """How many interleaved (best, baseline) pairs make the headline's interval useful.

    Useful means: the expected half-width of the paired t interval is at most half the claimed
    improvement (so a real gain shows as an interval clear of 0 and a lucky one does not), within
    [least, most] pairs. The difference of two runs has a spread of about √2·σ.
    """
    if least < 2 or most < least:
        raise ValueError("need 2 ≤ least ≤ most")
    if sigma is None or sigma <= 0 or not math.isfinite(claimed) or claimed <= 0:
        return least if sigma == 0 else most
    spread = math.sqrt(2.0) * sigma
    for pairs in range(least, most + 1):
        half = t_quantile(0.5 + confidence / 2, pairs - 1) * spread / math.sqrt(pairs)
        if half <= claimed / 2:
            return pairs
    return most


@dataclass(frozen=True)
class ClassicPolicy:
    """The first rule (README "The decision rule"): t-corrected threshold over the pooled noise,
    ambiguous results re-measured in interleaved (incumbent, candidate) pairs up to a cap."""

    rule: Rule
    max_pairs: int

    def step(self, evidence: Evidence) -> Step:
        cand = [o.value for o in evidence.candidate]
        inc = [o.value for o in evidence.incumbent]
        if not cand or not inc:
            needed: list[Role] = []
            if not inc:
                needed.append("incumbent")
            if not cand:
                needed.append("candidate")
            return Step("measure", "nothing measured yet", 0.0, -math.inf, math.inf, 0.0,
                        Noise(None, 0), runs=tuple(needed))
        pairs = len(cand) - 1
        others = [[o.value for o in group] for group in evidence.other_groups]
        noise = pooled_noise([*others, cand, inc])
        verdict = judge(cand, inc, noise, self.rule, lines_added=evidence.lines_added,
                        lines_removed=evidence.lines_removed, can_confirm=pairs < self.max_pairs)
        low, high = verdict.improvement - verdict.threshold, verdict.improvement + verdict.threshold
        if verdict.outcome == "confirm":
            return Step("measure", verdict.reason, verdict.improvement, low, high,
                        verdict.threshold, noise, runs=("incumbent", "candidate"))
        simpler = verdict.outcome == "keep" and verdict.improvement <= verdict.threshold
        return Step(verdict.outcome, verdict.reason, verdict.improvement, low, high,
                    verdict.threshold, noise, simpler=simpler,
                    booked=max(0.0, -verdict.improvement) if simpler else 0.0,
                    look=len(cand), zero_noise=noise.sigma == 0.0)

    def control_due(self, runs_since_control: int) -> bool:
        return False


def policy_for(decision: DecisionConfig, direction: str) -> Policy:
    """The session's verdict policy, from `[decision]` and the metric's direction."""
    if decision.policy == "classic":
        rule = Rule(direction=direction, min_effect=decision.min_effect,
                    noise_k=decision.noise_k, simplicity=decision.simplicity)
        return ClassicPolicy(rule, max_pairs=decision.confirm_runs)
    from autoresearch.sequential import SequentialPolicy  # it builds on this module
    from autoresearch.spending import Design

    return SequentialPolicy(
        direction=direction, min_effect=decision.min_effect,
        design=Design(alpha=decision.false_keep, max_runs=decision.max_runs,
                      effect=decision.target_effect, margin=decision.futility_margin),
        control_every=decision.control_every, drift=decision.drift,
        drift_prior=decision.drift_prior,
        simplicity=decision.simplicity, simplicity_budget=decision.simplicity_budget,
        deterministic=decision.deterministic,
    )
