"""The verdict as a policy: given the evidence so far, keep, discard, or ask for more runs.

This is the seam between the engine (which schedules runs on slots and records them) and the
statistics (which decide). The engine never judges numbers itself; it gathers `Evidence` for a
trial, asks `policy.step(evidence)`, and does what the `Step` says: run the requested roles (in
that order, back to back where it can: that is what makes them a pair), or conclude.

Roles: "candidate" is the trial's commit; "incumbent" is the commit the trial started from, the
control arm. The engine re-measures the incumbent as a control arm: when a step asks for it, and
on the cadence `policy.control_due` sets (serial sessions), so that neither the incumbent's mean
nor the noise floor rests on its first runs.

`ClassicPolicy` is the rule that shipped first (decision.judge with interleaved confirmation
pairs); the engine-v2 statistics replace it behind the same interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean, stdev
from typing import Literal, Protocol

from scipy import stats

from autoresearch.decision import Noise, Rule, judge, pooled_noise

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


@dataclass(frozen=True)
class Evidence:
    """Everything the policy may use to judge one trial's current attempt."""

    candidate: Sequence[Observation]  # ok runs of the candidate commit, in the order they started
    incumbent: Sequence[Observation]  # ok runs of the incumbent's commit in this session (control)
    # Repeated runs of other commits of the session: evidence about the noise, never about the
    # effect. Each inner sequence is one commit's values.
    other_groups: Sequence[Sequence[float]] = ()
    lines_added: int = 0
    lines_removed: int = 0
    # How much improvement simplicity keeps have given up since the best measured state
    # (≥ 0, in the objective's units, positive = worse): bounds the simplicity ratchet.
    simplicity_cost: float = 0.0


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
    simpler: bool = False  # kept for simplicity within the noise (its cost is booked)

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
    se = stdev(diffs) / math.sqrt(len(diffs))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(diffs) - 1)) * se
    return Interval(mean, mean - half, mean + half, len(diffs), confidence)


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
        noise = pooled_noise([*evidence.other_groups, cand, inc])
        verdict = judge(cand, inc, noise, self.rule, lines_added=evidence.lines_added,
                        lines_removed=evidence.lines_removed, can_confirm=pairs < self.max_pairs)
        low, high = verdict.improvement - verdict.threshold, verdict.improvement + verdict.threshold
        if verdict.outcome == "confirm":
            return Step("measure", verdict.reason, verdict.improvement, low, high,
                        verdict.threshold, noise, runs=("incumbent", "candidate"))
        simpler = verdict.outcome == "keep" and verdict.improvement <= verdict.threshold
        return Step(verdict.outcome, verdict.reason, verdict.improvement, low, high,
                    verdict.threshold, noise, simpler=simpler)

    def control_due(self, runs_since_control: int) -> bool:
        return False
