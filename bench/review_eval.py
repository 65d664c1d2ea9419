"""Evaluation of `autoresearch review`: precision and recall of red findings, time per review.

The evaluation set (bench/review_eval/) builds real git repositories: planted bugs of every class
the review must catch (off-by-one, swallowed exception, shell injection, SQL string
concatenation, resource leak, race on a shared file, a line an earlier fix removed coming back),
two of each, and clean refactors that must produce no red finding (one of them the 500-line
diff of the timing target). Two configurations review every repository:

  offline   ruff + bandit + mypy + history, no model
  full      offline + the LLM angles against the fake model server, answered by a simulated
            model (bench/review_eval/sim_model.py) that reads the prompt, notices generic
            patterns, hallucinates in half of its passes and miscounts lines; its verifier errs
            on 10 % of verdicts. It measures the pipeline (anchoring, verification, dedup,
            ranking), not the quality of any real model.

A red finding is correct when it is on a planted bug's lines with a category that names the
bug's class; recall counts the planted bugs that got at least one correct red finding.

Run:  python bench/review_eval.py [--repeat 3] [--seeds 3] [--verifier-error-rate 0.1]
Target: offline review of the 500-line diff under 10 s; zero red findings on clean refactors.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.review_eval.bug_cases import BUG_CASES  # noqa: E402
from bench.review_eval.clean_cases import CLEAN_CASES  # noqa: E402
from bench.review_eval.repo import Built  # noqa: E402
from bench.review_eval.sim_model import SimulatedModel  # noqa: E402
from tests.llm.fake_server import FakeModelServer  # noqa: E402

from autoresearch.review.change import from_range  # noqa: E402
from autoresearch.review.context import ReviewSettings  # noqa: E402
from autoresearch.review.llm_setup import resolve_llm  # noqa: E402
from autoresearch.review.model import Review  # noqa: E402
from autoresearch.review.pipeline import run_review  # noqa: E402

TIMING_CASE = "clean/500-line-module"
TYPED_TIMING_CASE = "clean/500-line-module-typed"


@dataclass
class Score:
    bugs: int = 0
    detected: int = 0
    reds: int = 0
    correct_reds: int = 0
    clean_reds: int = 0
    yellows: int = 0
    per_class: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    dropped_quote: int = 0
    rejected: int = 0
    rejected_real: int = 0  # verifier rejections that were on a planted bug
    usd: float = 0.0
    calls: int = 0
    misses: list[str] = field(default_factory=list)
    false_reds: list[str] = field(default_factory=list)

    def add(self, name: str, built: Built, review: Review) -> None:
        reds = [f for f in review.findings if f.colour == "red"]
        self.reds += len(reds)
        self.yellows += review.count("yellow")
        self.dropped_quote += sum(1 for d in review.dropped if d.stage == "quote")
        self.rejected += sum(1 for d in review.dropped if d.stage == "model")
        for d in review.dropped:
            if d.stage == "model" and any(
                    d.finding.path == bug.path and d.finding.category in bug.categories
                    and built.locate(bug)[0] <= d.finding.end_line
                    and d.finding.start_line <= built.locate(bug)[1] for bug in built.bugs):
                self.rejected_real += 1
        self.usd += review.cost.usd
        self.calls += review.cost.calls
        matched: set[int] = set()
        for bug in built.bugs:
            start, end = built.locate(bug)
            hits = [i for i, f in enumerate(reds) if f.path == bug.path
                    and f.start_line <= end and start <= f.end_line
                    and f.category in bug.categories]
            matched |= set(hits)
            self.bugs += 1
            self.per_class[bug.bug_class][1] += 1
            if hits:
                self.detected += 1
                self.per_class[bug.bug_class][0] += 1
            else:
                self.misses.append(name)
        self.correct_reds += len(matched)
        for i, f in enumerate(reds):
            if i not in matched:
                self.false_reds.append(f"{name}: {f.location} {f.category} {f.title[:60]}")
                if not built.bugs:
                    self.clean_reds += 1

    @property
    def precision(self) -> float:
        return self.correct_reds / self.reds if self.reds else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.bugs if self.bugs else 1.0


def settings_for(server: FakeModelServer | None) -> ReviewSettings:
    if server is None:
        return ReviewSettings(llm=None, llm_note="offline")
    options = {"provider": "anthropic", "base_url": server.anthropic_url,
               "model": "claude-sonnet-5-5", "timeout_seconds": 30, "max_retries": 1}
    llm, note = resolve_llm(options, "auto", {}, {}, when_unset="auto")
    return ReviewSettings(llm=llm, llm_note=note, max_usd=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="reviews per repository (timing)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="full-pipeline runs, each with another simulated-model seed")
    parser.add_argument("--verifier-error-rate", type=float, default=0.1,
                        help="share of the simulated verifier's verdicts that are wrong")
    parser.add_argument("--hallucination-rate", type=float, default=0.5,
                        help="share of the simulated reviewer's passes with a made-up finding")
    parser.add_argument("--only", action="append", default=[], metavar="CASE",
                        help=f"review only this case (repeatable), e.g. --only {TIMING_CASE}")
    args = parser.parse_args()
    cases = {**BUG_CASES, **CLEAN_CASES}
    unknown = [name for name in args.only if name not in cases]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; the cases are: {', '.join(cases)}")
    if args.only:
        cases = {name: cases[name] for name in args.only}
    with tempfile.TemporaryDirectory(prefix="review-eval-") as tmp:
        built = {name: build(Path(tmp) / name.replace("/", "_")) for name, build in cases.items()}
        scores = {"offline": evaluate(built, None, args.repeat)}
        for seed in range(args.seeds):
            model = SimulatedModel(seed=seed, hallucination_rate=args.hallucination_rate,
                                   verifier_error_rate=args.verifier_error_rate)
            with FakeModelServer(handler=model) as server:
                scores[f"full, seed {seed}"] = evaluate(built, server, args.repeat)
    report(scores, args, sum(1 for n in cases if n in BUG_CASES),
           sum(1 for n in cases if n in CLEAN_CASES))


def evaluate(built: dict[str, Built], server: FakeModelServer | None, repeat: int) -> Score:
    score = Score()
    for name, repo in built.items():
        for run in range(repeat):
            change = from_range(repo.path, "main", "feature")
            start = time.perf_counter()
            review = run_review(change, settings_for(server))
            score.seconds[name].append(time.perf_counter() - start)
            if run == 0:
                score.add(name, repo, review)
    return score


def report(scores: dict[str, Score], args: argparse.Namespace, bugs: int, clean: int) -> None:
    load = os.getloadavg()[0]
    print(f"review evaluation: {bugs} repositories with a planted bug, {clean} clean refactors; "
          f"{args.repeat} review(s) each; load average {load:.1f} on {os.cpu_count()} CPUs; "
          f"simulated model: hallucinations in {args.hallucination_rate:.0%} of passes, "
          f"{args.verifier_error_rate:.0%} wrong verdicts")
    print()
    print(f"{'configuration':<16}{'precision':>10}{'recall':>9}{'red':>6}{'correct':>9}"
          f"{'red on clean':>14}{'yellow':>8}{'median s':>10}{'500-line s':>12}")
    for config, s in scores.items():
        per_review = [statistics.median(v) for v in s.seconds.values()]
        timing = s.seconds.get(TIMING_CASE)
        print(f"{config:<16}{s.precision:>10.2f}{s.recall:>9.2f}{s.reds:>6}{s.correct_reds:>9}"
              f"{s.clean_reds:>14}{s.yellows:>8}{statistics.median(per_review):>10.2f}"
              + (f"{statistics.median(timing):>12.2f}" if timing else f"{'-':>12}"))
    for case, what in ((TIMING_CASE, "500-line diff"), (TYPED_TIMING_CASE,
                                                        "500-line diff, typed project (mypy)")):
        if case in scores["offline"].seconds:
            runs = scores["offline"].seconds[case]
            print(f"offline review of the {what}: median {statistics.median(runs):.2f} s "
                  f"(runs: {', '.join(f'{t:.2f}' for t in runs)})")
    print()
    classes = sorted({c for s in scores.values() for c in s.per_class})
    print(f"{'recall by class':<22}" + "".join(f"{c:>16}" for c in scores))
    for c in classes:
        print(f"{c:<22}" + "".join(
            f"{s.per_class[c][0]:>13}/{s.per_class[c][1]:<2}" for s in scores.values()))
    print()
    for config, s in scores.items():
        if s.calls:
            print(f"{config}: {s.calls} model calls, ${s.usd:.4f} at claude-sonnet-5-5 prices; "
                  f"LLM findings dropped by the quote check: {s.dropped_quote}, rejected by the "
                  f"verifier: {s.rejected} ({s.rejected_real} of them on a planted bug)")
    for config, s in scores.items():
        if s.misses:
            print(f"{config} missed: {', '.join(s.misses)}")
        for line in s.false_reds:
            print(f"{config} red not matching a planted bug: {line}")


if __name__ == "__main__":
    main()
