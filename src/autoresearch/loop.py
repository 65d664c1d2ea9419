"""The ratchet: baseline first, then ask → guard → commit → run → judge → tell, until a limit.

Every path through `experiment()` ends with the experiment recorded and the worktree back on the
incumbent; an interrupt (Ctrl-C, SIGTERM) records the running experiment as `interrupted` first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from statistics import fmean, median

from autoresearch import gitops, guardrails
from autoresearch.config import Config
from autoresearch.decision import MeasurementFailed, Verdict, check_metric_guards, decide
from autoresearch.errors import ProposalError
from autoresearch.ledger import ExperimentRow
from autoresearch.proposers.base import ExperimentOutcome, Proposal, ProposalContext, Usage
from autoresearch.proposers.faults import FatalProposerError, ProposerOutage, usage_of
from autoresearch.runner import RunSpec, run_command
from autoresearch.session import Limits, Session, SessionStopped, read_program

OUTAGE_WAITS = (30.0, 60.0, 120.0, 300.0, 600.0)


def run(session: Session, limits: Limits) -> str:
    """Loop until a limit; returns why it stopped. Raises KeyboardInterrupt on Ctrl-C."""
    if session.baseline is None:
        if limits.iterations is not None and session.counted() >= limits.iterations:
            return f"reached {limits.iterations} experiments"
        baseline(session)
    while True:
        reason = limit_reached(session, limits)
        if reason:
            return reason
        experiment(session)
        crash_cap = session.config.decision.max_consecutive_crashes
        if session.consecutive_crashes >= crash_cap:
            raise SessionStopped(
                f"paused after {session.consecutive_crashes} consecutive crashes: something is "
                f"broken beyond one change. Read the last logs in {session.paths.session_dir}/logs,"
                " fix the cause, then run the same command to resume.", exit_code=5)


def limit_reached(session: Session, limits: Limits) -> str | None:
    if limits.iterations is not None and session.counted() >= limits.iterations:
        return f"reached {limits.iterations} experiments"
    if limits.deadline is not None:
        durations = [e.duration_s for e in session.history[-10:] if e.duration_s]
        expected = median(durations) if durations else 0.0
        if time.time() + expected > limits.deadline:
            return "the time limit would be exceeded by another experiment"
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
    exp = session.ledger.create_experiment(
        session.row, kind="baseline", status="running", hypothesis="baseline",
        proposer="baseline", parent_commit=None,
    )
    session.ledger.update_experiment(exp.id, commit_sha=commit,
                                     tree_sha=gitops.tree_of(session.root, commit))
    session.display.experiment_started(exp.id, f"baseline ({repeats} run{'s' * (repeats > 1)})")
    params = _initial_params(session)
    if params:
        session.ledger.update_experiment(exp.id, params=params)
    try:
        values = []
        for _ in range(repeats):
            m = session.measure(exp, commit, "candidate")
            if not m.ok:
                _finish(session, exp, m.status, f"baseline {m.status}: {m.reason}", None)
                raise SessionStopped(
                    f"the baseline {m.status}ed ({m.reason}): the unchanged code must pass the "
                    f"verify command first. Log: {m.log_path}", exit_code=5)
            values.append(m.objective or 0.0)
    except KeyboardInterrupt:
        _finish(session, exp, "interrupted", "interrupted during the baseline", None)
        raise
    noise = session.noise()
    mean = fmean(values)
    reason = f"baseline: {len(values)} run(s), mean {mean:.6g}, noise {noise}"
    _finish(session, exp, "keep", reason, None, objective=mean)
    session.ledger.update_session(session.row.id, noise=noise.sigma)
    session.display.tally.baseline = mean
    session.display.tally.best = mean


def _initial_params(session: Session) -> dict[str, object] | None:
    initial = getattr(session.proposer, "initial_params", None)
    if callable(initial):
        try:
            result = initial(session.paths.worktree)
        except Exception:  # noqa: BLE001 - the baseline must not fail because of a proposer
            return None
        return dict(result) if result else None
    return None


def context(session: Session, exp: ExperimentRow) -> ProposalContext:
    incumbent = session.incumbent
    base = session.row.base_commit
    tip = incumbent.commit_sha if incumbent and incumbent.commit_sha else base
    root = session.paths.worktree
    stuck = session.consecutive_discards >= session.config.decision.stuck_after
    return ProposalContext(
        session_tag=session.row.tag, worktree=root, config=session.config,
        program=read_program(session.root),
        scope_files=session.scope_files(tip),
        history=[session.summary(e) for e in session.history if e.status != "interrupted"],
        baseline=session.summary(session.baseline) if session.baseline else None,
        incumbent=session.summary(incumbent) if incumbent else None,
        stuck=stuck, last_crash_log=session.last_crash_log,
        metric_name=session.config.metric.name, direction=session.config.metric.direction,
        diff_from_baseline=lambda: gitops.diff(root, base, tip), experiment_id=exp.id,
    )


def ask(session: Session, exp: ExperimentRow) -> Proposal | None:
    """The proposer's next change, waiting out provider outages without losing anything."""
    waits = iter(OUTAGE_WAITS)
    while True:
        try:
            return session.proposer.propose(context(session, exp))
        except ProposerOutage as outage:
            record_usage(session, exp.id, usage_of(outage))
            wait = outage.retry_after_s or next(waits, OUTAGE_WAITS[-1])
            session.ledger.update_session(session.row.id, status="paused")
            session.event("outage", f"proposer unavailable ({outage.what}); retrying in {wait:.0f} s",
                           exp.id)
            session.display.message(f"proposer unavailable: {outage.what}; waiting {wait:.0f} s",
                                    "yellow")
            if session.stop_event.wait(wait):
                raise KeyboardInterrupt from None
            session.ledger.update_session(session.row.id, status="running")


def experiment(session: Session) -> None:
    """One experiment, start to finish."""
    incumbent = session.incumbent
    assert incumbent is not None and incumbent.commit_sha is not None
    exp = session.ledger.create_experiment(
        session.row, status="proposed", proposer=session.proposer.name,
        parent_commit=incumbent.commit_sha,
    )
    session.display.experiment_started(exp.id, "proposing…")
    commit: str | None = None
    try:
        try:
            proposal = ask(session, exp)
        except ProposalError as exc:
            record_usage(session, exp.id, usage_of(exc))
            _finish(session, exp, "rejected", f"proposal failed: {exc.what}", None)
            return
        except FatalProposerError as exc:
            record_usage(session, exp.id, usage_of(exc))
            _finish(session, exp, "interrupted", "the proposer stopped with a fatal error", None)
            raise
        if proposal is None:
            session.ledger.discard_unstarted(exp.id)
            raise SessionStopped("the proposer has nothing left to try (search space exhausted)")
        attempt = 1
        while True:
            commit = _commit(session, exp, proposal, incumbent.commit_sha, attempt)
            if commit is None:
                return
            first = session.measure(exp, commit, "candidate", attempt)
            if first.ok:
                break
            session.last_crash_log = session.executor.log_tail(first.log_path)
            repaired = _repair(session, exp, proposal, attempt)
            gitops.update_ref(session.root, session.paths.discarded_ref(
                exp.id if repaired is None else f"{exp.id}-a{attempt}"), commit)
            gitops.checkout(session.paths.worktree, incumbent.commit_sha)
            if repaired is None:
                _finish(session, exp, first.status, first.reason, proposal)
                return
            proposal, attempt = repaired, attempt + 1
            session.ledger.update_experiment(exp.id, attempts=attempt,
                                             hypothesis=proposal.hypothesis)
        verdict = _judge(session, exp, commit, incumbent, first.objective or 0.0, attempt)
        if verdict is None:
            return
        _settle(session, exp, commit, incumbent, verdict, proposal)
    except KeyboardInterrupt:
        if commit is not None:
            gitops.update_ref(session.root, session.paths.discarded_ref(exp.id), commit)
        gitops.checkout(session.paths.worktree, incumbent.commit_sha)
        _finish(session, exp, "interrupted", "interrupted by the user", None)
        raise


def _commit(session: Session, exp: ExperimentRow, proposal: Proposal, parent: str,
            attempt: int) -> str | None:
    """Guard, apply and commit a proposal; None when it was refused (recorded as rejected)."""
    worktree = session.paths.worktree
    rules = guardrails.Rules(session.config.scope, session.config.all_protected)
    session.display.experiment_started(exp.id, proposal.hypothesis)
    if attempt == 1:
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
        gitops.checkout(worktree, parent)
        _finish(session, exp, "rejected", "refused by the guardrails: " + "; ".join(problems),
                proposal)
        return None
    if not proposal.in_worktree:
        guardrails.apply_edits(worktree, proposal.edits)
    message = f"{proposal.hypothesis.strip() or 'experiment'}\n\n"
    if proposal.rationale.strip():
        message += proposal.rationale.strip() + "\n\n"
    message += f"Experiment-Id: {exp.id}\n"
    change = gitops.commit_change(worktree, message, paths)
    duplicate = _duplicate_of(session, change.tree, parent)
    if duplicate:
        # The commit is left unreferenced: nothing will run it, and git collects it eventually.
        gitops.checkout(worktree, parent)
        _finish(session, exp, "rejected", duplicate, proposal)
        return None
    commit = change.sha
    session.ledger.update_experiment(
        exp.id, status="running", commit_sha=commit, tree_sha=change.tree, files=change.files,
        lines_added=change.lines_added, lines_removed=change.lines_removed,
    )
    return commit


def record_usage(session: Session, exp_id: str, usage: Sequence[Usage],
                 purpose: str | None = None) -> None:
    """Bill every model call to its experiment, including calls that produced nothing."""
    for u in usage:
        session.ledger.add_usage(session.row.id, exp_id, provider=u.provider, model=u.model,
                                 purpose=purpose or u.purpose, input_tokens=u.input_tokens,
                                 output_tokens=u.output_tokens,
                                 cache_read_tokens=u.cache_read_tokens,
                                 cache_write_tokens=u.cache_write_tokens, cost_usd=u.cost_usd)


def _duplicate_of(session: Session, tree: str, parent: str) -> str | None:
    incumbent = session.incumbent
    parent_tree = (incumbent.tree_sha if incumbent and incumbent.commit_sha == parent
                   and incumbent.tree_sha else gitops.tree_of(session.paths.worktree, parent))
    if tree == parent_tree:
        return "the proposal changes nothing"
    for e in session.history:
        if e.tree_sha == tree and e.status not in ("interrupted",):
            return f"duplicate of {e.id} (same resulting files): not run again"
    return None


def _repair(session: Session, exp: ExperimentRow, failed: Proposal,
            attempt: int) -> Proposal | None:
    if attempt > session.config.decision.max_repair_attempts:
        return None
    try:
        fix = session.proposer.repair(context(session, exp), failed,
                                      session.last_crash_log or "")
    except (ProposalError, ProposerOutage) as exc:
        record_usage(session, exp.id, usage_of(exc), purpose="repair")
        session.event("repair", f"repair attempt failed: {exc}", exp.id)
        return None
    if fix is not None:
        session.event("repair", f"attempt {attempt + 1}: {fix.hypothesis}", exp.id)
        record_usage(session, exp.id, fix.usage, purpose="repair")
    return fix


def _judge(session: Session, exp: ExperimentRow, commit: str, incumbent: ExperimentRow,
           first: float, attempt: int) -> Verdict | None:
    """The statistics, with interleaved confirmation runs; None if a confirmation run crashed."""
    inc_commit = incumbent.commit_sha
    assert inc_commit is not None
    candidate = [first]
    incumbent_values = session.objective_runs(inc_commit)
    others = session.noise_groups({commit, inc_commit})

    def measure(role: str) -> float:
        m = session.measure(exp, commit if role == "candidate" else inc_commit, role, attempt)
        if not m.ok:
            raise MeasurementFailed(role, m.status)
        return m.objective or 0.0

    current = session.ledger.experiment(exp.id)
    assert current is not None
    try:
        verdict, _pairs = decide(
            candidate, incumbent_values, others, session.rule, measure,
            max_pairs=session.config.decision.confirm_runs,
            lines_added=current.lines_added, lines_removed=current.lines_removed,
        )
    except MeasurementFailed as failure:
        gitops.update_ref(session.root, session.paths.discarded_ref(exp.id), commit)
        gitops.checkout(session.paths.worktree, inc_commit)
        if failure.role == "candidate":
            _finish(session, exp, "crash", f"flaky: the candidate {failure.status}ed on a "
                    "confirmation run", None)
        else:
            session.event("warning", "the incumbent failed a confirmation run", exp.id)
            _finish(session, exp, "discard", f"the incumbent {failure.status}ed during "
                    "confirmation (an unstable environment?): no verdict possible", None)
        return None
    return verdict


def _settle(session: Session, exp: ExperimentRow, commit: str, incumbent: ExperimentRow,
            verdict: Verdict, proposal: Proposal) -> None:
    """Apply guards to a keep, then move the branch or park the commit."""
    config = session.config
    status = verdict.outcome if verdict.outcome != "confirm" else "discard"
    reason = verdict.reason
    guard_rows: list[dict[str, object]] = []
    if status == "keep":
        cand_metrics = _mean_metrics(session, exp.id, commit)
        inc_metrics = _mean_metrics(session, None, incumbent.commit_sha or "")
        for g in check_metric_guards(config.guards, cand_metrics, inc_metrics):
            guard_rows.append({"guard": g.label, "passed": g.passed, "detail": g.detail})
        guard_rows += _command_guards(session, exp)
        failed = [g for g in guard_rows if not g["passed"]]
        if failed:
            status = "discard"
            reason = "guard failed: " + "; ".join(f"{g['guard']}: {g['detail']}" for g in failed)
    worktree = session.paths.worktree
    objective = verdict.candidate_mean
    session.ledger.update_experiment(
        exp.id, incumbent_objective=verdict.incumbent_mean, delta=verdict.delta,
        threshold=verdict.threshold, guards=guard_rows,
    )
    _finish(session, exp, status, reason, proposal, objective=objective)
    if status == "keep":
        gitops.update_ref(session.root, f"refs/heads/{session.paths.branch}", commit)
        session.display.tally.best = objective
        _check_heldout(session, exp, commit, incumbent)
    else:
        gitops.update_ref(session.root, session.paths.discarded_ref(exp.id), commit)
        gitops.checkout(worktree, incumbent.commit_sha or "")
    session.ledger.update_session(session.row.id, noise=session.noise().sigma)


def _mean_metrics(session: Session, exp_id: str | None, commit: str) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for runs in session.runs.values():
        for r in runs:
            if r.commit_sha == commit and r.status == "ok":
                for k, v in r.metrics.items():
                    values.setdefault(k, []).append(v)
    return {k: fmean(v) for k, v in values.items()}


def _command_guards(session: Session, exp: ExperimentRow) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i, g in enumerate(session.config.guards):
        if g.command is None:
            continue
        log = session.paths.log_path(exp.id, f"guard{i}", 0)
        log.parent.mkdir(parents=True, exist_ok=True)
        outcome = run_command(RunSpec(
            command=g.command.replace("{python}", sys.executable),
            cwd=session.paths.worktree, log_path=log, timeout_s=g.timeout_seconds,
            budget_s=g.timeout_seconds, run_id=f"ar-{session.paths.repo_key}-{session.row.tag}-g{i}",
        ), session.stop_event)
        if outcome.interrupted:
            raise KeyboardInterrupt
        passed = outcome.exit_code == 0 and not outcome.timed_out
        detail = "exit 0" if passed else (
            "timed out" if outcome.timed_out else f"exit {outcome.exit_code}; log {log}")
        rows.append({"guard": g.label, "passed": passed, "detail": detail})
    return rows


def _check_heldout(session: Session, exp: ExperimentRow, commit: str,
                   incumbent: ExperimentRow) -> None:
    """Warn when the objective improved but a held-out metric did not (overfitting val)."""
    sign = session.rule.sign
    now = _mean_metrics(session, exp.id, commit)
    before = _mean_metrics(session, None, incumbent.commit_sha or "")
    for name in session.config.metric.heldout:
        if name in now and name in before and sign * (now[name] - before[name]) < 0:
            msg = (f"{exp.id}: {session.config.metric.name} improved but held-out {name} got "
                   f"worse ({before[name]:.6g} → {now[name]:.6g})")
            session.event("heldout_divergence", msg, exp.id)
            session.display.message("warning: " + msg, "yellow")


def _finish(session: Session, exp: ExperimentRow, status: str, reason: str,
            proposal: Proposal | None, objective: float | None = None) -> None:
    """Record the verdict, update the streak counters, tell the proposer and the display."""
    fields: dict[str, object] = {"status": status, "decision_reason": reason,
                                 "finished_at": time.time()}
    if objective is not None:
        fields["objective"] = objective
    session.ledger.update_experiment(exp.id, **fields)
    row = session.refresh(exp.id)
    if status in ("crash", "timeout"):
        session.consecutive_crashes += 1
    elif status in ("keep", "discard"):
        session.consecutive_crashes = 0
    if status == "keep":
        session.consecutive_discards = 0
    elif status in ("discard", "crash", "timeout"):
        session.consecutive_discards += 1
        if session.consecutive_discards == session.config.decision.stuck_after:
            session.event("stuck", f"{session.consecutive_discards} consecutive experiments "
                           "without a keep: the proposer is told to change strategy", exp.id)
    if status != "interrupted":
        session.proposer.observe(ExperimentOutcome(summary=session.summary(row), proposal=proposal))
    session.write_results()
    session.display.experiment_finished(exp.id, status, row.objective, row.delta, reason,
                                        row.hypothesis)


def effective_limits(config: Config, iterations: int | None, until_s: float | None,
                     started: float) -> Limits:
    limits = config.limits
    n = iterations if iterations is not None else limits.max_experiments
    hours = until_s if until_s is not None else (
        limits.max_hours * 3600 if limits.max_hours else None)
    return Limits(iterations=n, deadline=None if hours is None else started + hours,
                  max_usd=limits.max_usd)
