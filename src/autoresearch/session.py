"""A research session: open (or resume) it, keep git and the ledger consistent, measure.

One experiment reads top to bottom in `loop.experiment`: ask → guard → commit → run → judge →
tell. Everything clever lives behind a seam: the proposer, the guardrails, the executor (where a
candidate runs), the decision rule, the ledger. This module opens the session (refusing, before
anything is recorded, what cannot work), recovers after any stop, and records every run.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import fmean
from types import FrameType

from autoresearch import gitops, guardrails, timeouts
from autoresearch.config import PROGRAM_NAME, Config
from autoresearch.decision import Noise, Rule, pooled_noise
from autoresearch.display import Display
from autoresearch.errors import PreconditionError
from autoresearch.executor import (
    Executor,
    InlineExecutor,
    Measurement,
    Slot,
    new_run_id,
    run_id_prefix,
)
from autoresearch.fingerprint import comparable_key, describe_difference, environment_fingerprint
from autoresearch.globs import select
from autoresearch.ledger import ExperimentRow, Ledger, RunRow, SessionRow
from autoresearch.policy import FAILED_STATUSES, counts_as_measurement
from autoresearch.proposers.base import ExperimentOutcome, ExperimentSummary, Proposer
from autoresearch.proposers.registry import load_proposer
from autoresearch.readiness import check_preconditions, proposer_readiness
from autoresearch.results_tsv import render as render_results
from autoresearch.results_tsv import write as write_results
from autoresearch.runner import kill_leftovers
from autoresearch.state import SessionLock, StatePaths

__all__ = ["Limits", "Session", "SessionStopped", "Streaks", "check_preconditions",
           "proposer_readiness", "read_program", "terminate_as_interrupt"]


class SessionStopped(Exception):
    """The loop ended for a reason the user should read (paused, exhausted, fingerprint...)."""

    def __init__(self, reason: str, exit_code: int = 0) -> None:
        self.reason = reason
        self.exit_code = exit_code
        super().__init__(reason)


@dataclass
class Limits:
    iterations: int | None = None  # experiments in the session in total, baseline included
    deadline: float | None = None  # wall-clock time.time() after which no experiment starts
    max_usd: float | None = None


@dataclass
class Streaks:
    """Outcomes in a row that the loop acts on. Rebuilt from the ledger on resume, so a resumed
    session pauses after the same number of crashes as one that never stopped."""

    crashes: int = 0  # crash/timeout in a row; a keep or discard ends it
    without_keep: int = 0  # discard/crash/timeout since the last keep (stuck detection)
    rejections: int = 0  # rejected in a row; any measured verdict ends it

    def record(self, status: str) -> None:
        if status in ("crash", "timeout"):
            self.crashes += 1
        elif status in ("keep", "discard"):
            self.crashes = 0
        if status == "keep":
            self.without_keep = 0
        elif status in ("discard", "crash", "timeout"):
            self.without_keep += 1
        if status == "rejected":
            self.rejections += 1
        elif status != "interrupted":
            self.rejections = 0

    @classmethod
    def replay(cls, statuses: Iterable[str]) -> Streaks:
        streaks = cls()
        for status in statuses:
            streaks.record(status)
        return streaks


class Session:
    """Owns one session's state while it runs; `loop.run()` is the loop.

    `executor` decides where candidates run (default: inline, in the session worktree, watching
    `stop_event`); `proposer` replaces the configured one (tests, benchmarks, embedding).
    """

    def __init__(self, root: Path, config: Config, tag: str, display: Display,
                 proposer: Proposer | None = None, executor: Executor | None = None) -> None:
        self.root = root
        self.config = config
        self.paths = StatePaths(root, tag)
        self.display = display
        self.stop_event = threading.Event()
        # The run's limits (loop.run sets them): also checked inside an experiment, while an
        # outage is waited out and before a repair is asked for.
        self.limits = Limits()
        self.ledger: Ledger
        self.row: SessionRow
        self.proposer: Proposer
        self.proposer_why = ""
        self.readiness: str | None = None
        self._given_proposer = proposer
        self._proposer_open = False
        self.executor: Executor = executor or InlineExecutor(config, self.paths.worktree,
                                                             self.stop_event)
        self.lock = SessionLock(self.paths.lock)
        self.rule = Rule(config.metric.direction, config.decision.min_effect,
                         config.decision.noise_k, config.decision.simplicity)
        self.history: list[ExperimentRow] = []
        self.runs: dict[str, list[RunRow]] = {}
        # Derived from `runs` and `history`, kept up to date so an experiment costs the same
        # whether it is the 10th or the 2000th of the session.
        # commit -> (experiment, role, objective) of each ok run
        self._objectives: dict[str, list[tuple[str, str, float]]] = {}
        self._failed: dict[str, str] = {}  # experiment -> status, for failed attempts only
        self._summaries: dict[str, tuple[ExperimentRow, ExperimentSummary]] = {}
        self._tsv_rows = -1  # rows results.tsv holds (-1: unknown, rewrite it)
        self.protected_hashes: dict[str, str] = {}
        self.streaks = Streaks()
        self.last_crash_log: str | None = None
        self._scope_cache: dict[str, list[str]] = {}

    # --- opening and recovery -------------------------------------------------------------

    def open(self) -> None:
        check_preconditions(self.root, self.config)
        self.paths.prepare()
        self.lock.acquire()
        try:
            self._open_locked()
        except BaseException:
            if self._proposer_open:
                self.proposer.close()
            if hasattr(self, "ledger"):
                self.ledger.checkpoint()  # a refused start ends the session too: see close()
            self.lock.release()
            raise

    def _open_locked(self) -> None:
        self.ledger = Ledger(self.paths.ledger)
        row = self.ledger.session(self.paths.tag)
        if row is None and gitops.ref_exists(self.root, f"refs/heads/{self.paths.branch}"):
            raise PreconditionError(
                f"branch {self.paths.branch} exists but this repo's ledger has no session "
                f"{self.paths.tag!r}", where=str(self.root),
                fix=f"pick another --tag, or delete the branch: git branch -D {self.paths.branch}",
            )
        if row is not None:
            self._check_fingerprint(row)
        # Everything that can refuse the start happens before a new session is recorded: a failed
        # start must not leave an empty session behind (it would become the default tag).
        self._load_proposer()
        created = row is None
        if row is None:
            # The preconditions made HEAD's tracked files clean: they are the new session's base.
            self.readiness = proposer_readiness(self.proposer, self.root)
            row = self._create_row()
        self.row = row
        self.display.tally.metric = self.config.metric.name
        self.display.tally.direction = self.config.metric.direction
        self._recover()
        with self.executor.lease() as slot:
            if not created:  # resuming: the incumbent's files, where the knobs may have moved
                self.readiness = proposer_readiness(self.proposer, slot.worktree)
            self.protected_hashes = guardrails.hash_files(slot.worktree, select(
                gitops.tracked_files(slot.worktree), self.config.all_protected))
        self.ledger.update_session(row.id, proposer=self.proposer.name, status="running",
                                   config=self.config.to_json_dict())
        self.proposer.resume([self._outcome(e) for e in self.history if e.status != "interrupted"])

    def _load_proposer(self) -> None:
        if self._given_proposer is not None:
            self.proposer, self.proposer_why = self._given_proposer, "given by the caller"
        else:
            self.proposer, self.proposer_why = load_proposer(self.config)
        self._proposer_open = True

    def _create_row(self) -> SessionRow:
        base = gitops.rev_parse(self.root, "HEAD")
        row = self.ledger.create_session(
            tag=self.paths.tag, branch=self.paths.branch, base_commit=base,
            worktree=str(self.paths.worktree), metric=self.config.metric.name,
            direction=self.config.metric.direction, config=self.config.to_json_dict(),
            proposer=self.proposer.name,
        )
        self.ledger.add_event(row.id, "session", f"session {row.tag} created at {base[:10]}")
        return row

    def _check_fingerprint(self, row: SessionRow) -> None:
        """Refuse to resume on a machine whose environment differs from the session's.

        The fingerprint is cached per process, so within one process it cannot change: this check
        at open, in the process that resumes, is what refuses another machine.
        """
        here = environment_fingerprint()
        if row.fingerprint_key and row.fingerprint_key != comparable_key(here):
            before = self.ledger.fingerprint(row.fingerprint_key) or {}
            diffs = "; ".join(describe_difference(before, here)) or "see the ledger"
            raise PreconditionError(
                f"this machine's environment differs from the one session {row.tag!r} was "
                f"measured on ({diffs}); its results would not be comparable",
                where=str(self.paths.ledger),
                fix="start a new session on this machine with another --tag",
            )

    def _recover(self) -> None:
        """Make git agree with the ledger after any stop, including kill -9."""
        killed = kill_leftovers(run_id_prefix(self.paths.repo_key, self.paths.tag))
        if killed:
            self.event("recovery", f"killed {killed} leftover process(es) of an earlier run")
        if self.lock.cleared_stale:
            self.event("recovery", f"cleared a stale lock of dead process {self.lock.cleared_stale.get('pid')}")
        for exp in self.ledger.open_experiments(self.row.id):  # any number: they may overlap
            self.ledger.update_experiment(
                exp.id, status="interrupted", finished_at=time.time(),
                decision_reason="the session stopped mid-experiment; marked interrupted on resume",
            )
            self.event("recovery", f"{exp.id} was left {exp.status}; marked interrupted", exp.id)
        self.history = self.ledger.experiments(self.row.id)
        self._failed = {e.id: e.status for e in self.history if e.status in FAILED_STATUSES}
        self.runs, self._objectives = {}, {}
        for run in self.ledger.session_runs(self.row.id):
            self._add_run(run)
        self.streaks = Streaks.replay(e.status for e in self.history)
        self._restore_parked()
        # The ledger is the truth: the branch points at its incumbent, whatever git says.
        tip = self.incumbent.commit_sha if self.incumbent else self.row.base_commit
        assert tip is not None
        gitops.ensure_branch(self.root, self.paths.branch, tip)
        if gitops.rev_parse(self.root, f"refs/heads/{self.paths.branch}") != tip:
            gitops.update_ref(self.root, f"refs/heads/{self.paths.branch}", tip)
            self.event("recovery", f"branch reset to the ledger's incumbent {tip[:10]}")
        self.executor.prepare(self.root, tip)

    def _restore_parked(self) -> None:
        """Every commit the ledger parked keeps its ref under refs/autoresearch/<tag>/discarded/.

        The loop creates the ref before it records the verdict, but a kill -9 can fall between
        the commit and the ref (or someone deleted refs): re-create the missing ones.
        """
        by_id = {e.id: e for e in self.history}
        want: dict[str, str] = {}
        for e in self.history:
            if e.kind != "baseline" and e.commit_sha and e.status != "keep":
                want[self.paths.discarded_ref(e.id)] = e.commit_sha
        for exp_id, runs in self.runs.items():  # earlier attempts of repaired experiments
            exp = by_id.get(exp_id)
            for r in runs:
                if exp is not None and r.role == "candidate" and r.attempt < exp.attempts:
                    want[self.paths.discarded_ref(f"{exp_id}-a{r.attempt}")] = r.commit_sha
        have = gitops.refs_under(self.root, self.paths.discarded_prefix)
        missing = {ref: sha for ref, sha in want.items() if ref not in have}
        alive = gitops.existing_commits(self.root, missing.values())
        missing = {ref: sha for ref, sha in missing.items() if sha in alive}
        if missing:
            gitops.update_refs(self.root, missing)
            names = ", ".join(ref.rsplit("/", 1)[1] for ref in sorted(missing))
            self.event("recovery", f"re-created the refs of {len(missing)} parked commit(s): {names}")

    def close(self, status: str = "stopped") -> None:
        try:
            self.proposer.close()
            self.executor.close()
        finally:
            try:
                self.ledger.update_session(self.row.id, status=status)
            finally:
                # Session end (any way it ends): fold the WAL into ledger.db and back it up, so
                # that copying ledger.db copies the research (see Ledger.checkpoint).
                self.ledger.checkpoint()
                self.lock.release()

    # --- views of the state ----------------------------------------------------------------

    @property
    def baseline(self) -> ExperimentRow | None:
        return next((e for e in self.history if e.kind == "baseline" and e.status == "keep"), None)

    @property
    def incumbent(self) -> ExperimentRow | None:
        """The last kept experiment. With overlapping experiments, the one decided last wins."""
        kept = [e for e in self.history if e.status == "keep"]
        return max(kept, key=lambda e: (e.finished_at or 0, e.seq)) if kept else None

    def scope_files(self, commit: str) -> list[str]:
        """In-scope files at a commit (cached: the incumbent changes rarely)."""
        cached = self._scope_cache.get(commit)
        if cached is None:
            cached = select(gitops.tracked_files(self.root, commit), self.config.scope)
            self._scope_cache = {commit: cached}
        return cached

    def _add_run(self, run: RunRow) -> None:
        self.runs.setdefault(run.experiment_id, []).append(run)
        # The verify timeout is sized from what the unchanged code's runs really take beyond
        # the budget (startup, evaluation): see timeouts.py. Replayed runs count on resume.
        timeouts.observe(self, run)
        name = self.config.metric.name
        if run.status == "ok" and name in run.metrics:
            self._objectives.setdefault(run.commit_sha, []).append(
                (run.experiment_id, run.role, run.metrics[name]))

    def _measured(self, commit: str) -> list[float]:
        """The objective of each ok run that counts as a measurement of `commit` (not the
        candidate runs of a failed attempt: policy.counts_as_measurement), in run order."""
        failed = self._failed
        return [value for exp_id, role, value in self._objectives.get(commit, [])
                if counts_as_measurement(role, failed.get(exp_id, ""))]

    def objective_runs(self, commit: str) -> list[float]:
        """The objective of every successful run of `commit` that counts, in the order they ran."""
        return self._measured(commit)

    def noise_groups(self, exclude: set[str]) -> list[list[float]]:
        """The repeated measurements of each commit (a single run says nothing about noise)."""
        groups = (self._measured(commit) for commit in self._objectives if commit not in exclude)
        return [values for values in groups if len(values) > 1]

    def noise(self) -> Noise:
        return pooled_noise(self.noise_groups(set()))

    def counted(self) -> int:
        return sum(1 for e in self.history if e.status not in ("interrupted",))

    def summary(self, exp: ExperimentRow) -> ExperimentSummary:
        """What a proposer may know of an experiment (cached: a decided one no longer changes)."""
        cached = self._summaries.get(exp.id)
        if cached is not None and cached[0] is exp:
            return cached[1]
        summary = self._summary(exp)
        if exp.status not in ("proposed", "running"):
            self._summaries[exp.id] = (exp, summary)
        return summary

    def _summary(self, exp: ExperimentRow) -> ExperimentSummary:
        hidden = set(self.config.metric.heldout)
        runs = [r for r in self.runs.get(exp.id, []) if r.role == "candidate" and r.status == "ok"]
        names = {n for r in runs for n in r.metrics} - hidden
        metrics = {n: fmean([r.metrics[n] for r in runs if n in r.metrics]) for n in names}
        return ExperimentSummary(
            id=exp.id, seq=exp.seq, status=exp.status, hypothesis=exp.hypothesis,
            objective=exp.objective, delta=exp.delta, reason=exp.decision_reason,
            params=exp.params, commit=exp.commit_sha, metrics=metrics,
            lines_added=exp.lines_added, lines_removed=exp.lines_removed, kind=exp.kind,
        )

    def _outcome(self, exp: ExperimentRow) -> ExperimentOutcome:
        return ExperimentOutcome(summary=self.summary(exp), proposal=None)

    def event(self, kind: str, message: str, exp_id: str | None = None) -> None:
        self.ledger.add_event(self.row.id, kind, message, experiment_id=exp_id)

    def refresh(self, exp_id: str) -> ExperimentRow:
        """Re-read a decided experiment into the history (in the order experiments finish)."""
        exp = self.ledger.experiment(exp_id)
        assert exp is not None
        if exp.status in FAILED_STATUSES:
            self._failed[exp.id] = exp.status
        for i, e in enumerate(self.history):
            if e.id == exp_id:
                self.history[i] = exp
                break
        else:
            self.history.append(exp)
        return exp

    def write_results(self, decided: ExperimentRow | None = None) -> None:
        """results.tsv: one line appended for an experiment decided after all the others (the
        usual case; a decided row never changes), else the whole view rewritten atomically."""
        path, metric = self.paths.results_tsv, self.config.metric.name
        if (decided is not None and self.history and self.history[-1] is decided
                and self._tsv_rows == len(self.history) - 1 and path.exists()):
            line = render_results(metric, [(decided, self.runs.get(decided.id, []))],
                                  self.config.metric.memory)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line.split("\n", 1)[1])  # one write: the row without the header
        else:
            write_results(path, metric, [(e, self.runs.get(e.id, [])) for e in self.history],
                          self.config.metric.memory)
        self._tsv_rows = len(self.history)

    # --- measuring -------------------------------------------------------------------------

    def measure(self, exp: ExperimentRow, slot: Slot, commit: str, role: str,
                attempt: int = 1) -> Measurement:
        """Run the verify command once on `commit` in `slot` and record the run, every run:
        one cut short by Ctrl-C is recorded as interrupted before the interrupt goes on."""
        index = sum(1 for r in self.runs.get(exp.id, []) if r.role == role and r.attempt == attempt)
        log = self.paths.log_path(exp.id, role, index, attempt)
        self.display.run_started(f"{role} {index + 1}", self.config.verify.budget_seconds)
        started, clock = time.time(), time.monotonic()
        try:
            # The protected files are fenced for the run (read-only, hashed and stamped before and
            # after): a run that writes one is caught even if it puts the content back.
            with guardrails.protected_fence(slot.worktree, self.protected_hashes) as fence:
                m = self.executor.measure(commit, role=role, log_path=log, slot=slot,
                                          run_id=new_run_id(self.paths.repo_key, self.paths.tag))
        except KeyboardInterrupt:
            # The runner has killed the process tree; the run still happened.
            elapsed = time.monotonic() - clock
            self._record_run(exp, index, attempt, Measurement(
                commit=commit, role=role, status="interrupted", reason="interrupted by the user",
                objective=None, metrics={}, exit_code=None, duration_s=elapsed,
                started_at=started, log_path=log, command_s=elapsed))
            raise
        finally:
            self.display.run_finished()
        # The verify command must not alter what the harness protects.
        tampered = fence.changes
        # A proposed change's run that tampers is that candidate's fault (the incumbent's runs
        # left the files alone); the baseline's or the incumbent's is the command's.
        candidate_did_it = (bool(tampered) and exp.kind != "baseline" and role == "candidate"
                            and m.status != "interrupted")
        if tampered:
            self.executor.reset(slot, commit)
            if candidate_did_it:
                # That candidate fails; the loop goes on.
                m = replace(m, status="crash", objective=None, reason=(
                    f"the candidate's run modified protected files: {', '.join(tampered)} "
                    "(restored); a change may not alter the evaluation"))
        self._record_run(exp, index, attempt, m)
        if m.status == "interrupted":
            raise KeyboardInterrupt
        self._check_same_environment(m)
        if tampered and not candidate_did_it:
            raise SessionStopped(f"the verify command modified protected files: {', '.join(tampered)};"
                                 " they were restored. Fix the command so it leaves them alone.",
                                 exit_code=3)
        return m

    def _record_run(self, exp: ExperimentRow, index: int, attempt: int, m: Measurement) -> None:
        run_id = self.ledger.add_run(
            exp.id, role=m.role, idx=index, commit_sha=m.commit, status=m.status,
            exit_code=m.exit_code, duration_s=m.duration_s, log_path=str(m.log_path),
            fingerprint=m.fingerprint or None, fingerprint_key=m.fingerprint_key or None,
            started_at=m.started_at, metrics=m.metrics, attempt=attempt,
        )
        run = self.ledger.run(run_id)
        assert run is not None
        self._add_run(run)

    def _check_same_environment(self, m: Measurement) -> None:
        """Every run of a session is measured in one environment.

        With the inline executor this cannot fail: the fingerprint is taken once per process and
        `open` refused a process whose fingerprint differs from the session's. It guards
        executors that measure somewhere else (workers on other machines).
        """
        if self.row.fingerprint_key is None:
            self.ledger.update_session(self.row.id, fingerprint_key=m.fingerprint_key)
            self.row = self.ledger.session(self.row.tag) or self.row
        elif m.fingerprint_key != self.row.fingerprint_key:
            before = self.ledger.fingerprint(self.row.fingerprint_key) or {}
            diffs = "; ".join(describe_difference(before, m.fingerprint)) or (
                f"fingerprint {m.fingerprint_key} vs {self.row.fingerprint_key}")
            raise SessionStopped(
                f"the environment fingerprint changed mid-session ({diffs}): {m.role} run of "
                f"{m.commit[:10]} is not comparable with the session's earlier measurements. "
                "Start a new session (another --tag) in the new environment.", exit_code=3)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a session the same clean way Ctrl-C does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def read_program(root: Path) -> str:
    path = root / PROGRAM_NAME
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def finite_mean(values: list[float]) -> float | None:
    good = [v for v in values if math.isfinite(v)]
    return fmean(good) if good else None
