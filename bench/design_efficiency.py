"""How efficient are the sequential design's boundaries themselves, before anything is estimated?

The verdict (src/autoresearch/sequential.py) keeps a candidate when its standardised improvement
crosses the look's boundary from `spending.Design`, and drops it below the futility bound. In a
real session σ is estimated, each arm's own noise is allowed to differ, the incumbent is measured
alongside the candidates and a linear drift is modelled; each of those costs power or runs. This
script isolates the boundaries: σ known, the incumbent known exactly, no drift, so look m sees
z_m = (sum of m candidate runs) / √m with information m (in units of one run's 1/σ²).

It prints, for the design `[decision]` ships (or the one given by the options), the share of true
improvements kept and the candidate runs a verdict takes, under a true improvement of
`--effect` σ and under no effect, and the same for Wald's sequential probability ratio test
(SPRT) of "no effect" against "`--effect` σ", truncated the same way (a keep needs `min_runs`
runs, at most `max_runs`): once with Wald's bounds for the design's false-keep rate and power,
which are approximate once the test is truncated, and once with its two thresholds matched to
the design's rates on the same draws, scored on fresh ones. Untruncated, the SPRT minimises the
expected number of runs under both hypotheses among tests with its error rates (Wald &
Wolfowitz), so it is the yardstick: if the design is close to it,
the power a real session loses is lost to what has to be estimated, not to the boundaries. Then
both as in the mixed scenario of bench/decision_noise.py (a share of the candidates real).

Monte Carlo over `--candidates` simulated candidates per row (seeded); rates with 95 % Wilson
intervals.

Run:  python bench/design_efficiency.py [--effect 2] [--candidates 200000] [--seed 0]
      [--alpha 0.01] [--max-runs 10] [--target-effect 2] [--share 0.2]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rates import rate  # noqa: E402

from autoresearch.config import DecisionConfig  # noqa: E402
from autoresearch.policy import policy_for  # noqa: E402
from autoresearch.sequential import SequentialPolicy  # noqa: E402
from autoresearch.spending import Design  # noqa: E402


@dataclass(frozen=True)
class Bounds:
    """Per look m = 1 … max_runs: keep when z_m ≥ keep[m−1], drop when z_m < drop[m−1]."""

    keep: tuple[float, ...]
    drop: tuple[float, ...]


@dataclass(frozen=True)
class Outcome:
    kept: int
    candidates: int
    mean_runs: float


def design_bounds(design: Design) -> Bounds:
    looks = range(1, design.max_runs + 1)
    keep = tuple(design.boundary([float(j) for j in range(1, m + 1)], float(design.max_runs))
                 for m in looks)
    drop = tuple(design.futility_bound(m, float(m)) for m in looks)
    return Bounds(keep, drop)


def sprt_bounds(effect: float, alpha: float, beta: float, min_runs: int,
                max_runs: int) -> Bounds:
    """Wald's SPRT of δ = 0 against δ = effect (σ units, σ known) on the z scale: the log
    likelihood ratio after m runs is effect·S_m − m·effect²/2 with S_m = z_m·√m; keep at
    log((1 − β)/α), drop at log(β/(1 − α)). Truncated: no keep before min_runs, and at the last
    look whatever did not keep is dropped."""
    upper, lower = math.log((1.0 - beta) / alpha), math.log(beta / (1.0 - alpha))

    def z(llr: float, m: int) -> float:
        return (llr / effect + m * effect / 2.0) / math.sqrt(m)

    looks = range(1, max_runs + 1)
    keep = tuple(math.inf if m < min_runs else z(upper, m) for m in looks)
    drop = tuple(math.inf if m == max_runs else z(lower, m) for m in looks)
    return Bounds(keep, drop)


def runs_per_verdict(real: Outcome, null: Outcome, share: float) -> float:
    """Runs per verdict when a `share` of the candidates are real (the mixed scenario)."""
    return share * real.mean_runs + (1.0 - share) * null.mean_runs


def draws(effect: float, candidates: int, looks: int, rng: np.random.Generator) -> np.ndarray:
    """z_1 … z_looks of `candidates` simulated candidates whose true improvement is `effect`."""
    sums = np.cumsum(rng.normal(effect, 1.0, size=(candidates, looks)), axis=1)
    return np.asarray(sums / np.sqrt(np.arange(1, looks + 1)))


def simulate(bounds: Bounds, z: np.ndarray) -> Outcome:
    candidates, looks = z.shape
    open_ = np.ones(candidates, dtype=bool)
    kept = np.zeros(candidates, dtype=bool)
    runs = np.full(candidates, looks, dtype=float)
    for j in range(looks):
        keep = open_ & (z[:, j] >= bounds.keep[j])
        drop = open_ & ~keep & (z[:, j] < bounds.drop[j])
        kept |= keep
        runs[keep | drop] = j + 1
        open_ &= ~(keep | drop)
    return Outcome(int(kept.sum()), candidates, float(runs.mean()))


def matched_sprt(effect: float, design: Design, real: np.ndarray, null: np.ndarray,
                 target: tuple[Outcome, Outcome]) -> Bounds:
    """The truncated SPRT whose two thresholds give the same false-keep rate and the same power
    as the design on the same simulated candidates (Wald's bounds are only approximate once the
    test is truncated): bisection on each threshold in turn, each rate monotone in its own."""
    want_power = target[0].kept / target[0].candidates
    want_null = target[1].kept / target[1].candidates
    alpha, beta = design.alpha, 1.0 - want_power

    def bounds() -> Bounds:
        return sprt_bounds(effect, alpha, beta, design.min_runs, design.max_runs)

    for _ in range(6):
        lo, hi = 1e-5, 0.2  # a larger alpha (a lower keep threshold) keeps more null changes
        for _ in range(40):
            alpha = math.sqrt(lo * hi)
            rate_null = simulate(bounds(), null).kept / null.shape[0]
            lo, hi = (alpha, hi) if rate_null < want_null else (lo, alpha)
        lo, hi = 1e-4, 0.9  # a larger beta (a higher drop threshold) keeps fewer real ones
        for _ in range(40):
            beta = (lo + hi) / 2
            power = simulate(bounds(), real).kept / real.shape[0]
            lo, hi = (beta, hi) if power > want_power else (lo, beta)
    return bounds()


def report(name: str, bounds: Bounds, effect: float, share: float, real_z: np.ndarray,
           null_z: np.ndarray) -> tuple[Outcome, Outcome]:
    real, null = simulate(bounds, real_z), simulate(bounds, null_z)
    mixed = runs_per_verdict(real, null, share)
    print(f"  {name}")
    print(f"    true {effect:g} σ improvement kept {rate(real.kept, real.candidates)}, "
          f"{real.mean_runs:.2f} runs a verdict")
    print(f"    null change kept {rate(null.kept, null.candidates)}, {null.mean_runs:.2f} runs a "
          f"verdict")
    print(f"    mixed ({100 * share:g} % real): {mixed:.2f} runs per verdict")
    return real, null


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--effect", type=float, default=2.0, help="true improvement, in σ")
    ap.add_argument("--candidates", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--share", type=float, default=0.2, help="mixed: share of real candidates")
    ap.add_argument("--alpha", type=float, help="[decision] false_keep")
    ap.add_argument("--max-runs", type=int, help="[decision] max_runs")
    ap.add_argument("--target-effect", type=float, help="[decision] target_effect (σ)")
    args = ap.parse_args()
    if args.candidates < 1 or args.effect <= 0 or not 0.0 <= args.share <= 1.0:
        ap.error("need --candidates ≥ 1, --effect > 0 and 0 ≤ --share ≤ 1")
    updates = {k: v for k, v in {"false_keep": args.alpha, "max_runs": args.max_runs,
                                 "target_effect": args.target_effect}.items() if v is not None}
    policy = policy_for(DecisionConfig().model_copy(update=updates), "minimize")
    assert isinstance(policy, SequentialPolicy)
    design = policy.design
    rng = np.random.default_rng(args.seed)
    looks = design.max_runs
    real_z = draws(args.effect, args.candidates, looks, rng)
    null_z = draws(0.0, args.candidates, looks, rng)
    print(f"σ known, incumbent known, no drift; {args.candidates} candidates per row; {design}")
    ours = report("the design's boundaries (spending.Design)", design_bounds(design),
                  args.effect, args.share, real_z, null_z)
    beta = 1.0 - ours[0].kept / ours[0].candidates
    wald = sprt_bounds(args.effect, design.alpha, beta, design.min_runs, design.max_runs)
    report(f"Wald's SPRT, Wald's bounds for α = {design.alpha:g} and the design's power, same "
           "truncation", wald, args.effect, args.share, real_z, null_z)
    # The same rates on fresh draws, so the matched test is not scored on what it was fitted to.
    matched = matched_sprt(args.effect, design, real_z, null_z, ours)
    report("the SPRT with its thresholds matched to the design's false-keep rate and power "
           "(fresh draws)", matched, args.effect, args.share,
           draws(args.effect, args.candidates, looks, rng),
           draws(0.0, args.candidates, looks, rng))

if __name__ == "__main__":
    main()
