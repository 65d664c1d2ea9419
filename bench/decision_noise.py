"""False keeps and power of a verdict policy, per position in a session, on a simulated target.

Each simulated session measures a baseline (`--repeats` runs), then judges 30 candidates. The
policy is driven exactly as the engine's serial scheduler drives it (src/autoresearch/policy.py):
before a candidate's first run the incumbent is re-measured when `policy.control_due(runs since
the incumbent last ran)` says so; then `policy.step(evidence)` is asked until it concludes, and
the runs it asks for are run back to back in its order; a keep makes the candidate the incumbent
(its runs go with it); every repeated commit stays in the noise evidence.

The target: true value 1.0 (minimize), Gaussian noise σ = 0.01 per run. Options change the world:
a linear drift per run (in σ), candidates that only multiply the noise, a deterministic target
(every commit gives one fixed value), simplifications that cost a fixed amount each, time the
harness spends between candidates (`--gap`, mixed only: the drift model works in seconds, so a
harness slow next to its runs widens the time between a candidate and its incumbent's runs).

Scenarios (`--scenario`, default all):
  null        30 null candidates: false keeps per position, runs per verdict
  mixed       each candidate a real improvement of `--effect` σ with probability `--real-share`
              (0.2 unless given), else null:
              power per real proposal, false keeps in the first 5 and the 10 after a real keep,
              real improvements kept per 100 runs
  effects     every candidate a real 1, 2 or 3 σ improvement (the README's power table)
  drift       null candidates on a target drifting 0.05 σ per run towards "better"
  noisy       null candidates of which every third only triples the noise
  zero        a deterministic target (identical repeats); candidates change the value by ±0.5 σ
  simplify    every candidate deletes a line and is 1 σ worse: how far the ratchet falls
  headline    the verified headline: best vs baseline re-measured in interleaved pairs at the
              end; how often its interval covers the true difference (null and mixed sessions)

Run:  python bench/decision_noise.py [--sessions 400] [--policy sequential|classic|ratchet]
      [--scenario null ...] [--seed 0]
Design overrides, one setting at a time (docs/benchmarks.md, "What the settings trade"):
      [--alpha A] [--max-runs N] [--target-effect E] [--control-every N] [--drift-model false]
      [--drift-prior D] [--min-runs N] [--rho R] [--margin M] [--prior-dof N]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rates import rate  # noqa: E402

from autoresearch.config import Amount, DecisionConfig  # noqa: E402
from autoresearch.decision import (
    Noise,  # noqa: E402
    Rule,  # noqa: E402
)
from autoresearch.policy import ClassicPolicy, Evidence, Policy, Step, policy_for  # noqa: E402
from autoresearch.policy_sim import (  # noqa: E402
    SIGMA,
    Candidate,
    Session,
    run_session,
    verify_headline,
)
from autoresearch.sequential import SequentialPolicy  # noqa: E402

POSITIONS = 30


# --- scenarios -----------------------------------------------------------------------------------


def null(_: int, __: random.Random) -> Candidate:
    return Candidate(0.0)


def every(effect: float) -> Callable[[int, random.Random], Candidate]:
    return lambda _, __: Candidate(effect)


def mixed(effect: float, share: float = 0.2) -> Callable[[int, random.Random], Candidate]:
    return lambda _, rng: Candidate(effect if rng.random() < share else 0.0)


def noisy(position: int, _: random.Random) -> Candidate:
    return Candidate(0.0, noise=3.0 if position % 3 == 0 else 1.0)


def zero_noise(_: int, rng: random.Random) -> Candidate:
    return Candidate(rng.choice((-0.5, 0.5)))


def deletion(_: int, __: random.Random) -> Candidate:
    return Candidate(-1.0, lines_added=0, lines_removed=1)


@dataclass
class Tally:
    kept: int = 0
    total: int = 0

    def add(self, kept: bool) -> None:
        self.kept += kept
        self.total += 1

    @property
    def pct(self) -> float:
        return 100.0 * self.kept / self.total if self.total else math.nan

    def __str__(self) -> str:
        return rate(self.kept, self.total, aligned=True)


def sessions(policy: Policy, propose: Callable[[int, random.Random], Candidate], n: int,
             rng: random.Random, **world: object) -> Iterator[Session]:
    for _ in range(n):
        yield run_session(policy, propose, rng, **world)  # type: ignore[arg-type]


def runs_per_verdict(done: list[Session]) -> float:
    return statistics.fmean(v.runs for s in done for v in s.verdicts)


def incumbent_error(done: list[Session]) -> str:
    """How good the incumbent looked, on average, when each candidate's first run was made,
    against its truth: the incumbent is measured more while it looks bad (a promising
    candidate's pairs) and a kept candidate brings its lucky runs, so it errs towards good."""
    errors = [v.incumbent_error for s in done for v in s.verdicts if v.incumbent_error is not None]
    return (f"the incumbent's mean at a candidate's first run, minus its truth: "
            f"{statistics.fmean(errors):+.3f}σ (negative: too good; {len(errors)} candidates)")


def null_report(policy: Policy, n: int, rng: random.Random, label: str = "null",
                **world: object) -> list[Session]:
    done = list(sessions(policy, null, n, rng, **world))
    by_pos = [Tally() for _ in range(POSITIONS)]
    for s in done:
        for v in s.verdicts:
            by_pos[v.position - 1].add(v.kept)
    overall = Tally(sum(t.kept for t in by_pos), sum(t.total for t in by_pos))
    print(f"  {label}: false keeps per candidate {overall}; runs per verdict "
          f"{runs_per_verdict(done):.2f}")
    buckets = []
    for start in range(0, POSITIONS, 5):
        chunk = by_pos[start:start + 5]
        buckets.append(f"{start + 1}-{start + 5}: "
                       f"{100.0 * sum(t.kept for t in chunk) / sum(t.total for t in chunk):.2f} %")
    worst = max(range(POSITIONS), key=lambda i: by_pos[i].pct)
    print(f"  {label}: by position {'; '.join(buckets)}; worst single position {worst + 1}: "
          f"{by_pos[worst]}")
    with_keep = sum(1 for s in done if any(v.kept for v in s.verdicts))
    print(f"  {label}: sessions with a false keep {rate(with_keep, n, aligned=True)}")
    if not world.get("drift"):
        print(f"  {label}: {incumbent_error(done)}")
    return done


def mixed_report(policy: Policy, effect: float, n: int, rng: random.Random,
                 share: float = 0.2, **world: object) -> list[Session]:
    done = list(sessions(policy, mixed(effect, share), n, rng, **world))
    power, first5, after, nulls = Tally(), Tally(), Tally(), Tally()
    real_runs: list[int] = []
    null_runs: list[int] = []
    lost = {"the first look": 0, "a later look": 0, "the last look": 0}
    design = getattr(policy, "design", None)
    for s in done:
        for v in s.verdicts:
            if v.candidate.real:
                power.add(v.kept)
                real_runs.append(v.runs)
                if not v.kept:
                    last = design is not None and design.last(v.step.look)
                    lost["the last look" if last else
                         "the first look" if v.step.look <= 1 else "a later look"] += 1
                continue
            null_runs.append(v.runs)
            nulls.add(v.kept)
            if v.position <= 5:
                first5.add(v.kept)
            if v.after_real_keep is not None and v.after_real_keep <= 10:
                after.add(v.kept)
    print(f"  mixed {effect:g}σ ({100 * share:g} % real): power per real proposal {power}")
    where = "; ".join(f"{100.0 * k / power.total:.1f} % at {at}" for at, k in lost.items())
    print(f"  mixed {effect:g}σ: real ones not kept: {where}")
    print(f"  mixed {effect:g}σ: false keeps {nulls}; first 5: {first5}; the 10 after a real "
          f"keep: {after}")
    print(f"  mixed {effect:g}σ: runs per verdict {runs_per_verdict(done):.2f} (real "
          f"{statistics.fmean(real_runs):.2f}, null {statistics.fmean(null_runs):.2f})")
    # What a user gets for the machine time: real improvements kept per 100 verify runs (the
    # runs of every verdict, control runs included). A setting with more power per proposal
    # can still find fewer improvements in a night if it spends more runs on each verdict.
    runs = sum(v.runs for s in done for v in s.verdicts)
    found = sum(1 for s in done for v in s.verdicts if v.candidate.real and v.kept)
    print(f"  mixed {effect:g}σ: real improvements kept per 100 runs "
          f"{100.0 * found / max(runs, 1):.2f} ({found} in {runs} runs)")
    print(f"  mixed {effect:g}σ: {incumbent_error(done)}")
    return done


def effects_report(policy: Policy, n: int, rng: random.Random) -> None:
    for effect in (1.0, 2.0, 3.0):
        done = list(sessions(policy, every(effect), n, rng))
        kept = Tally()
        for s in done:
            for v in s.verdicts:
                kept.add(v.kept)
        print(f"  every candidate {effect:g}σ better: kept {kept}; runs per verdict "
              f"{runs_per_verdict(done):.2f}")


def noisy_report(policy: Policy, n: int, rng: random.Random) -> None:
    done = list(sessions(policy, noisy, n, rng))
    plain, loud = Tally(), Tally()
    for s in done:
        for v in s.verdicts:
            (loud if v.candidate.noise > 1 else plain).add(v.kept)
    print(f"  noise-only knobs (σ × 3, no effect): kept {loud}; plain nulls beside them: {plain}")


def zero_report(policy: Policy, n: int, rng: random.Random) -> None:
    done = list(sessions(policy, zero_noise, n, rng, deterministic=True))
    kept, said = Tally(), Tally()
    for s in done:
        for v in s.verdicts:
            kept.add(v.kept)
            said.add(v.step.zero_noise)
    print(f"  identical repeats, candidates ±0.5σ of seed luck: kept {kept}; steps that said "
          f"σ = 0: {said}")


def simplify_report(policy: Policy, n: int, rng: random.Random) -> None:
    done = list(sessions(policy, deletion, n, rng))
    kept = sorted(sum(v.kept for v in s.verdicts) for s in done)
    worse = sorted(-s.true_gain for s in done)
    p90 = worse[int(0.9 * (len(worse) - 1))]
    print(f"  30 deletions, each 1σ worse: kept per session median {statistics.median(kept):.0f}"
          f" (max {kept[-1]}); end state worse than the baseline by median "
          f"{statistics.median(worse):.1f}σ, 90th percentile {p90:.1f}σ, max {worse[-1]:.1f}σ")


def headline_report(policy: Policy, n: int, rng: random.Random) -> None:
    for label, propose in (("null", null), ("mixed 3σ", mixed(3.0))):
        done = list(sessions(policy, propose, n, rng))
        covered, changed, pairs, claimed_off = 0, 0, [], []
        for s in done:
            claimed = sum(v.step.improvement for v in s.verdicts if v.kept) / SIGMA
            sigma = s.verdicts[-1].step.noise.sigma
            ok, p, _, _ = verify_headline(s, claimed, sigma)
            covered += ok
            if p:
                changed += 1
                pairs.append(p)
                claimed_off.append(claimed - s.true_gain)
        bias = f"{statistics.fmean(claimed_off):+.2f}σ" if claimed_off else "n/a"
        print(f"  headline, {label} sessions: interval covers the true best-vs-baseline in "
              f"{rate(covered, n, aligned=True)} (sessions that changed the code: {changed}, "
              f"median {statistics.median(pairs) if pairs else 0:.0f} pairs); claimed minus true "
              f"gain before verification: {bias}")


@dataclass(frozen=True)
class RatchetPolicy:
    """Karpathy's ratchet, for comparison: one run, kept when it beats the incumbent's value."""

    def control_due(self, runs_since_control: int) -> bool:
        return False

    def step(self, evidence: Evidence) -> Step:
        if not evidence.candidate:
            return Step("measure", "", 0.0, 0.0, 0.0, 0.0, Noise(None, 0), runs=("candidate",))
        gain = (statistics.fmean(o.value for o in evidence.incumbent)
                - evidence.candidate[0].value)
        return Step("keep" if gain > 0 else "discard", "", gain, gain, gain, 0.0, Noise(None, 0))


def classic() -> Policy:
    return ClassicPolicy(Rule("minimize", Amount(value=0.0, relative=False)), max_pairs=4)


def build(args: argparse.Namespace) -> Policy:
    if args.policy == "classic":
        return classic()
    if args.policy == "ratchet":
        return RatchetPolicy()
    updates = {k: v for k, v in {
        "false_keep": args.alpha, "max_runs": args.max_runs, "control_every": args.control_every,
        "drift": args.drift_model, "target_effect": args.target_effect,
    }.items() if v is not None}
    policy = policy_for(DecisionConfig().model_copy(update=updates), "minimize")
    assert isinstance(policy, SequentialPolicy)
    if args.prior_dof is not None:
        policy = replace(policy, prior_dof=args.prior_dof)
    if args.drift_prior is not None:
        policy = replace(policy, drift_prior=args.drift_prior)
    design = {k: v for k, v in {"rho": args.rho, "margin": args.margin,
                                "min_runs": args.min_runs}.items() if v is not None}
    return replace(policy, design=replace(policy.design, **design)) if design else policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sessions", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gap", type=float, default=0.0, help=(
        "mixed: clock time between a candidate's commit and its first run, in runs (the "
        "harness's own work; about 0.5 on bench/toy_target.py, 0 on a real workload)"))
    ap.add_argument("--free-incumbent-runs", type=int, default=0, help=(
        "null and mixed, an oracle for diagnosis: this many extra incumbent runs after each keep "
        "and on the baseline, not counted in runs per verdict (the incumbent nearly known)"))
    ap.add_argument("--policy", choices=("sequential", "classic", "ratchet"),
                    default="sequential")
    ap.add_argument("--scenario", action="append", choices=(
        "null", "mixed", "effects", "drift", "noisy", "zero", "simplify", "headline"))
    ap.add_argument("--effect", type=float, action="append", help="mixed: effect sizes (σ)")
    ap.add_argument("--real-share", type=float, default=0.2, help=(
        "mixed: the chance that a candidate is a real improvement (0.2: the issue's benchmark; "
        "Karpathy's two-day run kept about 3 %%)"))
    tune = ap.add_argument_group("design overrides (sequential policy)")
    tune.add_argument("--alpha", type=float, help="[decision] false_keep")
    tune.add_argument("--max-runs", type=int, help="[decision] max_runs")
    tune.add_argument("--target-effect", type=float, help="[decision] target_effect (σ)")
    tune.add_argument("--control-every", type=int, help="[decision] control_every")
    tune.add_argument("--drift-model", type=lambda s: s.lower() in ("1", "true", "yes"),
                      help="[decision] drift (true/false)")
    tune.add_argument("--min-runs", type=int)
    tune.add_argument("--rho", type=float)
    tune.add_argument("--margin", type=float, help="[decision] futility_margin")
    tune.add_argument("--prior-dof", type=float)
    tune.add_argument("--drift-prior", type=float, help="[decision] drift_prior: drift thought plausible, σ per run")
    args = ap.parse_args()
    if not 0.0 < args.real_share <= 1.0:
        ap.error(f"--real-share {args.real_share:g}: a chance, give a number in (0, 1]")
    policy = build(args)
    rng = random.Random(args.seed)
    n = args.sessions
    chosen = args.scenario or ["null", "mixed", "effects", "drift", "noisy", "zero", "simplify",
                               "headline"]
    print(f"{n} sessions × {POSITIONS} candidates, σ = {SIGMA}, baseline repeats 3, policy: "
          f"{policy}")
    started = time.monotonic()
    free = args.free_incumbent_runs
    if "null" in chosen:
        null_report(policy, n, rng, free_runs=free)
    if "mixed" in chosen:
        for effect in args.effect or [2.0, 3.0]:
            mixed_report(policy, effect, n, rng, args.real_share, gap=args.gap, free_runs=free)
    if "effects" in chosen:
        effects_report(policy, n, rng)
    if "drift" in chosen:
        null_report(policy, n, rng, label="drift 0.05σ/run", drift=0.05)
    if "noisy" in chosen:
        noisy_report(policy, n, rng)
    if "zero" in chosen:
        zero_report(policy, n, rng)
    if "simplify" in chosen:
        simplify_report(policy, n, rng)
    if "headline" in chosen:
        headline_report(policy, n, rng)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
