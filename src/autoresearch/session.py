"""A research session: open (or resume) it, establish the baseline, then loop.

One experiment reads top to bottom in `Session.experiment`:
ask → guard → commit → run → judge → tell.
Everything clever lives behind a seam: the proposer, the guardrails, the executor, the decision
rule, the ledger. This module only sequences them and keeps git and the ledger consistent.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from types import FrameType

from autoresearch import gitops, guardrails
from autoresearch.config import PROGRAM_NAME, Config
from autoresearch.decision import Noise, Rule, pooled_noise
from autoresearch.display import Display
from autoresearch.errors import PreconditionError
from autoresearch.executor import Executor, InlineExecutor, Measurement, new_run_id, run_id_prefix
from autoresearch.fingerprint import comparable_key, describe_difference, environment_fingerprint
from autoresearch.globs import select
from autoresearch.ledger import ExperimentRow, Ledger, RunRow, SessionRow
from autoresearch.proposers.base import ExperimentOutcome, ExperimentSummary, Proposer
from autoresearch.proposers.registry import load_proposer
from autoresearch.results_tsv import write as write_results
from autoresearch.runner import kill_leftovers
from autoresearch.state import SessionLock, StatePaths


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


def check_preconditions(root: Path, config: Config) -> list[str]:
    """Refuse a repository a session can't safely start from; returns the scope's files."""
    if gitops.current_branch(root) is None:
        raise PreconditionError(
            "HEAD is detached", where=str(root),
            fix="check out a branch first: git switch -c my-research",
        )
    if gitops.head_commit(root) is None:
        raise PreconditionError(
            "the repository has no commit yet", where=str(root),
            fix="commit your files first: git add -A && git commit -m init",
        )
    dirty = gitops.dirty_tracked_files(root)
    if dirty:
        shown = ", ".join(dirty[:5]) + (" …" if len(dirty) > 5 else "")
        raise PreconditionError(
            f"the working tree has uncommitted changes to tracked files: {shown}",
            where=str(root),
            fix="commit or stash them (git stash) so every experiment starts from a known commit",
        )
    files = select(gitops.tracked_files(root), config.scope)
    if not files:
        raise PreconditionError(
            f"the scope {config.scope} matches no committed file",
            where="autoresearch.toml → scope",
            fix="fix the globs, or commit the files the proposer should edit",
        )
    overlap = select(files, config.all_protected)
    if overlap:
        raise PreconditionError(
            f"protected files are inside the scope: {', '.join(overlap)}",
            where="autoresearch.toml → scope / protected",
            fix="narrow the scope or drop them from protected: a file can't be both",
        )
    return files


class Session:
    """Owns one session's state while it runs; `run()` is the loop."""

    def __init__(self, root: Path, config: Config, tag: str, display: Display,
                 proposer: Proposer | None = None) -> None:
        self.root = root
        self.config = config
        self.paths = StatePaths(root, tag)
        self.display = display
        self.stop_event = threading.Event()
        self.ledger: Ledger
        self.row: SessionRow
        self.proposer: Proposer
        self._given_proposer = proposer
        self.executor: Executor
        self.lock = SessionLock(self.paths.lock)
        self.rule = Rule(config.metric.direction, config.decision.min_effect,
                         config.decision.noise_k, config.decision.simplicity)
        self.history: list[ExperimentRow] = []
        self.runs: dict[str, list[RunRow]] = {}
        self.protected_hashes: dict[str, str] = {}
        self.consecutive_crashes = 0
        self.consecutive_discards = 0
        self.last_crash_log: str | None = None
        self.proposer_why = ""
        self._scope_cache: dict[str, list[str]] = {}

    # --- opening and recovery -------------------------------------------------------------

    def open(self) -> None:
        check_preconditions(self.root, self.config)
        self.paths.prepare()
        self.lock.acquire()
        try:
            self._open_locked()
        except BaseException:
            self.lock.release()
            raise

    def _open_locked(self) -> None:
        self.ledger = Ledger(self.paths.ledger)
        row = self.ledger.session(self.paths.tag)
        if row is None:
            base = gitops.rev_parse(self.root, "HEAD")
            if gitops.ref_exists(self.root, f"refs/heads/{self.paths.branch}"):
                raise PreconditionError(
                    f"branch {self.paths.branch} exists but this repo's ledger has no session "
                    f"{self.paths.tag!r}", where=str(self.root),
                    fix=f"pick another --tag, or delete the branch: git branch -D {self.paths.branch}",
                )
            row = self.ledger.create_session(
                tag=self.paths.tag, branch=self.paths.branch, base_commit=base,
                worktree=str(self.paths.worktree), metric=self.config.metric.name,
                direction=self.config.metric.direction, config=self.config.to_json_dict(),
                proposer=self.config.proposer.name,
            )
            self.ledger.add_event(row.id, "session", f"session {row.tag} created at {base[:10]}")
        self.row = row
        self.display.tally.metric = self.config.metric.name
        self.display.tally.direction = self.config.metric.direction
        self._check_fingerprint()
        if self._given_proposer is not None:
            self.proposer, self.proposer_why = self._given_proposer, "given by the caller"
        else:
            self.proposer, self.proposer_why = load_proposer(self.config)
        self.ledger.update_session(row.id, proposer=self.proposer.name, status="running",
                                   config=self.config.to_json_dict())
        self._recover()
        self.executor = InlineExecutor(self.config, self.paths.worktree, self.stop_event)
        self.protected_hashes = guardrails.hash_files(
            self.paths.worktree, select(gitops.tracked_files(self.paths.worktree), self.config.all_protected)
        )
        self.proposer.resume([self._outcome(e) for e in self.history if e.status != "interrupted"])

    def _check_fingerprint(self) -> None:
        here = environment_fingerprint()
        key = comparable_key(here)
        if self.row.fingerprint_key and self.row.fingerprint_key != key:
            before = self.ledger.fingerprint(self.row.fingerprint_key) or {}
            diffs = "; ".join(describe_difference(before, here)) or "see the ledger"
            raise PreconditionError(
                f"this machine's environment differs from the one session {self.row.tag!r} was "
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
        for exp in self.ledger.open_experiments(self.row.id):
            self.ledger.update_experiment(
                exp.id, status="interrupted", finished_at=time.time(),
                decision_reason="the session stopped mid-experiment; marked interrupted on resume",
            )
            if exp.commit_sha and gitops.ref_exists(self.root, exp.commit_sha):
                gitops.update_ref(self.root, self.paths.discarded_ref(exp.id), exp.commit_sha)
            self.event("recovery", f"{exp.id} was left {exp.status}; marked interrupted", exp.id)
        self.history = self.ledger.experiments(self.row.id)
        for run in self.ledger.session_runs(self.row.id):
            self.runs.setdefault(run.experiment_id, []).append(run)
        # The ledger is the truth: the branch points at its incumbent, whatever git says.
        tip = self.incumbent.commit_sha if self.incumbent else self.row.base_commit
        assert tip is not None
        gitops.ensure_worktree(self.root, self.paths.worktree, self.paths.branch, tip)
        if gitops.rev_parse(self.root, f"refs/heads/{self.paths.branch}") != tip:
            gitops.update_ref(self.root, f"refs/heads/{self.paths.branch}", tip)
            self.event("recovery", f"branch reset to the ledger's incumbent {tip[:10]}")
        gitops.checkout(self.paths.worktree, tip)

    def close(self, status: str = "stopped") -> None:
        try:
            self.proposer.close()
        finally:
            self.ledger.update_session(self.row.id, status=status)
            self.lock.release()

    # --- views of the state ----------------------------------------------------------------

    @property
    def baseline(self) -> ExperimentRow | None:
        return next((e for e in self.history if e.kind == "baseline" and e.status == "keep"), None)

    @property
    def incumbent(self) -> ExperimentRow | None:
        kept = [e for e in self.history if e.status == "keep"]
        return max(kept, key=lambda e: (e.finished_at or 0, e.seq)) if kept else None

    def scope_files(self, commit: str) -> list[str]:
        """In-scope files at a commit (cached: the incumbent changes rarely)."""
        cached = self._scope_cache.get(commit)
        if cached is None:
            cached = select(gitops.tracked_files(self.paths.worktree, commit), self.config.scope)
            self._scope_cache = {commit: cached}
        return cached

    def objective_runs(self, commit: str) -> list[float]:
        name = self.config.metric.name
        return [
            r.metrics[name] for runs in self.runs.values() for r in runs
            if r.commit_sha == commit and r.status == "ok" and name in r.metrics
        ]

    def noise_groups(self, exclude: set[str]) -> list[list[float]]:
        groups: dict[str, list[float]] = {}
        name = self.config.metric.name
        for runs in self.runs.values():
            for r in runs:
                if r.status == "ok" and name in r.metrics and r.commit_sha not in exclude:
                    groups.setdefault(r.commit_sha, []).append(r.metrics[name])
        return list(groups.values())

    def noise(self) -> Noise:
        return pooled_noise(self.noise_groups(set()))

    def counted(self) -> int:
        return sum(1 for e in self.history if e.status not in ("interrupted",))

    def summary(self, exp: ExperimentRow) -> ExperimentSummary:
        hidden = set(self.config.metric.heldout)
        runs = [r for r in self.runs.get(exp.id, []) if r.role == "candidate" and r.status == "ok"]
        names = {n for r in runs for n in r.metrics} - hidden
        metrics = {n: fmean([r.metrics[n] for r in runs if n in r.metrics]) for n in names}
        return ExperimentSummary(
            id=exp.id, seq=exp.seq, status=exp.status, hypothesis=exp.hypothesis,
            objective=exp.objective, delta=exp.delta, reason=exp.decision_reason,
            params=exp.params, commit=exp.commit_sha, metrics=metrics,
            lines_added=exp.lines_added, lines_removed=exp.lines_removed,
        )

    def _outcome(self, exp: ExperimentRow) -> ExperimentOutcome:
        return ExperimentOutcome(summary=self.summary(exp), proposal=None)

    def event(self, kind: str, message: str, exp_id: str | None = None) -> None:
        self.ledger.add_event(self.row.id, kind, message, experiment_id=exp_id)

    def refresh(self, exp_id: str) -> ExperimentRow:
        exp = self.ledger.experiment(exp_id)
        assert exp is not None
        for i, e in enumerate(self.history):
            if e.id == exp_id:
                self.history[i] = exp
                break
        else:
            self.history.append(exp)
        return exp

    def write_results(self) -> None:
        rows = [(e, self.runs.get(e.id, [])) for e in self.history]
        write_results(self.paths.results_tsv, self.config.metric.name, rows)

    # --- measuring -------------------------------------------------------------------------

    def measure(self, exp: ExperimentRow, commit: str, role: str, attempt: int = 1) -> Measurement:
        """Run the verify command once on `commit` and record the run."""
        index = sum(1 for r in self.runs.get(exp.id, []) if r.role == role and r.attempt == attempt)
        log = self.paths.log_path(exp.id, role, index, attempt)
        self.display.run_started(f"{role} {index + 1}", self.config.verify.budget_seconds)
        try:
            m = self.executor.measure(commit, role=role, log_path=log,
                                      run_id=new_run_id(self.paths.repo_key, self.paths.tag))
        finally:
            self.display.run_finished()
        run_id = self.ledger.add_run(
            exp.id, role=role, idx=index, commit_sha=commit, status=m.status,
            exit_code=m.exit_code, duration_s=m.duration_s, log_path=str(log),
            fingerprint=m.fingerprint, fingerprint_key=m.fingerprint_key,
            started_at=m.started_at, metrics=m.metrics, attempt=attempt,
        )
        self.runs.setdefault(exp.id, []).extend(
            r for r in self.ledger.runs(exp.id) if r.id == run_id
        )
        if m.status == "interrupted":
            raise KeyboardInterrupt
        if self.row.fingerprint_key is None:
            self.ledger.update_session(self.row.id, fingerprint_key=m.fingerprint_key)
            self.row = self.ledger.session(self.row.tag) or self.row
        elif m.fingerprint_key != self.row.fingerprint_key:
            raise SessionStopped("the environment fingerprint changed mid-session "
                                 f"({m.fingerprint_key} vs {self.row.fingerprint_key}); "
                                 "measurements would not be comparable", exit_code=3)
        # The verify command itself must not alter what the harness protects.
        tampered = guardrails.protected_changes(self.paths.worktree, self.protected_hashes)
        if tampered:
            gitops.checkout(self.paths.worktree, commit)
            self.executor = InlineExecutor(self.config, self.paths.worktree, self.stop_event)
            raise SessionStopped(f"the verify command modified protected files: {', '.join(tampered)};"
                                 " they were restored. Fix the command so it leaves them alone.",
                                 exit_code=3)
        return m


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
