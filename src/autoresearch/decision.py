"""Keep or not: the harness's verdict, decided by statistics rather than by one lucky run.

The rule (documented in the README, section "The decision rule"):

1. The noise floor σ is measured, never assumed: it is the pooled standard deviation of every
   group of repeated runs of one commit in the session (the baseline's repeats first, then every
   confirmation run), with `dof` degrees of freedom.
2. improvement = (candidate mean − incumbent mean), signed so that positive is better.
   SE = σ·√(1/n_candidate + 1/n_incumbent).
   threshold = max(min_effect, t(dof)·SE), where t(dof) is the Student-t quantile with the same
   one-sided tail as `noise_k` standard normal deviations (k = 2 → 2.3 %), so a noise floor
   estimated from few runs is not trusted more than it deserves.
3. improvement > threshold → keep.
4. Ambiguous but promising (improvement above 0.3 × the threshold, or the noise is still unknown
   and the improvement exceeds min_effect): re-run incumbent and candidate interleaved, one pair at
   a time, up to `confirm_runs` pairs, re-judging after each pair with the updated σ and means.
5. Simplicity: within the band (−threshold ≤ improvement ≤ threshold), a change that removes more
   lines than it adds is kept; one that adds lines is not.
6. Everything else is discarded; the reason always says which numbers decided it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean
from typing import Literal

from scipy import special

from autoresearch.config import Amount, GuardConfig

Outcome = Literal["keep", "discard", "confirm"]
PROMISING_FRACTION = 0.3


@dataclass(frozen=True)
class Noise:
    """The pooled within-commit spread of the objective; sigma None while nothing was repeated."""

    sigma: float | None
    dof: int

    def __str__(self) -> str:
        return "unknown" if self.sigma is None else f"σ={self.sigma:.4g} (dof {self.dof})"


# Repeats that differ by less than this fraction of their size look like one value computed
# with a little float jitter (a GPU reduction's order under a fixed seed) rather than the noise
# between seeds. Only said (at the baseline), never used by the verdict: a metric with a large
# offset (a sum near 1e6 with σ 0.1) or a large exact count spreads as little, and both are
# measured honestly by their repeats.
IDENTICAL_REL = 1e-6


def identical(values: Sequence[float]) -> bool:
    """The values are one value, to within `IDENTICAL_REL` of their size."""
    if not values:
        return True
    low, high = min(values), max(values)
    return high - low <= IDENTICAL_REL * max(abs(low), abs(high))


def pooled_noise(groups: Iterable[Sequence[float]]) -> Noise:
    """Pool the variance of each group of repeated measurements of one commit."""
    squares = 0.0
    dof = 0
    for group in groups:
        values = [v for v in group if math.isfinite(v)]
        if len(values) < 2:
            continue
        mean = fmean(values)
        squares += sum((v - mean) ** 2 for v in values)
        dof += len(values) - 1
    if dof == 0:
        return Noise(None, 0)
    return Noise(math.sqrt(squares / dof), dof)


def t_quantile(p: float, dof: int) -> float:
    """Student-t quantile (scipy's; this module once carried a Cornish-Fisher approximation)."""
    if dof <= 0:
        raise ValueError("dof must be positive")
    return float(special.stdtrit(dof, p))


@dataclass(frozen=True)
class Rule:
    direction: str
    min_effect: Amount
    noise_k: float = 2.0
    simplicity: bool = True

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "maximize" else -1.0

    def critical_value(self, dof: int) -> float:
        tail = 1.0 - NormalDist().cdf(self.noise_k)
        return t_quantile(1.0 - tail, dof)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    candidate_mean: float
    incumbent_mean: float
    delta: float
    improvement: float
    threshold: float
    noise: Noise


def judge(
    candidate: Sequence[float],
    incumbent: Sequence[float],
    noise: Noise,
    rule: Rule,
    *,
    lines_added: int = 0,
    lines_removed: int = 0,
    can_confirm: bool = True,
) -> Verdict:
    """One look at the numbers: keep, discard, or ask for a confirmation pair."""
    cand, inc = fmean(candidate), fmean(incumbent)
    delta = cand - inc
    improvement = rule.sign * delta
    min_effect = rule.min_effect.resolve(inc)
    simpler = rule.simplicity and lines_removed > lines_added

    def verdict(outcome: Outcome, reason: str, threshold: float) -> Verdict:
        return Verdict(outcome, reason, cand, inc, delta, improvement, threshold, noise)

    counts = f"{len(candidate)} vs {len(incumbent)} runs"
    if noise.sigma is None:
        # Nothing repeated yet: only min_effect can be applied, so re-measure before trusting it.
        if improvement > min_effect and can_confirm:
            return verdict("confirm", f"improved by {improvement:.4g} but the noise floor is "
                           "unknown: re-measuring candidate and incumbent", min_effect)
        if improvement > min_effect:
            return verdict("keep", f"improved by {improvement:.4g} > min_effect {min_effect:.4g}"
                           f" ({counts}; noise unknown)", min_effect)
        if simpler and improvement >= -min_effect:
            return verdict("keep", f"simpler (−{lines_removed - lines_added} lines) and equal "
                           f"within min_effect {min_effect:.4g}", min_effect)
        return verdict("discard", f"improvement {improvement:.4g} ≤ min_effect {min_effect:.4g}"
                       f" ({counts}; noise unknown)", min_effect)

    se = noise.sigma * math.sqrt(1 / len(candidate) + 1 / len(incumbent))
    stat = rule.critical_value(noise.dof) * se
    threshold = max(min_effect, stat)
    basis = (f"threshold {threshold:.4g} = max(min_effect {min_effect:.4g}, "
             f"t·SE {stat:.4g}; {noise}, {counts})")
    if improvement > threshold:
        return verdict("keep", f"improved by {improvement:.4g} > {basis}", threshold)
    if can_confirm and improvement > max(min_effect, PROMISING_FRACTION * threshold):
        return verdict("confirm", f"promising {improvement:.4g} but ≤ {basis}: re-measuring",
                       threshold)
    if simpler and improvement >= -threshold:
        return verdict("keep", f"simpler (−{lines_removed - lines_added} lines) and equal within "
                       f"noise: {improvement:.4g} within ±{threshold:.4g}", threshold)
    if improvement < -threshold:
        return verdict("discard", f"worse by {-improvement:.4g} (beyond {basis})", threshold)
    return verdict("discard", f"improvement {improvement:.4g} ≤ {basis}", threshold)


class MeasurementFailed(Exception):
    """A confirmation run crashed or timed out; the caller records it and stops confirming."""

    def __init__(self, role: str, status: str) -> None:
        self.role = role
        self.status = status
        super().__init__(f"{role} run {status} during confirmation")


def decide(
    candidate: list[float],
    incumbent: list[float],
    other_groups: Sequence[Sequence[float]],
    rule: Rule,
    measure: Callable[[str], float],
    *,
    max_pairs: int,
    lines_added: int = 0,
    lines_removed: int = 0,
) -> tuple[Verdict, int]:
    """Judge, re-measuring interleaved pairs while the verdict is "confirm".

    `measure(role)` runs one more measurement of "incumbent" or "candidate" and returns the
    objective (raising MeasurementFailed on a crash); the lists are extended in place so the
    caller can record every run. Returns the final verdict and the number of pairs run.
    """
    pairs = 0
    while True:
        noise = pooled_noise([*other_groups, candidate, incumbent])
        verdict = judge(candidate, incumbent, noise, rule, lines_added=lines_added,
                        lines_removed=lines_removed, can_confirm=pairs < max_pairs)
        if verdict.outcome != "confirm":
            return verdict, pairs
        # Incumbent first, then candidate: alternating cancels slow machine drift.
        incumbent.append(measure("incumbent"))
        candidate.append(measure("candidate"))
        pairs += 1


@dataclass(frozen=True)
class GuardResult:
    label: str
    passed: bool
    detail: str


def check_metric_guards(
    guards: Sequence[GuardConfig],
    candidate: Mapping[str, float],
    incumbent: Mapping[str, float],
    printed: Callable[[str], tuple[int, int]] = lambda name: (1, 1),
) -> list[GuardResult]:
    """Bounds on secondary metrics (e.g. peak memory may not grow more than 10 %).
    `printed(name)`: of the candidate's successful runs, (how many printed it, how many there
    were): a bound is judged on every run, so a metric some runs did not print fails it."""
    results: list[GuardResult] = []
    for g in guards:
        if g.metric is None:
            continue
        value = candidate.get(g.metric)
        if value is None or not math.isfinite(value):
            results.append(GuardResult(g.label, False, f"{g.metric} missing from the output"))
            continue
        seen, runs = printed(g.metric)
        if seen < runs:
            # The runs that did not print it (out of memory, say) may be the ones over the bound.
            results.append(GuardResult(g.label, False, f"{g.metric} missing from the output of "
                                       f"{runs - seen} of the candidate's {runs} runs"))
            continue
        base = incumbent.get(g.metric)
        failures: list[str] = []
        if g.max is not None and value > g.max:
            failures.append(f"{value:.6g} > max {g.max:g}")
        if g.min is not None and value < g.min:
            failures.append(f"{value:.6g} < min {g.min:g}")
        if base is not None and math.isfinite(base):
            if g.max_increase is not None and value > base + g.max_increase.resolve(base):
                failures.append(f"{value:.6g} grew more than {g.max_increase} over {base:.6g}")
            if g.max_decrease is not None and value < base - g.max_decrease.resolve(base):
                failures.append(f"{value:.6g} fell more than {g.max_decrease} under {base:.6g}")
        detail = "; ".join(failures) if failures else f"{g.metric} = {value:.6g} ok"
        results.append(GuardResult(g.label, not failures, detail))
    return results
