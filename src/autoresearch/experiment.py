"""What one experiment does, top to bottom: ask → guard → commit → run → judge → tell.

Each experiment is a trial's *program*: a generator that yields the runs it needs (`RunRequest`)
and is sent back their measurements, while everything else it does (asking the proposer,
checking and committing the change, recording) happens on the scheduler's thread. The scheduler
keeps several programs going, one per slot, so runs overlap and nothing else does; with one
slot this is the plain serial loop.

Every path through a program ends its trial: a verdict, or, when anything stops it early (Ctrl-C,
SIGTERM, a fatal proposer error, the session stopping), `ended_early` records it interrupted (or
as the crash it was), parked and reset, before the exception goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from autoresearch import gitops, guardrails
from autoresearch.decision import IDENTICAL_REL, identical
from autoresearch.errors import ProposalError
from autoresearch.gitops.commits import commit_change
from autoresearch.gitops.history import diff
from autoresearch.gitops.status import changed_paths
from autoresearch.judge import hidden_noise_stop, judge, noise_accounted_for
from autoresearch.ledger import TrialStatus
from autoresearch.proposers.base import InFlight, Meter, Proposal, ProposalContext
from autoresearch.proposers.faults import (
    FatalProposerError,
    OutOfTime,
    ProposerOutage,
    usage_of,
)
from autoresearch.runner import log_tail
from autoresearch.sequential import HIDDEN_NOISE_HINT
from autoresearch.session import Session, SessionStopped, read_program
from autoresearch.statuses import happened
from autoresearch.stop_signals import describe_interrupt
from autoresearch.trial import Program, Trial

OUTAGE_WAITS = (30.0, 60.0, 120.0, 300.0, 600.0)
T = TypeVar("T")


class NothingLeftToTry(Exception):
    """The proposer has nothing left to try: no new trial starts; the others finish."""


def baseline(s: Session, trial: Trial) -> Program:
    """Measure the unchanged code `repeats` times: the first incumbent and the noise floor."""
    config = s.config
    commit = s.row.base_commit
    repeats = config.decision.baseline_repeats(config.verify.budget_seconds)
    with ended_early(s, trial):
        trial.base_measured(commit, gitops.tree_of(s.root, commit), _initial_params(s, trial))
        s.display.experiment_started(trial.id, f"baseline ({repeats} run{'s' * (repeats > 1)})")
        values: list[float] = []
        for _ in range(repeats):
            m = yield s.run_request(trial, "candidate", commit)
            if not m.ok:
                s.end(trial, TrialStatus(m.status), f"baseline {m.status}: {m.reason}")
                raise SessionStopped(
                    f"the baseline {happened(m.status)} ({m.reason}): the unchanged code must pass the "
                    f"verify command first. Log: {m.log_path}", exit_code=5)
            missing = config.guards_missing_from(m.metrics)
            if missing:
                # Such a guard fails every candidate: the night would discard each improvement.
                # The baseline ends as a crash, so the session reruns it once this is fixed.
                s.end(trial, TrialStatus.CRASH, "baseline crash: " + "; ".join(missing))
                raise SessionStopped(
                    "; ".join(missing) + " of the unchanged code: a guard on a metric that is "
                    "never printed fails every candidate, so each improvement would be discarded."
                    " Print the metric, or fix the guard's name in autoresearch.toml, then run "
                    f"the same command to resume. Log: {m.log_path}", exit_code=5)
            if not values:
                unseen = [n for n in config.metric.heldout if n not in m.metrics]
                if unseen:  # nothing to compare after a keep: the check would be silent all night
                    said = (f"[metric] heldout names {', '.join(unseen)}, which the baseline's run "
                            "did not print: no held-out check can happen for it. Print it, or "
                            "remove it from [metric] heldout in autoresearch.toml")
                    event(s, trial, "warning", said)
                    s.display.message("warning: " + said, "yellow")
            values.append(m.objective or 0.0)
        mean = sum(values) / len(values)
        if len(values) > 1 and len(set(values)) == 1 and not noise_accounted_for(config, mean):
            # Every candidate would be discarded as "σ = 0, hidden noise" all night: say it now.
            # Ended as a crash, so that the session measures its baseline again once fixed.
            s.end(trial, TrialStatus.CRASH, f"baseline: its {len(values)} runs were identical "
                  "(σ = 0: the noise is hidden, not absent)")
            raise hidden_noise_stop(config, f"the baseline's {len(values)} runs all gave "
                                    f"{config.metric.name} = {values[0]:.6g}", mean)
        if len(values) > 1 and identical(values) and len(set(values)) > 1:
            # Not a verdict (a large offset spreads as little): a hint, in case the command
            # ignores its seed and what varies is a computation's float jitter.
            event(s, trial, "warning", f"the baseline's {len(values)} runs differ by less than "
                  f"{IDENTICAL_REL:g} of their value: if the verify command ignores its seed, the "
                  "noise measured is float jitter, not the noise between seeds, and the verdict "
                  f"will trust tiny differences. {HIDDEN_NOISE_HINT}")
        noise = s.history.noise()
        s.display.tally.baseline = mean
        s.end(trial, TrialStatus.KEEP, f"baseline: {len(values)} run(s), mean {mean:.6g}, "
            f"noise {noise}", objective=mean)


def _initial_params(s: Session, trial: Trial) -> dict[str, object] | None:
    initial = getattr(s.proposer, "initial_params", None)
    if callable(initial):
        try:
            result = initial(trial.slot.worktree)
        except Exception:  # noqa: BLE001 - the baseline must not fail because of a proposer
            return None
        return dict(result) if result else None
    return None


def candidate(s: Session, trial: Trial, siblings: Callable[[], list[Trial]]) -> Program:
    """One proposed change, start to finish, in the trial's slot (`siblings`: the other trials
    in flight, which the proposer is told about and which this one must not duplicate)."""
    with ended_early(s, trial):
        s.display.experiment_started(trial.id, "proposing…")
        try:
            proposal = patiently(s, trial, lambda: s.proposer.propose(
                context(s, trial, in_flight(siblings()))))
        except ProposalError as exc:
            trial.bill(usage_of(exc))
            meant = str(getattr(exc, "hypothesis", ""))
            if meant:
                trial.meant(meant)
            s.end(trial, TrialStatus.REJECTED, failed_proposal_reason(exc))
            return
        if proposal is None:
            why = "the proposer has nothing left to try (search space exhausted)"
            if not trial.abandon():  # it spent something (an outage waited out): keep its row
                s.end(trial, TrialStatus.INTERRUPTED, why)
            raise NothingLeftToTry(why)
        while True:
            if not commit(s, trial, proposal, siblings()):
                return
            assert trial.commit is not None
            if s.policy.control_due(s.history.runs_since_measured(trial.parent)):
                # The incumbent is re-measured as a control arm, right before the candidate.
                control = yield s.run_request(trial, "control", trial.parent)
                if not control.ok:
                    event(s, trial, "warning", f"the incumbent's control run {happened(control.status)} "
                          f"({control.reason}): an unstable environment?")
            first = yield s.run_request(trial, "candidate", trial.commit)
            if first.ok:
                break
            trial.failed = first
            repaired = repair(s, trial, proposal)
            if repaired is None:
                s.end(trial, TrialStatus(first.status), first.reason)
                return
            s.slots.reset(trial.slot, trial.parent)
            event(s, trial, "repair", f"attempt {trial.attempt + 1}: {repaired.hypothesis}")
            trial.next_attempt(repaired.hypothesis)
            proposal = repaired
        yield from judge(s, trial)


def failed_proposal_reason(exc: ProposalError) -> str:
    """The decision reason of a proposal that failed: what went wrong and, when the proposer
    knows it, the fix (e.g. "raise [proposer] max_tokens"), on one line: the ledger and every
    view show this reason, and the fix is what makes it actionable."""
    reason = f"proposal failed: {exc.what}"
    if exc.fix:
        reason += "; fix: " + " ".join(exc.fix.split())
    return reason


def in_flight(siblings: list[Trial]) -> list[InFlight]:
    """What a proposer is told of the trials running in other slots: what they try."""
    return [InFlight(t.id, t.hypothesis, t.params) for t in siblings if t.proposal is not None]


def context(s: Session, trial: Trial, in_flight: list[InFlight]) -> ProposalContext:
    """What the proposer sees; its worktree is the trial's slot, holding the incumbent."""
    history = s.history
    incumbent, base_row = history.incumbent, history.baseline
    base, tip = s.row.base_commit, trial.parent
    root = s.root
    return ProposalContext(
        session_tag=s.row.tag, worktree=trial.slot.worktree, config=s.config,
        program=read_program(s.root), scope_files=s.scope_files(tip),
        history=history.decided(),
        baseline=history.summary(base_row) if base_row else None,
        incumbent=history.summary(incumbent) if incumbent else None,
        stuck=history.streaks.without_keep >= s.config.decision.stuck_after,
        last_crash_log=history.last_crash_log,
        metric_name=s.config.metric.name, direction=s.config.metric.direction,
        diff_from_baseline=lambda: diff(root, base, tip), experiment_id=trial.id,
        in_flight=in_flight,
        meter=Meter(record=lambda u: trial.bill([u]), stop_reason=s.spend_limit_reached,
                    deadline=s.limits.deadline),
    )


def patiently(s: Session, trial: Trial, call: Callable[[], T], purpose: str | None = None) -> T:
    """`call()` (a proposer call), waiting out provider outages: pause, ask again, lose nothing.
    The session's time limit ends it (a call the proposer cut there, or a pause past it)."""
    waits = iter(OUTAGE_WAITS)
    while True:
        # A coding agent runs as the same user: what it did to the ledger stops the session.
        s.watch_ledger(f"(noticed before the proposer's call for {trial.id})")
        try:
            try:
                result = call()
            finally:
                s.watch_ledger(f"(noticed after the proposer's call for {trial.id})")
            return result
        except OutOfTime as late:
            trial.bill(usage_of(late), purpose)
            raise SessionStopped(f"the time limit was reached while the proposer was at work "
                                 f"({late.what})") from None
        except ProposerOutage as outage:
            trial.bill(usage_of(outage), purpose)
            wait = outage.retry_after_s or next(waits, OUTAGE_WAITS[-1])
            deadline = s.limits.deadline
            if deadline is not None and time.time() + wait > deadline:
                # Waiting would end past the time limit, and the experiment after it too.
                raise SessionStopped(f"the time limit was reached while the proposer was "
                                     f"unavailable ({outage.what})") from None
            s.mark("paused")
            event(s, trial, "outage", f"proposer unavailable ({outage.what}); retrying in "
                  f"{wait:.0f} s")
            s.display.message(f"proposer unavailable: {outage.what}; waiting {wait:.0f} s",
                              "yellow")
            if s.stop_event.wait(wait):
                raise KeyboardInterrupt from None
            s.mark("running")


def commit(s: Session, trial: Trial, proposal: Proposal, siblings: list[Trial]) -> bool:
    """Guard, apply and commit a proposal in the slot; False when refused (the trial ended)."""
    worktree = trial.slot.worktree
    rules = guardrails.Rules(s.config.scope, s.config.all_protected)
    guardrails.clean_proposal_text(proposal)  # untrusted prose, before it is shown or recorded
    s.display.experiment_started(trial.id, proposal.hypothesis)
    # The proposal first, then its bill: a kill -9 between the proposer's answer and these
    # writes then loses the least (an interrupted experiment keeps what was proposed).
    trial.propose(proposal)
    if trial.attempt == 1:
        trial.bill(proposal.usage)
    if proposal.in_worktree:
        paths = changed_paths(worktree)
        problems = guardrails.check_changed_paths(worktree, paths, rules)
    else:
        paths = list(proposal.edits)
        problems = guardrails.check_edits(worktree, proposal.edits, rules)
    if problems:
        refuse(s, trial, "refused by the guardrails: " + "; ".join(problems))
        return False
    if not proposal.in_worktree:
        guardrails.apply_edits(worktree, proposal.edits)
    change = commit_change(worktree, trial.commit_message(proposal), paths)
    duplicate = duplicate_of(s, change.tree, trial, siblings)
    if duplicate:
        # The commit is left unreferenced: nothing will run it, and git collects it eventually.
        refuse(s, trial, duplicate)
        return False
    trial.commit_made(change)
    return True


def refuse(s: Session, trial: Trial, reason: str) -> None:
    """A proposal that will not run: rejected; but a refused repair leaves the crash it was for."""
    crashed = trial.repairing
    if crashed is None:
        s.end(trial, TrialStatus.REJECTED, reason)
    else:
        s.end(trial, TrialStatus(crashed.status),
            f"{crashed.reason}; its repair was not run: {reason}")


def duplicate_of(s: Session, tree: str, trial: Trial, siblings: list[Trial]) -> str | None:
    """Why a tree need not run: it is the parent's, a decided experiment's or a sibling's."""
    incumbent = s.history.incumbent
    parent_tree = (incumbent.tree_sha if incumbent and incumbent.commit_sha == trial.parent
                   and incumbent.tree_sha else gitops.tree_of(s.root, trial.parent))
    if tree == parent_tree:
        return "the proposal changes nothing"
    for e in s.history.experiments:
        if e.tree_sha == tree and e.status != TrialStatus.INTERRUPTED:
            return f"duplicate of {e.id} (same resulting files): not run again"
    for sibling in siblings:
        if sibling.change is not None and sibling.change.tree == tree:
            return f"duplicate of {sibling.id} (same resulting files, running now): not run again"
    return None


def repair(s: Session, trial: Trial, failed: Proposal) -> Proposal | None:
    """A fix for the crashed run `trial.failed`, or None to give up. Outages are waited out; a
    fatal proposer error propagates (`ended_early` ends the trial as the crash it is)."""
    assert trial.failed is not None
    s.history.last_crash_log = log_tail(trial.failed.log_path)
    if trial.attempt > s.config.decision.max_repair_attempts:
        return None
    over = s.spend_limit_reached()
    if over:
        # The spending limit is checked between experiments; a repair is one more call.
        event(s, trial, "repair", f"no repair asked for: {over}")
        return None
    try:
        fix = patiently(s, trial, lambda: s.proposer.repair(
            context(s, trial, []), failed, s.history.last_crash_log or ""), purpose="repair")
    except ProposalError as exc:
        trial.bill(usage_of(exc), purpose="repair")
        event(s, trial, "repair", f"repair attempt failed: {exc}")
        return None
    if fix is not None:
        trial.bill(fix.usage, purpose="repair")
    return fix


@contextmanager
def ended_early(s: Session, trial: Trial) -> Iterator[None]:
    """Whatever stops a trial early still ends it recorded, parked and reset."""
    try:
        yield
    except BaseException as exc:
        if not trial.done and not isinstance(exc, NothingLeftToTry):
            abandoned(s, trial, exc)
        raise


def abandoned(s: Session, trial: Trial, exc: BaseException) -> None:
    """End a trial an exception cut short (the caller re-raises it)."""
    trial.bill(usage_of(exc), purpose="repair" if trial.failed else None)
    status = TrialStatus.INTERRUPTED
    if isinstance(exc, FatalProposerError) and trial.failed is not None:
        # The candidate did crash; only its repair could not be asked for.
        status = TrialStatus(trial.failed.status)
        reason = f"{trial.failed.reason}; the repair stopped: {exc.what}"
    elif isinstance(exc, FatalProposerError):
        reason = f"the proposer stopped with a fatal error: {exc.what}"
    elif isinstance(exc, KeyboardInterrupt):
        during = " during the baseline" if trial.kind == "baseline" else ""
        reason = f"interrupted{during} by {describe_interrupt(exc)}"
    elif isinstance(exc, SessionStopped):
        reason = f"the session stopped: {exc.reason}"
    else:
        reason = f"the harness stopped on an error: {exc!r}"
    trial.proposal = None
    s.end(trial, status, reason)


def event(s: Session, trial: Trial, kind: str, message: str) -> None:
    s.event(kind, message, trial.id)
