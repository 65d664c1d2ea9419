"""The ratchet: baseline first, then ask → guard → commit → run → judge → tell, until a limit.

Each experiment leases a slot (a worktree) from the executor and runs in it. Every path through
`experiment()` ends in `finish.finish`: the verdict recorded, the commit on the branch (keep) or
parked under refs/autoresearch/<tag>/discarded/<id>, the slot back on the incumbent. An exception
(Ctrl-C, SIGTERM, a fatal proposer error) ends the open experiment the same way, then goes on.

Overlapping experiments (an executor with several slots, leased from several threads) are safe
for the ledger and git: sequence numbers are allocated atomically, each experiment has its own
slot, and a keep whose base is no longer the incumbent is not kept (`verdict.settle`). What is
still session-wide, and so only approximate under overlap: the streak counters (in the order
experiments finish), `last_crash_log`, the duplicate check (it sees decided experiments only),
the session's paused/running status during an outage, and the display's single "now" line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from statistics import fmean, median
from typing import TypeVar

from autoresearch import gitops, guardrails
from autoresearch.config import Config
from autoresearch.errors import ProposalError
from autoresearch.finish import Work, finish, finished_on_error, record_usage
from autoresearch.proposers.base import Proposal, ProposalContext
from autoresearch.proposers.faults import ProposerOutage, usage_of
from autoresearch.session import Limits, Session, SessionStopped, read_program
from autoresearch.statuses import happened
from autoresearch.verdict import judge, settle

__all__ = ["Limits", "baseline", "effective_limits", "experiment", "limit_reached", "run"]

OUTAGE_WAITS = (30.0, 60.0, 120.0, 300.0, 600.0)
T = TypeVar("T")


def run(session: Session, limits: Limits) -> str:
    """Loop until a limit; returns why it stopped. Raises KeyboardInterrupt on Ctrl-C."""
    session.limits = limits
    if session.baseline is None:
        if limits.iterations is not None and session.counted() >= limits.iterations:
            return f"reached {limits.iterations} experiments"
        baseline(session)
    while True:
        reason = limit_reached(session, limits)
        if reason:
            return reason
        experiment(session)
        pause_if_failing(session)


def pause_if_failing(session: Session) -> None:
    """Pause (exit 5) on a streak that more of the same will not end, rather than burn the night."""
    decision, streaks = session.config.decision, session.streaks
    logs = f"{session.paths.session_dir}/logs"
    if streaks.crashes >= decision.max_consecutive_crashes:
        raise SessionStopped(
            f"paused after {streaks.crashes} consecutive crashes: something is broken beyond one "
            f"change. Read the last logs in {logs}, fix the cause, then run the same command to "
            "resume.", exit_code=5)
    if streaks.rejections >= decision.max_consecutive_rejections:
        last = session.history[-1].decision_reason if session.history else ""
        raise SessionStopped(
            f"paused after {streaks.rejections} consecutive rejected experiments (refused, "
            f"duplicate or failed proposals): the proposer is not producing usable changes. Last "
            f"reason: {last}. Fix the cause (the proposer's configuration, the scope, the model "
            "endpoint), then run the same command to resume.", exit_code=5)


def limit_reached(session: Session, limits: Limits) -> str | None:
    if limits.iterations is not None and session.counted() >= limits.iterations:
        return f"reached {limits.iterations} experiments"
    if limits.deadline is not None:
        durations = [e.duration_s for e in session.history[-10:] if e.duration_s]
        expected = median(durations) if durations else 0.0
        if time.time() + expected > limits.deadline:
            return "the time limit would be exceeded by another experiment"
    return spend_limit_reached(session, limits)


def spend_limit_reached(session: Session, limits: Limits) -> str | None:
    if limits.max_usd is not None:
        spent = session.ledger.usage_totals(session.row.id)["cost_usd"]
        if spent >= limits.max_usd:
            return f"spent ${spent:.2f} of the ${limits.max_usd:.2f} budget"
    return None


def baseline(session: Session) -> None:
    """Measure the unchanged code `repeats` times: the first incumbent and the noise floor."""
    config = session.config
    commit = session.row.base_commit
    repeats = config.decision.baseline_repeats(config.verify.budget_seconds)
    with session.executor.lease() as slot:
        exp = session.ledger.create_experiment(
            session.row, kind="baseline", status="running", hypothesis="baseline",
            proposer="baseline", parent_commit=None, worker=slot.name,
        )
        work = Work(exp, slot, parent=commit)
        with finished_on_error(session, work):
            session.ledger.update_experiment(exp.id, commit_sha=commit,
                                             tree_sha=gitops.tree_of(session.root, commit))
            session.display.experiment_started(exp.id, f"baseline ({repeats} run"
                                               f"{'s' * (repeats > 1)})")
            params = _initial_params(session, work)
            if params:
                session.ledger.update_experiment(exp.id, params=params)
            values = []
            for _ in range(repeats):
                m = session.measure(exp, slot, commit, "candidate")
                if not m.ok:
                    finish(session, work, m.status, f"baseline {m.status}: {m.reason}", None)
                    raise SessionStopped(
                        f"the baseline {happened(m.status)} ({m.reason}): the unchanged code "
                        f"must pass the verify command first. Log: {m.log_path}", exit_code=5)
                values.append(m.objective or 0.0)
            noise = session.noise()
            mean = fmean(values)
            session.display.tally.baseline = session.display.tally.best = mean
            finish(session, work, "keep", f"baseline: {len(values)} run(s), mean {mean:.6g}, "
                   f"noise {noise}", None, objective=mean)
            session.ledger.update_session(session.row.id, noise=noise.sigma)


def _initial_params(session: Session, work: Work) -> dict[str, object] | None:
    initial = getattr(session.proposer, "initial_params", None)
    if callable(initial):
        try:
            result = initial(work.slot.worktree)
        except Exception:  # noqa: BLE001 - the baseline must not fail because of a proposer
            return None
        return dict(result) if result else None
    return None


def context(session: Session, work: Work) -> ProposalContext:
    """What the proposer sees; its worktree is the experiment's slot, holding the incumbent."""
    incumbent = session.incumbent
    base = session.row.base_commit
    tip = incumbent.commit_sha if incumbent and incumbent.commit_sha else base
    root = session.root
    return ProposalContext(
        session_tag=session.row.tag, worktree=work.slot.worktree, config=session.config,
        program=read_program(session.root),
        scope_files=session.scope_files(tip),
        history=[session.summary(e) for e in session.history if e.status != "interrupted"],
        baseline=session.summary(session.baseline) if session.baseline else None,
        incumbent=session.summary(incumbent) if incumbent else None,
        stuck=session.streaks.without_keep >= session.config.decision.stuck_after,
        last_crash_log=session.last_crash_log,
        metric_name=session.config.metric.name, direction=session.config.metric.direction,
        diff_from_baseline=lambda: gitops.diff(root, base, tip), experiment_id=work.exp.id,
    )


def patiently(session: Session, work: Work, call: Callable[[], T], purpose: str | None = None) -> T:
    """`call()` (a proposer call), waiting out provider outages: pause, ask again, lose nothing."""
    waits = iter(OUTAGE_WAITS)
    while True:
        try:
            return call()
        except ProposerOutage as outage:
            record_usage(session, work.exp.id, usage_of(outage), purpose)
            wait = outage.retry_after_s or next(waits, OUTAGE_WAITS[-1])
            deadline = session.limits.deadline
            if deadline is not None and time.time() + wait > deadline:
                # Waiting would end past the time limit, and the experiment after it too.
                raise SessionStopped(f"the time limit was reached while the proposer was "
                                     f"unavailable ({outage.what})") from None
            session.ledger.update_session(session.row.id, status="paused")
            session.event("outage", f"proposer unavailable ({outage.what}); retrying in {wait:.0f} s",
                          work.exp.id)
            session.display.message(f"proposer unavailable: {outage.what}; waiting {wait:.0f} s",
                                    "yellow")
            if session.stop_event.wait(wait):
                raise KeyboardInterrupt from None
            session.ledger.update_session(session.row.id, status="running")


def experiment(session: Session) -> None:
    """One experiment, start to finish, in a slot leased from the executor."""
    incumbent = session.incumbent
    assert incumbent is not None and incumbent.commit_sha is not None
    with session.executor.lease() as slot:
        exp = session.ledger.create_experiment(
            session.row, status="proposed", proposer=session.proposer.name,
            parent_commit=incumbent.commit_sha, worker=slot.name,
        )
        work = Work(exp, slot, parent=incumbent.commit_sha)
        session.display.experiment_started(exp.id, "proposing…")
        with finished_on_error(session, work):
            try:
                proposal = patiently(session, work, lambda: session.proposer.propose(
                    context(session, work)))
            except ProposalError as exc:
                record_usage(session, exp.id, usage_of(exc))
                meant = getattr(exc, "hypothesis", "")
                if meant:
                    session.ledger.update_experiment(exp.id, hypothesis=meant)
                finish(session, work, "rejected", f"proposal failed: {exc.what}", None)
                return
            if proposal is None:
                session.ledger.discard_unstarted(exp.id)
                work.done = session.ledger.experiment(exp.id) is None  # else: ended below
                raise SessionStopped("the proposer has nothing left to try (search space "
                                     "exhausted)")
            while True:
                if not _commit(session, work, proposal):
                    return
                assert work.commit is not None
                first = session.measure(exp, slot, work.commit, "candidate", work.attempt)
                if first.ok:
                    break
                work.failed = first
                repaired = _repair(session, work, proposal)
                if repaired is None:
                    finish(session, work, first.status, first.reason, proposal)
                    return
                proposal = _next_attempt(session, work, repaired)
            verdict = judge(session, work, incumbent, first.objective or 0.0)
            if verdict is not None:
                settle(session, work, incumbent, verdict, proposal)


def _commit(session: Session, work: Work, proposal: Proposal) -> bool:
    """Guard, apply and commit a proposal in the slot; False when refused (recorded as rejected)."""
    exp, worktree = work.exp, work.slot.worktree
    rules = guardrails.Rules(session.config.scope, session.config.all_protected)
    guardrails.clean_proposal_text(proposal)  # untrusted prose, before it is shown or recorded
    session.display.experiment_started(exp.id, proposal.hypothesis)
    if work.attempt == 1:
        session.ledger.update_experiment(exp.id, hypothesis=proposal.hypothesis,
                                         rationale=proposal.rationale, params=proposal.params)
        record_usage(session, exp.id, proposal.usage)
    if proposal.in_worktree:
        paths = gitops.changed_paths(worktree)
        problems = guardrails.check_changed_paths(worktree, paths, rules)
    else:
        paths = list(proposal.edits)
        problems = guardrails.check_edits(worktree, proposal.edits, rules)
    if problems:
        _refuse(session, work, "refused by the guardrails: " + "; ".join(problems), proposal)
        return False
    if not proposal.in_worktree:
        guardrails.apply_edits(worktree, proposal.edits)
    message = f"{proposal.hypothesis.strip() or 'experiment'}\n\n"
    if proposal.rationale.strip():
        message += proposal.rationale.strip() + "\n\n"
    message += f"Experiment-Id: {exp.id}\n"
    change = gitops.commit_change(worktree, message, paths)
    duplicate = _duplicate_of(session, change.tree, work.parent)
    if duplicate:
        # The commit is left unreferenced: nothing will run it, and git collects it eventually.
        _refuse(session, work, duplicate, proposal)
        return False
    work.change = change
    session.ledger.update_experiment(
        exp.id, status="running", commit_sha=change.sha, tree_sha=change.tree, files=change.files,
        lines_added=change.lines_added, lines_removed=change.lines_removed,
    )
    return True


def _refuse(session: Session, work: Work, reason: str, proposal: Proposal) -> None:
    """A proposal that will not run: rejected; but a refused repair leaves the crash it was for."""
    crashed = work.repairing
    if crashed is None:
        finish(session, work, "rejected", reason, proposal)
    else:
        finish(session, work, crashed.status, f"{crashed.reason}; its repair was not run: {reason}",
               proposal)


def _duplicate_of(session: Session, tree: str, parent: str) -> str | None:
    """Why a tree need not run: it is the parent's, or a decided experiment's. (With overlapping
    experiments, one still running with the same tree is not seen: both run.)"""
    incumbent = session.incumbent
    parent_tree = (incumbent.tree_sha if incumbent and incumbent.commit_sha == parent
                   and incumbent.tree_sha else gitops.tree_of(session.root, parent))
    if tree == parent_tree:
        return "the proposal changes nothing"
    for e in session.history:
        if e.tree_sha == tree and e.status not in ("interrupted",):
            return f"duplicate of {e.id} (same resulting files): not run again"
    return None


def _repair(session: Session, work: Work, failed: Proposal) -> Proposal | None:
    """A fix for the crashed run `work.failed`, or None to give up. Outages are waited out; a
    fatal proposer error propagates (`finished_on_error` ends the experiment as the crash it is)."""
    assert work.failed is not None
    session.last_crash_log = session.executor.log_tail(work.failed.log_path)
    if work.attempt > session.config.decision.max_repair_attempts:
        return None
    over = spend_limit_reached(session, session.limits)
    if over:
        # The spending limit is checked between experiments; a repair is one more call.
        session.event("repair", f"no repair asked for: {over}", work.exp.id)
        return None
    try:
        fix = patiently(session, work, lambda: session.proposer.repair(
            context(session, work), failed, session.last_crash_log or ""), purpose="repair")
    except ProposalError as exc:
        record_usage(session, work.exp.id, usage_of(exc), purpose="repair")
        session.event("repair", f"repair attempt failed: {exc}", work.exp.id)
        return None
    if fix is not None:
        session.event("repair", f"attempt {work.attempt + 1}: {fix.hypothesis}", work.exp.id)
        record_usage(session, work.exp.id, fix.usage, purpose="repair")
    return fix


def _next_attempt(session: Session, work: Work, repaired: Proposal) -> Proposal:
    """Park the crashed attempt (it stays inspectable), reset the slot, go on with the fix."""
    assert work.commit is not None
    gitops.update_ref(session.root, session.paths.discarded_ref(f"{work.exp.id}-a{work.attempt}"),
                      work.commit)
    session.executor.reset(work.slot, work.parent)
    work.change, work.repairing, work.failed = None, work.failed, None
    work.attempt += 1
    session.ledger.update_experiment(work.exp.id, attempts=work.attempt,
                                     hypothesis=repaired.hypothesis)
    return repaired


def effective_limits(config: Config, iterations: int | None, until_s: float | None,
                     started: float) -> Limits:
    limits = config.limits
    n = iterations if iterations is not None else limits.max_experiments
    hours = until_s if until_s is not None else (
        limits.max_hours * 3600 if limits.max_hours else None)
    return Limits(iterations=n, deadline=None if hours is None else started + hours,
                  max_usd=limits.max_usd)
