"""The session so far, in memory and in step with the ledger: the engine's read model.

The ledger is the truth; this mirror holds what the engine reads on every experiment (the
incumbent, each commit's runs, the noise, the streaks, what a proposer may know), so that an
experiment costs the same whether it is the 10th or the 2000th of the session. It is rebuilt from
the ledger on open (`load`) and updated as runs and verdicts are recorded (`add_run`, `refresh`).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from autoresearch.config import Config
from autoresearch.decision import Noise, pooled_noise
from autoresearch.ledger import ExperimentRow, Ledger, RunRow, SessionRow, TrialStatus
from autoresearch.policy import FAILED_STATUSES, Observation, counts_as_measurement
from autoresearch.proposers.base import ExperimentOutcome, ExperimentSummary
from autoresearch.results_tsv import render as render_results
from autoresearch.results_tsv import write as write_results
from autoresearch.work_clock import WorkClock

# The event that records where simplifications are measured from (`History.reference_commit`).
REFERENCE_EVENT = "simplicity"


def run_seed(tag: str, index: int) -> int:
    """The seed of a commit's `index`-th run (0, 1, 2, ...) in session `tag`.

    Every repeat of a commit gets its own seed, so a deterministic target's noise is measured,
    not hidden; the k-th runs of any two commits share theirs, so the first run of a candidate
    and the first of the baseline differ by the change alone (common random numbers). A 31-bit
    integer, the same on every machine and across resumes.
    """
    digest = hashlib.sha256(f"{tag}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Streaks:
    """Outcomes in a row that the scheduler acts on. Rebuilt from the ledger on resume, so a
    resumed session pauses after the same number of crashes as one that never stopped."""

    crashes: int = 0  # crash/timeout in a row; a keep or discard ends it
    without_keep: int = 0  # discard/crash/timeout since the last keep (stuck detection)
    rejections: int = 0  # rejected in a row; any measured verdict ends it

    def record(self, status: str) -> None:
        if status in (TrialStatus.CRASH, TrialStatus.TIMEOUT):
            self.crashes += 1
        elif status in (TrialStatus.KEEP, TrialStatus.DISCARD):
            self.crashes = 0
        if status == TrialStatus.KEEP:
            self.without_keep = 0
        elif status in (TrialStatus.DISCARD, TrialStatus.CRASH, TrialStatus.TIMEOUT):
            self.without_keep += 1
        if status == TrialStatus.REJECTED:
            self.rejections += 1
        elif status != TrialStatus.INTERRUPTED:
            self.rejections = 0

    @classmethod
    def replay(cls, statuses: Iterable[str]) -> Streaks:
        streaks = cls()
        for status in statuses:
            streaks.record(status)
        return streaks


# What `decided` returns: final statuses but interrupted (a set of strings: the enum's constructor
# on every experiment of every step was most of its cost).
_LEARNT = frozenset(s.value for s in TrialStatus if s.final and s != TrialStatus.INTERRUPTED)


class History:
    """Experiments (in the order they were decided), runs, and what follows from them."""

    def __init__(self, config: Config, ledger: Ledger, session: SessionRow) -> None:
        self.config = config
        self.ledger = ledger
        self.session = session
        self.experiments: list[ExperimentRow] = []
        self._incumbent: ExperimentRow | None = None  # `incumbent`, while not stale
        self._incumbent_stale = False
        self.runs: dict[str, list[RunRow]] = {}  # experiment id -> its runs
        # commit -> (experiment, role, observation) of each ok run, in the order they were recorded
        self._observed: dict[str, list[tuple[str, str, Observation]]] = {}
        self._failed: dict[str, str] = {}  # experiment -> status, for failed attempts only
        # What follows from _observed and _failed, kept between steps: every step needs the
        # noise evidence of the whole session, and recomputing it from every run made each
        # experiment of a 5,000-experiment session ~30 ms slower. A commit's observations are
        # dropped when it gets a run, all of them when an experiment fails.
        self._measured: dict[str, list[Observation]] = {}  # commit -> observations(commit)
        self._noise: Noise | None = None  # noise(), while nothing it depends on changed
        self._run_count: dict[str, int] = {}  # commit -> runs recorded or started (seeds)
        self._summaries: dict[str, tuple[ExperimentRow, ExperimentSummary]] = {}
        self._tsv_rows = -1  # rows results.tsv holds (-1: unknown, rewrite it)
        self.streaks = Streaks()
        self._candidate_starts: list[float] = []  # start of every candidate run, sorted
        # An observation's time is the session's time at work: a pause between its processes
        # is no time for the drift model to extrapolate a trend over (work_clock.py).
        self._clock = WorkClock((), time.time())
        self.last_crash_log: str | None = None
        # The best measured state while the incumbent is a simplification of it (None when the
        # incumbent is that state): simplifications are bounded against it (policy.Evidence).
        self.reference_commit: str | None = None

    def load(self) -> None:
        """Rebuild everything from the ledger."""
        # In the order they were decided, as a live session appends them (`refresh`): with
        # overlapping slots that is not the order they were numbered in, and the streaks, the
        # recent experiments and what the proposer learnt from must be what they were.
        self.experiments = sorted(self.ledger.experiments(self.session.id), key=lambda e: (
            e.finished_at is None, e.finished_at or 0.0, e.seq))
        self._incumbent_stale = True
        self._failed = {e.id: e.status for e in self.experiments if e.status in FAILED_STATUSES}
        self.runs, self._observed, self._run_count = {}, {}, {}
        self._measured, self._noise = {}, None
        self._summaries, self._tsv_rows = {}, -1
        self._candidate_starts = []
        self._clock = WorkClock(self.ledger.work_spans(self.session.id), time.time())
        for run in self.ledger.session_runs(self.session.id):
            self.add_run(run)
            self._run_count[run.commit_sha] = self._run_count.get(run.commit_sha, 0) + 1
        self.streaks = Streaks.replay(e.status for e in self.experiments)
        marks = [e["data"] for e in self.ledger.events(self.session.id, kind=REFERENCE_EVENT)
                 if e["data"]]
        self.reference_commit = marks[-1].get("reference") if marks else None

    # --- what happened -------------------------------------------------------------------

    def add_run(self, run: RunRow) -> None:
        self.runs.setdefault(run.experiment_id, []).append(run)
        name = self.config.metric.name
        if run.status == "ok" and name in run.metrics:
            # A control run: made while its commit was the incumbent (any role but a judged
            # candidate's), or one of the baseline's repeats. The drift is estimated from these.
            control = run.role != "candidate" or run.commit_sha == self.session.base_commit
            self._observed.setdefault(run.commit_sha, []).append(
                (run.experiment_id, run.role,
                 Observation(run.metrics[name], self._clock(run.started_at), control=control)))
            self._measured.pop(run.commit_sha, None)
            self._noise = None
        if run.role == "candidate":
            bisect.insort(self._candidate_starts, self._clock(run.started_at))

    def next_run_index(self, commit: str) -> int:
        """Allocate the next run of `commit` (its seed follows from the index). Counted when it
        starts, so two runs of one commit in flight at once never share a seed."""
        index = self._run_count.get(commit, 0)
        self._run_count[commit] = index + 1
        return index

    def refresh(self, exp_id: str) -> ExperimentRow:
        """Re-read an experiment into the history (decided ones go in the order they finish)."""
        exp = self.ledger.experiment(exp_id)
        assert exp is not None
        if exp.status in FAILED_STATUSES and self._failed.get(exp.id) != exp.status:
            self._failed[exp.id] = exp.status
            self._measured, self._noise = {}, None  # its runs may no longer count
        # From the end: the experiment refreshed is nearly always one of the last few.
        replaced = None
        for i in range(len(self.experiments) - 1, -1, -1):
            if self.experiments[i].id == exp_id:
                replaced, self.experiments[i] = self.experiments[i], exp
                break
        else:
            self.experiments.append(exp)
        if TrialStatus.KEEP in (exp.status, replaced.status if replaced else None):
            self._incumbent_stale = True  # the kept rows changed
        return exp

    # --- what follows --------------------------------------------------------------------

    @property
    def baseline(self) -> ExperimentRow | None:
        return next((e for e in self.experiments
                     if e.kind == "baseline" and e.status == TrialStatus.KEEP), None)

    @property
    def incumbent(self) -> ExperimentRow | None:
        """The last kept experiment: with overlapping experiments, the one decided last.
        (Kept until a kept row is added or replaced: read several times per experiment.)"""
        if self._incumbent_stale:
            kept = [e for e in self.experiments if e.status == TrialStatus.KEEP]
            self._incumbent = max(kept, key=lambda e: (e.finished_at or 0, e.seq)) if kept else None
            self._incumbent_stale = False
        return self._incumbent

    def counted(self) -> int:
        """Experiments that count towards --iterations (interrupted ones are re-run)."""
        return sum(1 for e in self.experiments if e.status != TrialStatus.INTERRUPTED)

    def runs_since_measured(self, commit: str) -> int:
        """Candidate runs (of any commit) started since `commit` was last measured successfully:
        how long the incumbent has gone without a control run."""
        seen = self.observations(commit)
        since = max((o.at for o in seen), default=float("-inf"))
        return len(self._candidate_starts) - bisect.bisect_right(self._candidate_starts, since)

    def observations(self, commit: str) -> list[Observation]:
        """Every successful run of `commit` that counts as a measurement of it (not the candidate
        runs of a failed attempt: policy.counts_as_measurement): objective and start, in order."""
        return list(self._observations(commit))

    def _observations(self, commit: str) -> list[Observation]:
        """`observations(commit)`, computed once until a run of it is added or an experiment
        fails (the list is shared: callers get a copy)."""
        cached = self._measured.get(commit)
        if cached is None:
            failed = self._failed
            cached = [o for exp_id, role, o in self._observed.get(commit, [])
                      if counts_as_measurement(role, failed.get(exp_id, ""))]
            self._measured[commit] = cached
        return cached

    def objective_runs(self, commit: str) -> list[float]:
        return [o.value for o in self.observations(commit)]

    def noise_groups(self, exclude: Iterable[str] = ()) -> list[list[Observation]]:
        """The repeated measurements of each commit (a single run says nothing about noise)."""
        skip = set(exclude)
        groups = (self._observations(commit) for commit in self._observed if commit not in skip)
        return [list(group) for group in groups if len(group) > 1]

    def noise(self) -> Noise:
        if self._noise is None:
            self._noise = pooled_noise([[o.value for o in g] for g in self.noise_groups()])
        return self._noise

    def mean_metrics(self, commit: str) -> dict[str, float]:
        """Every recorded metric of a commit, averaged over its successful runs."""
        values: dict[str, list[float]] = {}
        for runs in self.runs.values():
            for r in runs:
                if r.commit_sha == commit and r.status == "ok":
                    for k, v in r.metrics.items():
                        values.setdefault(k, []).append(v)
        return {k: fmean(v) for k, v in values.items()}

    def metric_runs(self, commit: str, name: str) -> tuple[int, int]:
        """(how many of the commit's successful runs printed `name`, how many there were)."""
        ok = [r for runs in self.runs.values() for r in runs
              if r.commit_sha == commit and r.status == "ok"]
        return sum(1 for r in ok if name in r.metrics), len(ok)

    def printed_by_every_run(self, commit: str, name: str) -> bool:
        """Whether every successful run of `commit` (at least one) printed `name` as a number."""
        ok = [r for runs in self.runs.values() for r in runs
              if r.commit_sha == commit and r.status == "ok"]
        return bool(ok) and all(math.isfinite(r.metrics.get(name, math.nan)) for r in ok)

    def summary(self, exp: ExperimentRow) -> ExperimentSummary:
        """What a proposer may know of an experiment (cached: a decided one no longer changes)."""
        cached = self._summaries.get(exp.id)
        if cached is not None and cached[0] is exp:
            return cached[1]
        hidden = set(self.config.metric.heldout)
        runs = [r for r in self.runs.get(exp.id, []) if r.role == "candidate" and r.status == "ok"
                and r.commit_sha == exp.commit_sha]
        names = {n for r in runs for n in r.metrics} - hidden
        metrics = {n: fmean([r.metrics[n] for r in runs if n in r.metrics]) for n in names}
        summary = ExperimentSummary(
            id=exp.id, seq=exp.seq, status=exp.status, hypothesis=exp.hypothesis,
            objective=exp.objective, delta=exp.delta, reason=exp.decision_reason,
            params=exp.params, commit=exp.commit_sha, metrics=metrics,
            lines_added=exp.lines_added, lines_removed=exp.lines_removed, kind=exp.kind,
        )
        if TrialStatus(exp.status).final:
            self._summaries[exp.id] = (exp, summary)
        return summary

    def outcome(self, exp: ExperimentRow) -> ExperimentOutcome:
        return ExperimentOutcome(summary=self.summary(exp), proposal=None)

    def decided(self) -> list[ExperimentSummary]:
        """Every experiment a proposer learns from (interrupted ones are re-run, not learnt)."""
        return [self.summary(e) for e in self.experiments if e.status in _LEARNT]

    # --- the results.tsv view ------------------------------------------------------------

    def write_results(self, path: Path, decided: ExperimentRow | None = None) -> None:
        """results.tsv: one line appended for an experiment decided after all the others (the
        usual case; a decided row never changes), else the whole view rewritten atomically."""
        metric = self.config.metric.name
        if (decided is not None and self.experiments and self.experiments[-1] is decided
                and self._tsv_rows == len(self.experiments) - 1 and path.exists()):
            line = render_results(metric, [(decided, self.runs.get(decided.id, []))],
                                  self.config.metric.memory)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line.split("\n", 1)[1])  # one write: the row without the header
        else:
            write_results(path, metric,
                          [(e, self.runs.get(e.id, [])) for e in self.experiments],
                          self.config.metric.memory)
        self._tsv_rows = len(self.experiments)
