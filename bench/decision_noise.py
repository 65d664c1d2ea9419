"""How often does each keep/discard rule keep a change that does nothing? And a real one?

A simulated session on a target with pure Gaussian noise (σ = 0.01 by default): a baseline, then
30 candidates. For null changes the true value never moves, so every keep is a false keep; for real
changes each candidate truly improves by `effect` σ. Rules compared:

- naive:   one run, keep if better than the best value seen so far (Karpathy's ratchet)
- ours:    autoresearch.decision.decide with the default rule (k = 2, confirmation up to 4 pairs)

Run:  python bench/decision_noise.py [--sessions 400] [--sigma 0.01]
Prints false-keep rates, power and the mean number of runs per experiment.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from autoresearch.config import Amount  # noqa: E402
from autoresearch.decision import Rule, decide  # noqa: E402


def naive_session(rng: random.Random, sigma: float, n: int, effect: float) -> tuple[int, float]:
    true = 1.0
    best = true + rng.gauss(0, sigma)
    keeps = 0
    for _ in range(n):
        cand_true = true - effect * sigma
        value = cand_true + rng.gauss(0, sigma)
        if value < best:
            keeps += 1
            best = value
            true = cand_true
    return keeps, 1.0


def our_session(
    rng: random.Random, sigma: float, n: int, effect: float, repeats: int, max_pairs: int
) -> tuple[int, float]:
    rule = Rule(direction="minimize", min_effect=Amount(value=0.0, relative=False))
    true = 1.0
    incumbent = [true + rng.gauss(0, sigma) for _ in range(repeats)]
    history: list[list[float]] = []
    keeps = 0
    runs = 0
    for _ in range(n):
        cand_true = true - effect * sigma
        candidate = [cand_true + rng.gauss(0, sigma)]
        inc_true = true

        def measure(role: str, c: float = cand_true, i: float = inc_true) -> float:
            return (c if role == "candidate" else i) + rng.gauss(0, sigma)

        verdict, pairs = decide(candidate, incumbent, history, rule, measure, max_pairs=max_pairs)
        runs += 1 + 2 * pairs
        if verdict.outcome == "keep":
            keeps += 1
            history.append(incumbent)
            incumbent = candidate
            true = cand_true
        else:
            history.append(candidate)
    return keeps, runs / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sessions", type=int, default=400)
    ap.add_argument("--candidates", type=int, default=30)
    ap.add_argument("--sigma", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-pairs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    n = args.candidates
    print(f"{args.sessions} sessions × {n} candidates, σ = {args.sigma}, baseline repeats "
          f"{args.repeats}, confirmation pairs ≤ {args.max_pairs}")
    print(f"{'effect':>8} {'rule':>6} {'kept %':>8} {'median kept/session':>20} {'runs/exp':>9}")
    for effect in (0.0, 1.0, 2.0, 3.0):
        for name in ("naive", "ours"):
            kept: list[int] = []
            cost: list[float] = []
            for _ in range(args.sessions):
                if name == "naive":
                    k, r = naive_session(rng, args.sigma, n, effect)
                else:
                    k, r = our_session(rng, args.sigma, n, effect, args.repeats, args.max_pairs)
                kept.append(k)
                cost.append(r)
            rate = 100.0 * sum(kept) / (args.sessions * n)
            print(f"{effect:>7.1f}σ {name:>6} {rate:>7.1f}% {statistics.median(kept):>20.1f} "
                  f"{statistics.fmean(cost):>9.2f}")


if __name__ == "__main__":
    main()
