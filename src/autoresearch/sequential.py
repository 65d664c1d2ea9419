"""The engine-v2 verdict: a group-sequential test against a re-measured control arm.

Per trial (see README "The decision rule"):
- the effect comes from `effect.Model`: every run of the session, each commit its own mean and
  its own noise (shrunk to the pooled σ), and a shared linear drift, so the candidate is compared
  with the incumbent *at the candidate's times*; interleaved runs weigh most;
- after each candidate run (a look) the t statistic of (improvement − min_effect) is compared with
  the look's boundary from `spending.Design`: the false-keep rate is spent over the looks, so the
  whole sequence keeps a null change at most `alpha` of the time;
- a keep needs `min_runs` candidate runs (one run says nothing about the candidate's own noise);
- below the futility bound the candidate is discarded; between, the policy asks for the run (or
  the interleaved pair) that shrinks the standard error most per run;
- a simplification within the noise is kept only while the cost booked since the best measured
  state stays within `simplicity_budget` σ, and the step says what it booked;
- identical repeats (σ = 0) are hidden noise: nothing is kept on them unless the improvement
  clears a positive min_effect, or the target is declared deterministic;
- in a noisy session, a candidate whose own repeats are identical beyond chance (given the
  resolution they were printed with) is discarded: its output does not depend on the run (a
  seed fixed in the code, a printed value), so its spread says nothing.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from statistics import fmean
from typing import Protocol

from scipy import special

from autoresearch.config import Amount
from autoresearch.decision import Noise
from autoresearch.effect import Effect, Model
from autoresearch.policy import Action, Evidence, Observation, Role, Step
from autoresearch.spending import Design, t_to_z, t_upper, z_to_t

# Every run is given a seed of its own already: a target whose repeats are identical reads it
# nowhere (a seed fixed in the code), so the advice is to draw the randomness from it.
HIDDEN_NOISE_HINT = ("make the target draw its randomness from the seed each run is given ({seed} "
                     "in the command, or AUTORESEARCH_SEED), set [decision] min_effect, or declare "
                     "deterministic = true if the target truly is")


class _StepFn(Protocol):
    def __call__(self, action: Action, reason: str, *, threshold: float = ...,
                 runs: tuple[Role, ...] = ..., simpler: bool = ..., booked: float = ...,
                 width: float = ...) -> Step: ...


def _pooled_sd(groups: Sequence[Sequence[float]]) -> float:
    """The within-group standard deviation pooled over `groups` (0 when nothing repeats)."""
    dof = sum(len(g) - 1 for g in groups)
    if dof <= 0:
        return 0.0
    ss = math.fsum(math.fsum((v - fmean(g)) ** 2 for v in g) for g in groups)
    return math.sqrt(ss / dof)


def _grid(values: Sequence[float]) -> float:
    """The step the values lie on: 1/97 for counts out of 97 however they were printed, 0.01 for
    0.91, 0.93, 0.90; else the finest decimal they were printed with (1e-6 for 2.443962)."""
    fractions = [Fraction(v).limit_denominator(1000) for v in values]
    if all(abs(float(f) - v) <= 1e-9 * max(1.0, abs(v)) for f, v in zip(fractions, values,
                                                                       strict=True)):
        common = math.lcm(*(f.denominator for f in fractions))
        counts = [f.numerator * (common // f.denominator) for f in fractions]
        step = math.gcd(*(c - counts[0] for c in counts))
        if step:
            return step / common
    return min(_printed_step(v) for v in values)


def _printed_step(value: float) -> float:
    """The resolution `value` was printed with: 0.01 for 0.95, 1e-6 for 2.443962, 1 for 12."""
    scale = max(1.0, abs(value))
    for decimals in range(13):
        if abs(round(value, decimals) - value) <= 1e-12 * scale:
            return 10.0 ** -decimals
    return 1e-12 * scale


@dataclass(frozen=True)
class SequentialPolicy:
    direction: str
    min_effect: Amount = field(default_factory=lambda: Amount(value=0.0, relative=False))
    design: Design = field(default_factory=Design)
    control_every: int = 16  # serial sessions: re-measure the incumbent every this many runs
    drift: bool = True  # model a linear drift shared by all runs
    prior_dof: float = 10.0  # how many runs' worth the pooled σ weighs in each arm's own σ
    drift_prior: float = 0.035  # σ per run: the drift thought plausible before control runs say
    min_noise_dof: int = 10  # a keep needs σ measured with at least this many degrees of freedom
    simplicity: bool = True
    simplicity_budget: float = 1.0  # σ a simplification may cost against the best state
    simplicity_alpha: float = 0.1  # chance of keeping one that costs more, over its looks
    deterministic: bool = False  # identical repeats are the truth, not hidden noise

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "maximize" else -1.0

    def control_due(self, runs_since_control: int) -> bool:
        return self.control_every > 0 and runs_since_control >= self.control_every

    # --- the verdict ---------------------------------------------------------------------------

    def step(self, evidence: Evidence) -> Step:
        if not evidence.incumbent or not evidence.candidate:
            missing: list[Role] = []
            if not evidence.incumbent:
                missing.append("incumbent")
            if not evidence.candidate:
                missing.append("candidate")
            return Step("measure", "nothing measured yet", 0.0, -math.inf, math.inf, 0.0,
                        Noise(None, 0), runs=tuple(missing))
        noise_groups = [*evidence.other_groups, evidence.reference]
        model = Model.fit(evidence.candidate, evidence.incumbent, noise_groups,
                          sign=self.sign, drift=self.drift, prior_dof=self.prior_dof,
                          drift_prior=self.drift_prior)
        effect = model.effect()
        look = effect.candidate_runs
        min_effect = self.min_effect.resolve(fmean(o.value for o in evidence.incumbent))
        noise = Noise(effect.sigma, effect.noise_dof)
        counts = f"{look} vs {effect.incumbent_runs} runs"

        def step(action: Action, reason: str, *, threshold: float = math.nan,
                 runs: tuple[Role, ...] = (), simpler: bool = False, booked: float = 0.0,
                 width: float = math.nan) -> Step:
            half = width * effect.se if math.isfinite(effect.se) else math.inf
            if not math.isfinite(half):
                half = math.inf
            return Step(action, reason, effect.estimate,
                        effect.estimate - half, effect.estimate + half, threshold, noise,
                        runs=runs, simpler=simpler, booked=booked, look=look,
                        zero_noise=effect.zero_noise)

        if effect.zero_noise:
            return self._hidden_noise(evidence, effect, min_effect, step)
        if not effect.known:
            # One baseline run and one candidate run: nothing says how noisy a run is. Another
            # incumbent run measures it, and serves every later candidate too.
            return step("measure", f"improved by {effect.estimate:.4g} but the noise is unknown "
                        f"({counts}): re-measuring the incumbent", runs=("incumbent",))

        design = self.design
        info, finals = self._information(evidence)
        bound = design.boundary(info, finals)  # on the z scale
        t = (effect.estimate - min_effect) / effect.se
        z = t_to_z(t, effect.dof)
        boundary = z_to_t(bound, effect.dof)  # the same tail on this look's t
        threshold = min_effect + boundary * effect.se
        basis = (f"t = {t:.2f} on {effect.dof:.1f} dof ({counts}, σ={effect.sigma:.4g}, "
                 f"candidate σ={effect.candidate_sd:.4g})")
        drift = (f"; drift {effect.slope:+.3g}/s removed" if self.drift and effect.slope
                 else "")
        simplification = evidence.lines_removed > evidence.lines_added
        measured = effect.noise_dof >= self.min_noise_dof
        if z >= bound and not measured:
            # Clear so far, but σ rests on too few runs to trust a keep (three baseline runs are
            # two degrees of freedom): an interleaved pair measures both arms and the noise.
            more: tuple[Role, ...] = (("incumbent",) if design.last(look)
                                      else ("incumbent", "candidate"))
            return step("measure", f"promising: improvement {effect.estimate:.4g} ± "
                        f"{effect.se:.2g}, {basis}, but the noise rests on {effect.noise_dof} "
                        f"degrees of freedom (a keep needs {self.min_noise_dof}): measuring "
                        f"{' then '.join(more)}", threshold=threshold, runs=more, width=boundary)
        if z >= bound and self._frozen_amid_noise(evidence):
            return step("discard", f"its {look} runs, each with its own seed, all gave "
                        f"{evidence.candidate[0].value:.6g} while the other commits' repeats vary:"
                        " its output does not depend on the run (a seed fixed in the code, or a "
                        "value printed rather than measured), so it cannot be judged",
                        threshold=threshold)
        if z >= bound and not (simplification and self._went_past_futility(evidence, info, finals)):
            return step("keep", f"improved by {effect.estimate:.4g} ± {effect.se:.2g}: {basis} "
                        f"≥ {boundary:.2f}, look {look}'s bar for a {design.alpha:g} false-keep "
                        f"rate{drift}", threshold=threshold, width=boundary)
        simple = self._simplicity(evidence, effect, step, counts)
        if simple is not None:
            return simple
        futile = min(design.futility_bound(look, info[-1]), bound)
        if design.last(look) or z < futile:
            why = (f"not improved enough after {look} runs" if design.last(look) else
                   f"not promising (z {_z_text(z)} < {futile:.2f})")
            if effect.estimate < 0 and math.isfinite(boundary) and t < -boundary:
                why = "worse"
            bar = f"a keep needs {boundary:.2f}" if math.isfinite(boundary) else (
                f"no keep before {design.min_runs} runs")
            return step("discard", f"{why}: improvement {effect.estimate:.4g} ± {effect.se:.2g},"
                        f" {basis}; {bar}{drift}", threshold=threshold, width=boundary)
        runs = self._next_runs(model, bound)
        return step("measure", f"promising: improvement {effect.estimate:.4g} ± "
                    f"{effect.se:.2g}, {basis}: measuring {' then '.join(runs)}",
                    threshold=threshold, runs=runs, width=boundary)

    # --- the parts -----------------------------------------------------------------------------

    def _went_past_futility(self, evidence: Evidence, info: list[float], finals: list[float]) -> bool:
        """Did an earlier look fall below its futility bound? Only a simplification goes on
        then (to be judged as one), and the boundaries assume every other path stopped there,
        so such a candidate may no longer be kept on merit. Recomputed from the runs each look
        had (they are all in the evidence, with their start times)."""
        candidate = sorted(evidence.candidate, key=lambda o: o.at)
        min_effect = self.min_effect.resolve(fmean(o.value for o in evidence.incumbent))
        for j in range(1, len(candidate)):
            cut = candidate[j].at

            def before(runs: Sequence[Observation], cut: float = cut) -> list[Observation]:
                return [o for o in runs if o.at < cut]

            incumbent = before(evidence.incumbent)
            if not incumbent:
                continue
            past = Model.fit(candidate[:j], incumbent,
                             [before(g) for g in (*evidence.other_groups, evidence.reference)],
                             sign=self.sign, drift=self.drift, prior_dof=self.prior_dof,
                             drift_prior=self.drift_prior).effect()
            if not past.known or past.zero_noise or not math.isfinite(past.se):
                continue
            z = t_to_z((past.estimate - min_effect) / past.se, past.dof)
            bound = self.design.boundary(info[:j], finals[:j])
            if z < min(self.design.futility_bound(j, info[j - 1]), bound):
                return True
        return False

    def _information(self, evidence: Evidence) -> tuple[list[float], list[float]]:
        """The precision of each look so far (look j: the candidate's first j runs against the
        incumbent runs started before the j-th), and the precision the last look was expected
        to have as known at each look (max_runs candidate runs against those incumbent runs),
        in units of one run's variance. They place the looks for the spending function and
        correlate them (an equal per-run variance is assumed for this, never for the test)."""
        starts = sorted(o.at for o in evidence.incumbent)
        info: list[float] = []
        finals: list[float] = []
        for j, run in enumerate(sorted(evidence.candidate, key=lambda o: o.at), start=1):
            n = max(bisect_right(starts, run.at), 1)
            info.append(1.0 / (1.0 / j + 1.0 / n))
            finals.append(1.0 / (1.0 / self.design.max_runs + 1.0 / n))  # boundary() clamps
        return info, finals

    def _next_runs(self, model: Model, bound: float) -> tuple[Role, ...]:
        """The next runs: the candidate alone, or an interleaved (incumbent, candidate) pair,
        whichever shrinks the bar the estimate must clear most per run."""
        z = bound if math.isfinite(bound) else float(-special.ndtri(self.design.alpha))
        now = self._bar(model.effect(), z)
        alone = self._bar(model.with_run("candidate").effect(), z)
        pair = self._bar(model.with_run("incumbent").with_run("candidate").effect(), z)
        if (now - pair) / 2 > now - alone:
            return ("incumbent", "candidate")
        return ("candidate",)

    @staticmethod
    def _bar(effect: Effect, z: float) -> float:
        """The improvement a keep would need: the boundary on the effect's t, times its SE."""
        return z_to_t(z, effect.dof) * effect.se

    def _simplicity(self, evidence: Evidence, effect: Effect, step: _StepFn,
                    counts: str) -> Step | None:
        """Keep a simplification whose cost against the best measured state is, with confidence
        1 − simplicity_alpha over its looks, within the budget; or ask for another run while
        it plausibly is. Comparing with the best state (not the incumbent, which may itself be a
        simplification) is what stops the ratchet: costs add up against one fixed reference."""
        removed = evidence.lines_removed - evidence.lines_added
        look = effect.candidate_runs
        if not self.simplicity or removed <= 0:
            return None
        if evidence.reference:
            model = Model.fit(evidence.candidate, evidence.reference,
                              [*evidence.other_groups, evidence.incumbent], sign=self.sign,
                              drift=self.drift, prior_dof=self.prior_dof,
                              drift_prior=self.drift_prior)
            against = model.effect()
            where = f"the best measured state ({against.incumbent_runs} runs)"
        else:
            against, where = effect, "the incumbent, the best measured state"
        if not against.known or not math.isfinite(against.se):
            return None
        budget = max(self.min_effect.resolve(0.0),
                     self.simplicity_budget * (against.sigma or 0.0))
        looks = self.design.max_runs - self.design.min_runs + 1
        q = t_upper(self.simplicity_alpha / looks, against.dof)
        worst = q * against.se - against.estimate  # the cost's upper confidence bound
        cost = max(0.0, -against.estimate)
        if look >= self.design.min_runs and worst <= budget:
            return step("keep", f"simpler (−{removed} lines), and its cost against {where} is "
                        f"{cost:.4g} (at most {max(worst, 0.0):.4g}, within the budget "
                        f"{budget:.4g} = {self.simplicity_budget:g}σ); improvement over the "
                        f"incumbent {effect.estimate:.4g} ± {effect.se:.2g} ({counts})",
                        simpler=True, booked=cost, width=q)
        if not self.design.last(look) and cost <= budget:
            return step("measure", f"simpler (−{removed} lines), cost {cost:.4g} ± "
                        f"{against.se:.2g} against {where}, budget {budget:.4g}: measuring "
                        "again", runs=("candidate",), width=q)
        return None

    def _frozen_amid_noise(self, evidence: Evidence) -> bool:
        """The candidate's repeats are identical while another commit's repeats vary: in a
        session whose runs are noisy, a change cannot make its runs exact but by cutting the
        measurement out of them. A deterministic target is judged as it is."""
        values = {o.value for o in evidence.candidate}
        if self.deterministic or len(evidence.candidate) < 2 or len(values) != 1:
            return False
        groups = [g for g in (evidence.incumbent, *evidence.other_groups, evidence.reference)
                  if len(g) >= 2]
        sigma = _pooled_sd([[o.value for o in g] for g in groups])
        if not sigma:
            return False
        # A metric on a coarse grid (accuracy on 100 or on 97 examples) ties by chance: two runs
        # land on one value with probability about grid / (2√π σ). Only ties that chance cannot
        # explain (1 in 1000) say the measurement was cut out. The grid is read from the other
        # commits' values: the candidate's own would let a printed 0.9 claim a 0.1 grid.
        grid = _grid([o.value for g in groups for o in g])
        tie = grid / (2.0 * math.sqrt(math.pi) * sigma)
        return tie ** (len(evidence.candidate) - 1) < 1e-3

    def _hidden_noise(self, evidence: Evidence, effect: Effect, min_effect: float,
                      step: _StepFn) -> Step:
        gain = effect.estimate
        if self.deterministic or min_effect > 0:
            basis = ("a deterministic target (declared)" if self.deterministic
                     else "identical repeats: the noise is hidden, so only min_effect counts")
            if gain > min_effect:
                return step("keep", f"improved by {gain:.4g} > min_effect {min_effect:.4g}; σ = 0"
                            f" ({basis})", threshold=min_effect, width=0.0)
            removed = evidence.lines_removed - evidence.lines_added
            cost = max(0.0, -gain)
            if evidence.reference:
                best = fmean(o.value for o in evidence.reference)
                cost = max(0.0, self.sign * (best - fmean(o.value for o in evidence.candidate)))
            if self.simplicity and removed > 0 and cost <= min_effect:
                return step("keep", f"simpler (−{removed} lines) and within min_effect "
                            f"{min_effect:.4g}; σ = 0 ({basis})", threshold=min_effect,
                            simpler=True, booked=cost, width=0.0)
            return step("discard", f"improvement {gain:.4g} ≤ min_effect {min_effect:.4g}; σ = 0"
                        f" ({basis})", threshold=min_effect, width=0.0)
        return step("discard", f"σ = 0: every repeated run gave the same value, so the noise is "
                    f"hidden, not absent; a difference of {gain:.4g} cannot be told from a seed's "
                    f"luck, and min_effect is 0. To judge it, {HIDDEN_NOISE_HINT}",
                    threshold=math.inf, width=0.0)


def _z_text(z: float) -> str:
    """A z for a reason line: beyond ±8 the tail is 0 in double precision and t_to_z says
    ±inf, which reads as a broken number; say how far instead."""
    return f"{z:.2f}" if abs(z) < 8.0 else ("below -8" if z < 0 else "above 8")
