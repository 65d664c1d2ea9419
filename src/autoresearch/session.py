"""A research session: open (or resume) it, keep git and the ledger consistent, record every run.

The session is where the parts meet: the ledger and its in-memory mirror (`History`), the
proposer, the slots and the executor, the verdict policy. It opens a session (refusing, before
anything is recorded, what cannot work), recovers after any stop (kill -9 included:
`recovery.py`), creates trials, turns a trial's run into a request and records its measurement, and closes. The order of
work is the scheduler's (`scheduler.py`); what one experiment does is its program
(`experiment.py`, `judge.py`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autoresearch import gitops, guardrails, heldout, resources, shared_paths, timeouts
from autoresearch.budget import SPEND_STOP, active_seconds, session_spend
from autoresearch.checkout_sync import (
    SessionBranch,
    follow_head,
    refuse_session_branch_checked_out,
)
from autoresearch.config import CONFIG_NAME, PROGRAM_NAME, Config
from autoresearch.display import Display, failure_line
from autoresearch.errors import PreconditionError
from autoresearch.evaluation_inputs import EvaluationInputs
from autoresearch.executor import (
    Executor,
    LocalExecutor,
    Measurement,
    RunRequest,
    local_run_env,
    make_executor,
    new_run_id,
    threads_given,
)
from autoresearch.gitops.housekeeping import pack_refs, tidy
from autoresearch.gitops.object_seal import ObjectSeal
from autoresearch.globs import select
from autoresearch.history import History, run_seed
from autoresearch.ledger import Ledger, RunRow, SessionRow, TrialStatus
from autoresearch.ledger.activity import STOP_EVENT
from autoresearch.ledger_watch import LedgerWatch
from autoresearch.policy import Policy, policy_for
from autoresearch.proposers.base import ExperimentOutcome, Proposal, Proposer
from autoresearch.proposers.registry import load_proposer
from autoresearch.readiness import (
    check_preconditions,
    guards_unmeasured,
    proposer_readiness,
)
from autoresearch.recovery import recover
from autoresearch.resume_contract import (
    REMEASURE_FIX,
    RESUME_FIX,
    same_environment,
    same_inputs,
    same_machine,
    same_measurement,
    threads_at_start,
)
from autoresearch.review.gate import check_gate, gate_warnings
from autoresearch.slots import Slot, Slots, plan_resources
from autoresearch.state import SessionLock, StatePaths, ensure_state_dir
from autoresearch.stop_signals import SessionStopped
from autoresearch.trial import Trial
from autoresearch.views.format import fmt_usd

__all__ = ["Limits", "Session", "SessionStopped", "check_preconditions", "proposer_readiness",
           "read_program"]

# Housekeeping (gitops.housekeeping): the refs are packed every PACK_REFS_EVERY experiments
# while a session runs, and the refs and objects when it ends; the end's is told when it took
# TIDY_TELL_S or more.
PACK_REFS_EVERY = 500
TIDY_TELL_S = 2.0


@dataclass
class Limits:
    iterations: int | None = None  # experiments in the session in total, baseline included
    deadline: float | None = None  # wall-clock time.time() after which no experiment starts
    max_usd: float | None = None


class Session:
    """Owns one session's state while it runs; `scheduler.run_session` runs it.

    `executor` decides where runs happen (default: this machine, in each slot's worktree,
    stopped by `stop_event`); `proposer` replaces the configured one (tests, benchmarks,
    embedding); `workers` overrides `[run] workers`.
    """

    def __init__(self, root: Path, config: Config, tag: str, display: Display,
                 proposer: Proposer | None = None, executor: Executor | None = None,
                 workers: int | None = None) -> None:
        self.root = root
        self.config = config
        self.paths = StatePaths(root, tag)
        self.display = display
        self.stop_event = threading.Event()
        # The run's limits (the scheduler sets them): also checked inside an experiment, while
        # an outage is waited out and before a repair is asked for.
        self.limits = Limits()
        self.workers = workers or config.run.workers
        # [run] threads: "auto" is measured once per session and pinned (resources.py), then
        # shared out among the slots; [verify] share: the checkout's data linked into each slot.
        # The pin is the first file written, before the preconditions: in an ignored directory.
        ensure_state_dir(self.paths.state_dir)
        self.thread_plan = resources.effective(resources.session_threads(
            config.run, self.paths.session_dir / "threads.json"), config.verify.env)
        shared = shared_paths.collect(root, config) if config.verify.share else None
        # [verify] inputs: the evaluation's files outside the repository, held fixed.
        self.inputs = EvaluationInputs.collect(root, config.verify.inputs)
        self.slots = Slots(root, self.paths, self.workers,
                           plan_resources(config.run, self.workers, self.thread_plan), shared)
        self.executor: Executor = executor or make_executor(config, self.stop_event, self.workers,
                                                            shared, self.inputs)
        self.policy: Policy = policy_for(config.decision, config.metric.direction)
        self.ledger: Ledger
        self.row: SessionRow
        self.history: History
        self.proposer: Proposer
        self.proposer_why = ""
        self.readiness: str | None = None
        self.review_gate = "review gate off"  # what the [review] gate will do, said at open
        self.notices: list[str] = []  # what the user must know about this start, said at open
        self._given_proposer = proposer
        self._proposer_open = False
        self.lock = SessionLock(self.paths.lock)
        # The session branch, moved only from where the session last set it (recovery sets it).
        self.branch = SessionBranch(root, self.paths)
        self.watch: LedgerWatch | None = None  # set once the session's row is known
        self.protected_hashes: dict[str, str] = {}
        self._run_numbers: dict[tuple[str, str, int], int] = {}  # (trial, role, attempt) -> next
        self._scope_cache: dict[str, list[str]] = {}
        self._ended_here = 0  # trials this process ended: see PACK_REFS_EVERY

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

    def open_to_measure(self) -> None:
        """Open an existing session to measure it again (`report --verify`), not to research: the
        lock and the recovery as for a resume, but no proposer and no new experiment."""
        self.paths.prepare()
        self.lock.acquire()
        try:
            self.ledger = Ledger(self.paths.ledger)
            row = self.ledger.session(self.paths.tag)
            if row is None:
                raise PreconditionError(f"no session {self.paths.tag!r} in this repository",
                                        where=str(self.paths.ledger),
                                        fix="name one that ran here with --tag")
            self._same_machine(row, fix=REMEASURE_FIX)
            self.row = row
            same_inputs(self.ledger, row, self.inputs)
            self.history = History(self.config, self.ledger, row)
            self._same_measurement()
            tip = recover(self)
            self.protected_hashes = self._protected_reference(tip)
            self.watch = LedgerWatch(self.ledger, self.paths, row.id, self.lock)
        except BaseException:
            if hasattr(self, "ledger"):
                self.ledger.checkpoint()
            self.lock.release()
            raise

    def _open_locked(self) -> None:
        refuse_session_branch_checked_out(self.root, self.paths.branch)
        self.ledger = Ledger(self.paths.ledger)
        row = self.ledger.session(self.paths.tag)
        if row is None and gitops.ref_exists(self.root, f"refs/heads/{self.paths.branch}"):
            raise PreconditionError(
                f"branch {self.paths.branch} exists but this repo's ledger has no session "
                f"{self.paths.tag!r}", where=str(self.root),
                fix=f"pick another --tag, or delete the branch: git branch -D {self.paths.branch}",
            )
        if row is not None:
            self._same_machine(row)
        # Everything that can refuse the start happens before a new session is recorded: a failed
        # start must not leave an empty session behind (it would become the default tag).
        # [review] gate (issue 11): a gate that cannot work (LLM reviewers without a key) refuses.
        self.review_gate = check_gate(self.config.review, self.config.proposer)
        # A gate that works but not as it reads (a cap no LLM call fits under, a model with
        # no price): said at the start, as `check` says it.
        self.notices += gate_warnings(self.config.review, self.config.proposer,
                                      self.config.limits.max_usd)
        self._load_proposer()
        created = row is None
        if row is None:
            # The preconditions made HEAD's tracked files clean: they are the new session's base.
            self.readiness = proposer_readiness(self.proposer, self.root)
            row = self._create_row()
        self.row = row
        same_inputs(self.ledger, row, self.inputs)
        self.history = History(self.config, self.ledger, row)
        if not created:
            self._follow_head()
            self._same_measurement()
            self._same_threads()
        self.display.tally.metric = self.config.metric.name
        self.display.tally.direction = self.config.metric.direction
        tip = recover(self)
        first = self.slots.all[0].worktree
        if not created:  # resuming: the incumbent's files, where the knobs may have moved
            self.readiness = proposer_readiness(self.proposer, first)
            if self.history.baseline is not None:
                self.notices += guards_unmeasured(self.config, self.history.mean_metrics(tip))
        self.protected_hashes = self._protected_reference(tip)
        self.ledger.session_opened(row.id, proposer=self.proposer.name,
                                   config=self.config.to_json_dict())
        self.proposer.resume([self.history.outcome(e) for e in self.history.experiments
                              if e.status != TrialStatus.INTERRUPTED])
        self.watch = LedgerWatch(self.ledger, self.paths, row.id, self.lock)

    def _same_measurement(self) -> None:
        if self.row.config == self.config.to_json_dict():
            return  # nothing changed: no need to read the history here
        self.history.load()
        self.notices += same_measurement(self.row, self.config, self.history.baseline is not None,
                                         str(self.root / CONFIG_NAME))

    def _same_threads(self) -> None:
        """Runs made here get the thread count the slots' share gives them: refuse a resume
        that would change it (another --workers under "auto", another [run] threads) now, not
        at its first run. Runs made elsewhere (a cluster) are checked run by run."""
        if isinstance(self.executor, LocalExecutor):
            threads_at_start(self.ledger, self.row, threads_given(local_run_env(
                self.slots.all[0].resources, self.config.verify.env)))

    def _follow_head(self) -> None:
        followed = follow_head(self.root, self.config, self.ledger, self.row, self.history)
        if followed.restarted:
            self.row = followed.row
            self.history = History(self.config, self.ledger, self.row)
        self.notices += followed.notices

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

    def close(self, status: str | None = "stopped", stop_reason: str | None = None) -> None:
        """Release everything; `status` is recorded (None: left as it was), and `stop_reason`
        (why this run stopped, as `run` says it) as a "stop" event that `status` shows."""
        try:
            if self._proposer_open:
                self.proposer.close()
            self.executor.close()
        finally:
            try:
                if status is not None and self.ledger.refused is None:
                    if stop_reason:
                        self.event(STOP_EVENT, stop_reason)
                    self.ledger.set_session_status(self.row.id, status)
            finally:
                # Session end (any way it ends): fold the WAL into ledger.db and back it up, so
                # that copying ledger.db copies the research (see Ledger.checkpoint).
                self.ledger.checkpoint()
                self.lock.release()
                self._tidy_git()

    def _tidy_git(self) -> None:
        """Pack the refs and objects the session's experiments left in the repository (one ref
        file per discarded experiment, loose objects: see gitops.housekeeping), once the
        research is safe in the ledger and the lock is released (a resume need not wait for
        it). Best effort and bounded: a failure, a timeout or a Ctrl-C is said in one line."""
        started = time.monotonic()
        try:
            problem = tidy(self.root)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - never fails the session
            problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
        took = time.monotonic() - started
        if problem:
            self.display.message(f"! git housekeeping skipped ({problem}); the session's "
                                 "refs and commits are intact", style="yellow")
        elif took >= TIDY_TELL_S:
            self.display.message(f"git housekeeping: refs and objects packed ({took:.1f} s)",
                                 style="dim")

    # --- small services --------------------------------------------------------------------

    def mark(self, status: str) -> None:
        """The session's status while it runs: running, or paused while an outage is waited out."""
        self.ledger.set_session_status(self.row.id, status)

    def watch_ledger(self, moment: str) -> None:
        """Stop the session if another process changed the ledger since the last look (see
        ledger_watch): called before and after every proposer call and every run."""
        if self.watch is not None:
            self.watch.check(moment)

    def event(self, kind: str, message: str, exp_id: str | None = None,
              data: Mapping[str, Any] | None = None) -> None:
        self.ledger.add_event(self.row.id, kind, message, experiment_id=exp_id, data=data)

    def _same_machine(self, row: SessionRow, fix: str = RESUME_FIX) -> None:
        """Refuse to resume on another machine than the session measured on; when runs happen
        elsewhere (a cluster's nodes), each run's fingerprint is checked instead."""
        if isinstance(self.executor, LocalExecutor):
            same_machine(self.ledger, row, str(self.paths.ledger), fix)

    def _protected_reference(self, tip: str) -> dict[str, str]:
        """The protected files' hashes every run is held to, taken from the commit: written
        again into the first slot before they are hashed, so that a file a killed session left
        rewritten there (its stamps set back) cannot become the reference, and only from git
        objects that still hold what their ids say."""
        first = self.slots.all[0].worktree
        protected = guardrails.protected_among(gitops.tracked_files(first, tip),
                                               self.config.all_protected)
        ObjectSeal(first, tip, protected)  # refuses objects rewritten since they were committed
        gitops.checkout(first, tip, rewrite=protected)
        return guardrails.hash_files(first, protected)

    def scope_files(self, commit: str) -> list[str]:
        """In-scope files at a commit (cached: the incumbent changes rarely)."""
        cached = self._scope_cache.get(commit)
        if cached is None:
            cached = select(gitops.tracked_files(self.root, commit), self.config.scope)
            self._scope_cache = {commit: cached}
        return cached

    def worked_seconds(self) -> float:
        """How long the session has been at work so far (its experiments' and runs' spans,
        without the pauses between its processes): what `[limits] max_hours` counts."""
        return active_seconds(self.ledger.work_spans(self.row.id), time.time())

    def spend_limit_reached(self) -> str | None:
        """Why no further model call may be made (checked before each one), or None."""
        if self.limits.max_usd is not None:
            spend = session_spend(self.ledger, self.row.id,
                                  self.config.limits.compute_usd_per_hour)
            if spend.total_usd >= self.limits.max_usd:
                parts = f": {spend.describe()}" if spend.compute_usd is not None else ""
                return (f"{SPEND_STOP}: spent {fmt_usd(spend.total_usd)} of the "
                        f"{fmt_usd(self.limits.max_usd)} budget ([limits] max_usd){parts}")
        return None

    def affordable_seconds(self) -> float | None:
        """The machine time `[limits] max_usd` still pays for at `compute_usd_per_hour` (None:
        machine time is not priced, or there is no cap)."""
        per_hour = self.config.limits.compute_usd_per_hour
        if self.limits.max_usd is None or not per_hour:
            return None
        spent = session_spend(self.ledger, self.row.id, per_hour).total_usd
        return max(0.0, self.limits.max_usd - spent) / per_hour * 3600

    def incumbent_commit(self) -> str:
        incumbent = self.history.incumbent
        commit = incumbent.commit_sha if incumbent else None
        return commit or self.row.base_commit

    # --- trials ----------------------------------------------------------------------------

    def new_trial(self, slot: Slot, *, kind: str = "candidate") -> Trial:
        parent = self.row.base_commit if kind == "baseline" else self.incumbent_commit()
        self.slots.holding(slot, parent)
        return Trial.open(self.ledger, self.root, self.paths, self.row, slot, parent, kind=kind,
                          proposer="baseline" if kind == "baseline" else self.proposer.name,
                          hypothesis="baseline" if kind == "baseline" else "")

    def _next_index(self, trial: Trial, role: str) -> int:
        """The number of a trial's next run in `role` (counted when it starts: the headline's
        runs of one experiment go on in several slots at once)."""
        key = (trial.id, role, trial.attempt)
        if key not in self._run_numbers:
            self._run_numbers[key] = sum(1 for r in self.history.runs.get(trial.id, [])
                                         if r.role == role and r.attempt == trial.attempt)
        index = self._run_numbers[key]
        self._run_numbers[key] = index + 1
        return index

    def run_request(self, trial: Trial, role: str, commit: str,
                    seed: int | None = None) -> RunRequest:
        """The next run of `commit` for `trial`, with its seed (`seed`, or the commit's next:
        see `history.run_seed`)."""
        self.watch_ledger(f"(noticed before {trial.id}'s {role} run)")
        index = self._next_index(trial, role)
        if seed is None:
            seed = run_seed(self.row.tag, self.history.next_run_index(commit))
        self.slots.holding(trial.slot, commit)  # git stays on this thread, not the run's
        self.display.run_started(f"{trial.id} {role} {index + 1}",
                                 self.config.verify.budget_seconds,
                                 trial.slot.name if self.workers > 1 else "")
        return trial.run_request(role, commit, index=index, seed=seed,
                                 run_id=new_run_id(self.paths.repo_key, self.paths.tag),
                                 protected=self.protected_hashes)

    def guard_request(self, trial: Trial, number: int, command: str,
                      timeout_s: float) -> RunRequest:
        """A command guard, run in the trial's slot on its candidate (fenced like a run)."""
        assert trial.commit is not None
        return replace(trial.run_request(f"guard{number}", trial.commit, index=0, seed=None,
                                         # Its own id, as every run's: the processes of a
                                         # run are found (and killed when it ends) by it, and
                                         # two slots run the same guard at once.
                                         run_id=new_run_id(self.paths.repo_key, self.paths.tag),
                                         protected=self.protected_hashes),
                       command=command, timeout_s=timeout_s)

    def accept(self, trial: Trial, request: RunRequest, m: Measurement) -> Measurement:
        """Record a finished run (every run, interrupted ones too) and check what it did.

        A run that changed a protected file fails if it was a proposed change's own run (that
        candidate tampered); the baseline's or the incumbent's doing so stops the session. A run
        measured in another environment than the session's stops it too.
        """
        self.display.run_finished(trial.slot.name if self.workers > 1 else "")
        self.watch_ledger(f"(noticed after {trial.id}'s {request.role} run)")
        if request.is_guard:
            return m
        tampered = m.tampered
        candidate_did_it = (bool(tampered) and trial.kind != "baseline"
                            and request.role == "candidate" and m.status != "interrupted")
        if candidate_did_it:
            m = replace(m, status="crash", objective=None, reason=(
                f"the candidate's run modified protected files: {', '.join(tampered)} "
                "(restored); a change may not alter the evaluation"))
        hidden = heldout.left_out(self.config, self.history, trial, request, m)
        if hidden:
            m = replace(m, status="crash", objective=None, reason=(
                f"the candidate's run did not print the held-out metric {', '.join(hidden)}, "
                "which the incumbent's runs print: a change may not hide what checks it"))
        run_id = self.ledger.add_run(
            trial.id, role=m.role, idx=request.index, commit_sha=m.commit, status=m.status,
            exit_code=m.exit_code, duration_s=m.duration_s, log_path=str(m.log_path),
            fingerprint=m.fingerprint or None, fingerprint_key=m.fingerprint_key or None,
            started_at=m.started_at, metrics=m.metrics, attempt=trial.attempt,
        )
        run = self.ledger.run(run_id)
        assert run is not None
        self.history.add_run(run)
        self.size_timeout([run])
        if m.status == "interrupted":
            return m
        self.row = same_environment(self.ledger, self.row, m)
        if tampered and not candidate_did_it:
            raise SessionStopped(f"the verify command modified protected files: "
                                 f"{', '.join(tampered)}; they were restored. Fix the command so "
                                 "it leaves them alone.", exit_code=3)
        return m

    def size_timeout(self, runs: Iterable[RunRow]) -> None:
        """The verify timeout follows what the unchanged code's runs really take beyond the
        budget (startup, evaluation): see timeouts.py. Replayed runs count on resume."""
        for run in runs:
            sized = timeouts.observe(self.config.verify, self.row.base_commit, run)
            if sized:
                self.event("timeout", sized)

    def end(self, trial: Trial, status: TrialStatus, reason: str,
            objective: float | None = None) -> None:
        """The trial's verdict, recorded; then the slot, the streaks and the proposer follow."""
        trial.finish(status, reason, objective, move_branch=self._keep_on_branch)
        self.ended(trial, trial.proposal if status != TrialStatus.INTERRUPTED else None, reason)

    def _keep_on_branch(self, exp_id: str, commit: str) -> None:
        self.branch.keep(exp_id, commit, self.history, self.row.base_commit)

    def ended(self, trial: Trial, proposal: Proposal | None, reason: str) -> None:
        """After a trial's verdict: the slot back on the incumbent, the streaks, the proposer
        and the views told."""
        row = self.history.refresh(trial.id)
        if trial.status == TrialStatus.KEEP:
            self.display.tally.best = row.objective  # before the summary line is printed
        # A kept commit is reset too: its files are the incumbent's already, but what its runs
        # left in ignored files must not be there when the next candidate is measured.
        self.slots.reset(trial.slot, self.incumbent_commit())
        if trial.status in (TrialStatus.KEEP, TrialStatus.DISCARD):
            self.ledger.set_session_noise(self.row.id, self.history.noise().sigma)
        streaks = self.history.streaks
        streaks.record(trial.status)
        if trial.status in (TrialStatus.DISCARD, TrialStatus.CRASH, TrialStatus.TIMEOUT) and (
                streaks.without_keep == self.config.decision.stuck_after):
            self.event("stuck", f"{streaks.without_keep} consecutive experiments without a keep: "
                       "the proposer is told to change strategy", trial.id)
        if trial.status != TrialStatus.INTERRUPTED:
            self.proposer.observe(ExperimentOutcome(summary=self.history.summary(row),
                                                    proposal=proposal))
        self.history.write_results(self.paths.results_tsv, row)
        self._ended_here += 1
        if self._ended_here % PACK_REFS_EVERY == 0:
            # One ref file per discarded experiment: packed now and then, or every listing of
            # the refs (each agent run's guard makes two) reads thousands of files. Values stay,
            # worktrees' HEADs are not refs/ ones: safe while the slots work. Objects are left
            # to git (each experiment's `git commit` runs gc --auto) and to the session's end.
            pack_refs(self.root)
        if trial.status in (TrialStatus.CRASH, TrialStatus.TIMEOUT):
            failed = [r for r in self.history.runs.get(trial.id, [])
                      if r.status in ("crash", "timeout")]
            reason = failure_line(reason, failed[-1].log_path if failed else None,
                                  trial.slot.name if self.workers > 1 else "")
        self.display.experiment_finished(trial.id, trial.status, row.objective, row.delta, reason,
                                         row.hypothesis, baseline=row.kind == "baseline")


def read_program(root: Path) -> str:
    path = root / PROGRAM_NAME
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

