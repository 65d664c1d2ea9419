"""The session's headline, verified: best vs baseline, re-measured side by side at the end.

The best of a session was selected among many candidates, so the runs that selected it are the
lucky ones: its own numbers overstate it. When a session ends having kept something, the best
(the incumbent) and the baseline are measured again in interleaved pairs (baseline, then best,
back to back in one slot, so slow drift cancels in each difference), and the paired t interval
on the differences (`policy.paired_interval`) is recorded as the session's headline: an event
`headline` with every pair and the interval. `status`, `report` and the end of `run` show it.

Bounded: nothing is measured when nothing was kept, or when a headline for the same best and
baseline trees is already recorded (a resumed session that ended where it was); the number of
pairs is `[decision] headline_pairs` (0 turns it off; "auto" asks `policy.headline_pairs` for
enough pairs that the interval's half-width is about half the claimed gain, 3 to 8, given the
session's σ). With several slots the pairs are spread over them. Within a slot the order of the
two arms alternates (baseline first, then best first), so a linear drift cancels over every two
pairs instead of biasing each difference by one run's worth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING, Any

from autoresearch.history import run_seed
from autoresearch.ledger import ExperimentRow, Ledger
from autoresearch.policy import Interval, headline_pairs, paired_interval
from autoresearch.statuses import happened

if TYPE_CHECKING:  # the views read headlines without loading the engine
    from autoresearch.session import Session
    from autoresearch.trial import Program, Trial

CONFIDENCE = 0.95
BEST, BASELINE = "headline", "headline-baseline"  # the roles of the re-measured runs
HEADLINE_SEEDS = "headline"  # the seeds of the pairs: run_seed(f"{tag}/headline", pair)


@dataclass(frozen=True)
class Headline:
    """A recorded verification of best vs baseline (improvement: positive is better)."""

    best_id: str
    best_commit: str
    baseline_commit: str
    pairs: list[tuple[float, float]]  # (best, baseline) objective of each pair, in order
    interval: Interval | None  # None when no pair could be measured
    failures: list[str]

    def describe(self, metric: str, *, deterministic: bool = False) -> str:
        """The headline in one sentence; `deterministic`: the config declares identical
        repeats the truth (`[decision] deterministic`), so identical pairs are not hidden noise."""
        iv = self.interval
        if iv is None:
            return f"headline not verified: {'; '.join(self.failures) or 'no pair measured'}"
        # Worse than the baseline all through: the keep rested on a measurement that depends
        # on more than the code (luck with few runs; with several workers, another slot's run
        # writing the same path or port). Said, rather than left beside the claimed gain.
        worse = ("; worse than the baseline when re-measured: the measurement it was kept on "
                 "did not reproduce (too few runs to see luck, or with several workers a verify "
                 "command that shares a path, port or lock between slots: AUTORESEARCH_SLOT)"
                 if iv.high < 0 else "")
        if iv.zero_noise:
            return (f"headline re-measured over {iv.pairs} pairs: best vs baseline "
                    f"{iv.estimate:+.4g} {metric} in every pair; "
                    f"{why_no_spread(self.pairs, deterministic=deterministic)}" + worse)
        span = ("" if not math.isfinite(iv.low) else
                f" [{iv.low:+.4g}, {iv.high:+.4g}] at {iv.confidence:.0%}")
        covers = " (covers 0: not shown to be better)" if iv.covers(0.0) else ""
        cut = (f"; stopped after {iv.pairs} pair{'s' * (iv.pairs != 1)}: "
               + "; ".join(self.failures) if self.failures else "")
        return (f"headline re-measured over {iv.pairs} interleaved pair{'s' * (iv.pairs != 1)}: "
                f"best vs baseline improves {metric} by {iv.estimate:+.4g}{span}{covers}{worse}"
                f"{cut}")

    def data(self) -> dict[str, Any]:
        iv = self.interval
        return {"best": self.best_id, "best_commit": self.best_commit,
                "baseline_commit": self.baseline_commit,
                "pairs": [list(p) for p in self.pairs], "failures": self.failures,
                "estimate": iv.estimate if iv else None,
                "low": iv.low if iv and math.isfinite(iv.low) else None,
                "high": iv.high if iv and math.isfinite(iv.high) else None,
                "confidence": iv.confidence if iv else None}


def runs_varied(pairs: Sequence[tuple[float, float]]) -> bool:
    """Whether either side's runs differed from pair to pair (beyond float rounding)."""
    def varied(values: list[float]) -> bool:
        finite = [v for v in values if math.isfinite(v)]
        return bool(finite) and max(finite) - min(finite) > 1e-12 * max(map(abs, finite))

    return varied([a for a, _ in pairs]) or varied([b for _, b in pairs])


def why_no_spread(pairs: Sequence[tuple[float, float]], *, shared: str = "each pair's two runs",
                  measured: str = "the pairs", what: str = "gain",
                  deterministic: bool = False) -> str:
    """Why every pair gave the same difference: identical runs (a fixed seed hides the noise,
    unless the config declares the target deterministic) or runs that varied together (the
    pair's shared seed drew the same noise for both). `finalize --verify` says it of its rounds:
    `shared`, `measured` and `what` name them."""
    if runs_varied(pairs):
        return (f"the runs varied, but {shared} shared a seed and the noise it drew cancelled in "
                f"their difference, so {measured} cannot show how far the {what} would move "
                "under noise that does not cancel")
    if deterministic:
        return ("the runs were identical, as a deterministic target's are ([decision] "
                "deterministic = true declares them the truth)")
    return ("the runs were identical, so the noise is hidden, not zero (make the target draw "
            "its randomness from the seed each run is given: {seed}, or AUTORESEARCH_SEED)")


def pairs_wanted(s: Session) -> int:
    """`[decision] headline_pairs`, or for "auto" as many as the claimed gain and σ call for."""
    setting = s.config.decision.headline_pairs
    if setting != "auto":
        return setting
    history = s.history
    best, base = history.incumbent, history.baseline
    claimed = math.nan
    if best is not None and base is not None and best.commit_sha is not None:
        now, then = history.objective_runs(best.commit_sha), history.objective_runs(
            s.row.base_commit)
        if now and then:
            claimed = s.config.metric.sign * (sum(now) / len(now) - sum(then) / len(then))
    return headline_pairs(claimed, history.noise().sigma)


def run_seconds(s: Session) -> float:
    """A run's wall time, as the session's last experiments' successful runs took (median);
    0 when none finished yet."""
    runs = s.history.runs
    walls = [r.finished_at - r.started_at
             for e in s.history.experiments[-10:]
             for r in runs.get(e.id, ())[-4:]
             if r.status == "ok" and r.finished_at is not None]
    return median(walls) if walls else 0.0


def seconds_for(s: Session, pairs: int, slots: int) -> float:
    """How long `pairs` headline pairs take, spread over `slots`: two runs a pair."""
    if pairs <= 0:
        return 0.0
    return 2 * math.ceil(pairs / max(1, slots)) * run_seconds(s)


def reserve_seconds(s: Session, slots: int) -> float:
    """The time to keep before a deadline so that the headline's verification fits in it, were
    the session to end now (0 when there is nothing to verify)."""
    return 0.0 if not_needed(s) else seconds_for(s, pairs_wanted(s), slots)


def pairs_that_fit(s: Session, seconds: float, slots: int) -> int:
    """The most headline pairs that end within `seconds`, spread over `slots`."""
    per_run = run_seconds(s)
    if per_run <= 0:
        return pairs_wanted(s)
    rounds = int(max(0.0, seconds) // (2 * per_run))
    return rounds * max(1, slots)


def to_verify(s: Session) -> ExperimentRow | None:
    """The best to verify now, or None (see `not_needed`)."""
    return None if not_needed(s) else s.history.incumbent


def not_needed(s: Session) -> str | None:
    """Why nothing is to be re-measured now (nothing kept, turned off, verified already)."""
    best, base = s.history.incumbent, s.history.baseline
    if best is None or base is None or best.id == base.id or best.commit_sha is None:
        return "nothing was kept: the baseline is the best"
    if pairs_wanted(s) == 0:
        return "[decision] headline_pairs = 0 turns it off"
    done = latest(s.ledger, s.row.id)
    # A verification that measured nothing, or stopped on a failed run, is measured again.
    if done is not None and done.interval is not None and not done.failures and (
            done.best_commit, done.baseline_commit) == (best.commit_sha, s.row.base_commit):
        return f"the headline of {best.id} is verified already"  # the same trees, not twice
    return None


def pairs_program(s: Session, trial: Trial, pairs: int,
                  out: list[tuple[float, float]], failures: list[str]) -> Program:
    """Measure `pairs` interleaved (baseline, best) pairs in the trial's slot, the order of the
    two arms alternating from pair to pair (drift cancels over each two). The two runs of a
    pair share a seed of their own, one no run of the session had: the pair differs by the
    change alone, and not on the seeds the best was selected on."""
    best = trial.commit
    assert best is not None
    for i in range(pairs):
        seed = run_seed(f"{s.row.tag}/{HEADLINE_SEEDS}", i)
        if i % 2 == 0:
            base = yield s.run_request(trial, BASELINE, s.row.base_commit, seed)
            new = yield s.run_request(trial, BEST, best, seed)
        else:
            new = yield s.run_request(trial, BEST, best, seed)
            base = yield s.run_request(trial, BASELINE, s.row.base_commit, seed)
        if base.ok and new.ok and base.objective is not None and new.objective is not None:
            out.append((new.objective, base.objective))
        else:
            bad = base if not base.ok else new
            failures.append(f"a {bad.role} run {happened(bad.status)}: {bad.reason}")
            return


def record(s: Session, best: ExperimentRow, pairs: Sequence[tuple[float, float]],
           failures: list[str]) -> Headline:
    interval = (paired_interval(pairs, s.config.metric.direction, CONFIDENCE)
                if pairs else None)
    headline = Headline(best.id, best.commit_sha or "", s.row.base_commit, list(pairs),
                        interval, failures)
    s.event("headline", headline.describe(s.config.metric.name,
                                          deterministic=s.config.decision.deterministic),
            best.id, data=headline.data())
    return headline


def latest(ledger: Ledger, session_id: int) -> Headline | None:
    """The last recorded headline of a session."""
    found = [e for e in ledger.events(session_id, kind="headline") if e["data"]]
    if not found:
        return None
    d = found[-1]["data"]
    pairs = [(float(a), float(b)) for a, b in d.get("pairs", [])]
    interval = None
    if d.get("estimate") is not None:
        low = -math.inf if d.get("low") is None else float(d["low"])
        high = math.inf if d.get("high") is None else float(d["high"])
        interval = Interval(float(d["estimate"]), low, high, len(pairs),
                            float(d.get("confidence") or CONFIDENCE))
    return Headline(str(d["best"]), str(d["best_commit"]), str(d["baseline_commit"]), pairs,
                    interval, list(d.get("failures", [])))

