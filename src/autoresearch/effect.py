"""The effect of a candidate over its control arm, from every run of the session.

One linear model over the session's runs: each commit has its own mean, and all runs share a
linear time trend (slow machine drift: thermal state, load, caches):

    y = μ[commit] + β·(t − t0) + ε

so the candidate is compared with what the incumbent would measure *at the candidate's times*, not
with the incumbent's first runs. Runs interleaved with the candidate's (a pair run back to back)
are worth most: the trend moves them least. With drift turned off the model is the classic pooled
comparison of means.

β is estimated only from *control* runs (runs of a commit made while it was the incumbent, and the
baseline's repeats), within each commit. A candidate's own runs never inform it: a candidate gets
another run only when its runs so far looked good, and stops when they turn bad, so the runs of
judged candidates trend upwards or downwards by construction (a within-group regression on them
would find a drift that is not there). While the control runs show no clear drift, a prior (a
drift of about `drift_prior` σ per run is plausible) keeps β near 0 and its uncertainty in the
standard error; once they do (|t| ≥ 3), their least-squares slope is used as it is.

The noise is not assumed equal across commits: each arm's variance is its own, shrunk towards the
other commits' pooled σ² by `prior_dof` runs' worth of weight (a scaled-inverse-χ² prior centred
on the pool), and the degrees of freedom of the standard error come from Welch–Satterthwaite. A
candidate that only adds noise shows it in its own runs' spread; a candidate with one run borrows
the pooled σ, which is why a keep needs at least two candidate runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Protocol

from autoresearch.spending import t_to_z

# A drift this far from zero in the control runs (as a normal z: the t on few degrees of freedom
# counts for less) is taken as measured; below it, the prior (no drift, give or take
# `drift_prior`) tempers it.
DRIFT_EVIDENT = 3.0


class Run(Protocol):
    """What the model needs of a run: its objective, when it started, and whether it was a
    control run (the commit was the incumbent, or the baseline, when it ran)."""

    @property
    def value(self) -> float: ...

    @property
    def at(self) -> float: ...

    @property
    def control(self) -> bool: ...


@dataclass(frozen=True)
class Effect:
    """The improvement of the candidate over the incumbent (positive = better) and its error."""

    estimate: float
    se: float  # standard error of `estimate`; inf while the noise is unknown
    dof: float  # Welch–Satterthwaite degrees of freedom of `se`
    sigma: float | None  # pooled within-commit σ (None: nothing repeated yet)
    noise_dof: int  # degrees of freedom of `sigma`
    slope: float  # fitted drift per second, in the objective's units (0 when not modelled)
    candidate_sd: float  # the σ used for the candidate's runs (its own, shrunk to the pool)
    incumbent_sd: float
    candidate_runs: int
    incumbent_runs: int

    @property
    def zero_noise(self) -> bool:
        """Repeated runs were all identical: σ = 0 is hidden noise (or a deterministic target)."""
        return self.sigma == 0.0

    @property
    def known(self) -> bool:
        return self.sigma is not None


def _centred(times: Sequence[float], values: Sequence[float]) -> tuple[float, float, float]:
    """(S_tt, S_ty, S_yy) around the means of `times` and `values`."""
    if not values:
        return 0.0, 0.0, 0.0
    tm, ym = math.fsum(times) / len(times), math.fsum(values) / len(values)
    dt = [t - tm for t in times]
    dy = [y - ym for y in values]
    return (math.fsum(d * d for d in dt), math.fsum(a * b for a, b in zip(dt, dy, strict=True)),
            math.fsum(d * d for d in dy))


@dataclass(frozen=True)
class _Group:
    """One commit's runs, with the centred sums the model needs (computed once)."""

    times: tuple[float, ...]
    values: tuple[float, ...]
    controls: tuple[bool, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @cached_property
    def mean(self) -> float:
        return math.fsum(self.values) / self.n

    @cached_property
    def mean_time(self) -> float:
        return math.fsum(self.times) / self.n

    @cached_property
    def sums(self) -> tuple[float, float, float]:
        """(S_tt, S_ty, S_yy) of all its runs around the group's means."""
        return _centred(self.times, self.values)

    @cached_property
    def control_sums(self) -> tuple[float, float]:
        """(S_tt, S_ty) of its control runs, around their own means: the drift evidence."""
        picked = [(t, y) for t, y, c in zip(self.times, self.values, self.controls, strict=True)
                  if c]
        stt, sty, _ = _centred([t for t, _ in picked], [y for _, y in picked])
        return stt, sty

    @property
    def constant(self) -> bool:
        """Every run gave exactly the same value (compared as parsed, not through sums)."""
        return len(set(self.values)) <= 1

    def rss(self, slope: float) -> float:
        """Residual sum of squares around the group's mean and the common slope."""
        stt, sty, syy = self.sums
        if slope == 0.0:
            return syy
        return max(0.0, syy - 2.0 * slope * sty + slope * slope * stt)

    def plus(self, at: float, slope: float, control: bool) -> _Group:
        """This group with one more run at `at`, lying exactly on the fitted line (design only)."""
        value = self.mean + slope * (at - self.mean_time) if self.n else 0.0
        return _Group((*self.times, at), (*self.values, value), (*self.controls, control))


def _group(runs: Sequence[Run], t0: float) -> _Group:
    good = [r for r in runs if math.isfinite(r.value)]
    return _Group(tuple(r.at - t0 for r in good), tuple(r.value for r in good),
                  tuple(bool(r.control) for r in good))


@dataclass(frozen=True)
class _Pool:
    """The other commits' repeated runs, summed once: they inform the noise and the drift."""

    dof: int = 0  # Σ (n − 1)
    stt: float = 0.0
    sty: float = 0.0
    syy: float = 0.0
    ctt: float = 0.0  # control runs only
    cty: float = 0.0
    constant: bool = True  # every commit's repeats were identical

    @classmethod
    def of(cls, groups: Sequence[_Group]) -> _Pool:
        repeated = [g for g in groups if g.n >= 2]
        return cls(sum(g.n - 1 for g in repeated), math.fsum(g.sums[0] for g in repeated),
                   math.fsum(g.sums[1] for g in repeated), math.fsum(g.sums[2] for g in repeated),
                   math.fsum(g.control_sums[0] for g in repeated),
                   math.fsum(g.control_sums[1] for g in repeated),
                   all(g.constant for g in repeated))

    def rss(self, slope: float) -> float:
        if slope == 0.0:
            return self.syy
        return max(0.0, self.syy - 2.0 * slope * self.sty + slope * slope * self.stt)


@dataclass(frozen=True)
class Model:
    """The session model for one candidate/incumbent comparison (fitted on demand)."""

    candidate: _Group
    incumbent: _Group
    others: _Pool
    sign: float
    drift: bool
    prior_dof: float
    ridge: float  # the drift prior's weight, as S_tt of control runs (seconds²)
    t0: float
    last: float  # when the latest run started, relative to t0
    spacing: float  # the typical time between consecutive runs

    @classmethod
    def fit(cls, candidate: Sequence[Run], incumbent: Sequence[Run],
            others: Sequence[Sequence[Run]], *, sign: float, drift: bool = True,
            prior_dof: float = 10.0, drift_prior: float = 0.035) -> Model:
        times = sorted(r.at for g in (candidate, incumbent, *others) for r in g)
        t0 = times[0] if times else 0.0
        gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False) if b > a)
        spacing = gaps[len(gaps) // 2] if gaps else 1.0
        pool = _Pool.of([_group(o, t0) for o in others])
        # A drift of `drift_prior` σ per run as one standard deviation of the prior on β:
        # in the model's units that is S_tt = (spacing / drift_prior)² of control runs.
        ridge = (spacing / drift_prior) ** 2
        return cls(_group(candidate, t0), _group(incumbent, t0), pool, sign, drift, prior_dof,
                   ridge, t0, (times[-1] - t0) if times else 0.0, spacing)

    def _arms(self) -> tuple[_Group, ...]:
        return tuple(g for g in (self.candidate, self.incumbent) if g.n)

    def _ctt(self) -> float:
        return self.others.ctt + math.fsum(g.control_sums[0] for g in self._arms())

    def _dof(self, *, trend: bool) -> int:
        return self.others.dof + sum(g.n - 1 for g in self._arms()) - (1 if trend else 0)

    def _trend(self) -> bool:
        """Drift is fitted when asked for, when some control runs spread over time, and when a
        degree of freedom is left for the noise once it is."""
        return self.drift and self._ctt() > 0.0 and self._dof(trend=True) >= 1

    @cached_property
    def _fit(self) -> tuple[float, float]:
        """(slope, its weight as S_tt): least squares on the control runs when they show a drift
        (|t| ≥ DRIFT_EVIDENT), else shrunk towards no drift by the prior's weight."""
        if not self._trend():
            return 0.0, 0.0
        ctt = self._ctt()
        cty = self.others.cty + math.fsum(g.control_sums[1] for g in self._arms())
        ols = cty / ctt
        rss = self.others.rss(ols) + math.fsum(g.rss(ols) for g in self._arms())
        dof = self._dof(trend=True)
        if rss > 0.0 and t_to_z(abs(ols) / math.sqrt(rss / dof / ctt), dof) >= DRIFT_EVIDENT:
            return ols, ctt
        return cty / (ctt + self.ridge), ctt + self.ridge

    def slope(self) -> float:
        return self._fit[0]

    def effect(self) -> Effect:
        cand, inc = self.candidate, self.incumbent
        if cand.n == 0 or inc.n == 0:
            raise ValueError("the effect needs at least one run of each arm")
        trend = self._trend()
        slope = self.slope()
        dof = self._dof(trend=trend)
        delta_t = cand.mean_time - inc.mean_time
        estimate = self.sign * ((cand.mean - inc.mean) - slope * delta_t)
        flat = self._dof(trend=False)
        # Repeated runs, and all of them identical (no spread around any commit's mean):
        # the noise is hidden (a fixed seed), or the target is deterministic.
        if flat > 0 and self.others.constant and cand.constant and inc.constant:
            return Effect(estimate, 0.0, math.inf, 0.0, flat, 0.0, 0.0, 0.0, cand.n, inc.n)
        if dof <= 0:
            return Effect(estimate, math.inf, 0.0, None, 0, slope, math.nan, math.nan,
                          cand.n, inc.n)
        rss = self.others.rss(slope) + cand.rss(slope) + inc.rss(slope)
        pooled = rss / dof
        weight = self._fit[1]

        def arm(g: _Group) -> tuple[float, float]:
            """An arm's variance: its own spread, shrunk towards the pooled spread of the *other*
            commits (so no run is counted twice), and the degrees of freedom behind it. The
            fitted drift took its share of every commit's freedom (the leverage of its control
            runs on the slope)."""
            own_dof = g.n - 1 - (g.control_sums[0] / weight if weight > 0 else 0.0)
            rest_dof = dof - own_dof
            prior = min(self.prior_dof, rest_dof) if rest_dof > 0 else 0.0
            if prior + own_dof <= 1e-9:
                return pooled, float(dof)
            rest = (rss - g.rss(slope)) / rest_dof if rest_dof > 0 else 0.0
            return (prior * rest + g.rss(slope)) / (prior + own_dof), prior + own_dof

        v_c, nu_c = arm(cand)
        v_i, nu_i = arm(inc)
        parts = [(v_c / cand.n, nu_c), (v_i / inc.n, nu_i)]
        if trend:
            # The slope's posterior variance (the prior's share included); it is uncorrelated
            # with the arms' means (control runs are centred within each commit).
            parts.append((delta_t**2 * pooled / weight, float(dof)))
        var = math.fsum(p for p, _ in parts)
        denominator = math.fsum(p * p / nu for p, nu in parts if p > 0)
        # Never more degrees of freedom than the whole model has: the arms' priors share runs.
        welch = min(var * var / denominator if denominator > 0 else math.inf, float(dof))
        return Effect(estimate, math.sqrt(var), welch, math.sqrt(pooled), dof, slope,
                      math.sqrt(v_c), math.sqrt(v_i), cand.n, inc.n)

    def with_run(self, role: str, after: int = 1) -> Model:
        """The same model with one more (hypothetical) run of `role`, `after` run spacings after
        the latest run: what another run would do to the standard error, before it is run."""
        slope = self.slope()
        t = self.last + after * self.spacing
        if role == "candidate":
            return replace(self, candidate=self.candidate.plus(t, slope, False), last=t)
        return replace(self, incumbent=self.incumbent.plus(t, slope, True), last=t)
