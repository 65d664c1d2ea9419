"""Judge a candidate that ran: the statistics (with interleaved confirmation runs), the guards,
and then the branch moves (keep) or the commit is parked (everything else)."""

from __future__ import annotations

import sys
from statistics import fmean

from autoresearch import gitops, guardrails
from autoresearch.decision import MeasurementFailed, Verdict, check_metric_guards, decide
from autoresearch.finish import Work, finish
from autoresearch.ledger import ExperimentRow
from autoresearch.proposers.base import Proposal
from autoresearch.session import Session
from autoresearch.statuses import happened


def judge(session: Session, work: Work, incumbent: ExperimentRow,
          first: float) -> Verdict | None:
    """The decision rule; None when a confirmation run failed (the experiment is then ended)."""
    inc_commit, change = incumbent.commit_sha, work.change
    assert inc_commit is not None and change is not None

    def measure(role: str) -> float:
        commit = change.sha if role == "candidate" else inc_commit
        m = session.measure(work.exp, work.slot, commit, role, work.attempt)
        if not m.ok:
            raise MeasurementFailed(role, m.status)
        return m.objective or 0.0

    try:
        verdict, _pairs = decide(
            [first], session.objective_runs(inc_commit),
            session.noise_groups({change.sha, inc_commit}), session.rule, measure,
            max_pairs=session.config.decision.confirm_runs,
            lines_added=change.lines_added, lines_removed=change.lines_removed,
        )
    except MeasurementFailed as failure:
        if failure.role == "candidate":
            finish(session, work, "crash", f"flaky: the candidate {happened(failure.status)} on a "
                   "confirmation run", None)
        else:
            session.event("warning", "the incumbent failed a confirmation run", work.exp.id)
            finish(session, work, "discard", f"the incumbent {happened(failure.status)} during "
                   "confirmation (an unstable environment?): no verdict possible", None)
        return None
    return verdict


def settle(session: Session, work: Work, incumbent: ExperimentRow, verdict: Verdict,
           proposal: Proposal) -> None:
    """Apply guards to a keep, then move the branch or park the commit, and record it."""
    exp, commit = work.exp, work.commit
    assert commit is not None
    status = verdict.outcome if verdict.outcome != "confirm" else "discard"
    reason = verdict.reason
    guard_rows: list[dict[str, object]] = []
    current = session.incumbent
    if status == "keep" and current is not None and current.commit_sha != work.parent:
        # Only with overlapping experiments: another keep moved the branch while this one ran.
        # Its commit sits on the old incumbent, so moving the branch to it would drop that keep.
        status = "discard"
        reason = (f"{reason}; but the incumbent moved to {current.id} while it ran, so it is not "
                  "kept on a stale base (propose it again on the new incumbent)")
    if status == "keep":
        cand_metrics = mean_metrics(session, commit)
        inc_metrics = mean_metrics(session, incumbent.commit_sha or "")
        for g in check_metric_guards(session.config.guards, cand_metrics, inc_metrics):
            guard_rows.append({"guard": g.label, "passed": g.passed, "detail": g.detail})
        guard_rows += command_guards(session, work)
        failed = [g for g in guard_rows if not g["passed"]]
        if failed:
            status = "discard"
            reason = "guard failed: " + "; ".join(f"{g['guard']}: {g['detail']}" for g in failed)
    objective = verdict.candidate_mean
    session.ledger.update_experiment(
        exp.id, incumbent_objective=verdict.incumbent_mean, delta=verdict.delta,
        threshold=verdict.threshold, guards=guard_rows,
    )
    if status == "keep":
        # The branch moves before the ledger says keep: a kill -9 in between is undone by the
        # recovery, which points the branch back at the ledger's incumbent.
        gitops.update_ref(session.root, f"refs/heads/{session.paths.branch}", commit)
        session.display.tally.best = objective  # before `finish` prints the summary line
    finish(session, work, status, reason, proposal, objective=objective)
    if status == "keep":
        check_heldout(session, exp, commit, incumbent)
    session.ledger.update_session(session.row.id, noise=session.noise().sigma)


def mean_metrics(session: Session, commit: str) -> dict[str, float]:
    """Every recorded metric of a commit, averaged over its successful runs."""
    values: dict[str, list[float]] = {}
    for runs in session.runs.values():
        for r in runs:
            if r.commit_sha == commit and r.status == "ok":
                for k, v in r.metrics.items():
                    values.setdefault(k, []).append(v)
    return {k: fmean(v) for k, v in values.items()}


def command_guards(session: Session, work: Work) -> list[dict[str, object]]:
    """Run each command guard in the candidate's slot; one row per guard."""
    rows: list[dict[str, object]] = []
    for i, g in enumerate(session.config.guards):
        if g.command is None:
            continue
        log = session.paths.log_path(work.exp.id, f"guard{i}", 0)
        # A guard runs the candidate's code too: fenced like a verify run (guardrails.py).
        with guardrails.protected_fence(work.slot.worktree, session.protected_hashes) as fence:
            outcome = session.executor.run_guard(
                work.slot, g.command.replace("{python}", sys.executable), log_path=log,
                timeout_s=g.timeout_seconds,
                run_id=f"ar-{session.paths.repo_key}-{session.row.tag}-g{i}",
            )
        if outcome.interrupted:
            raise KeyboardInterrupt
        passed = outcome.exit_code == 0 and not outcome.timed_out and not fence.tampered
        detail = "exit 0" if passed else (
            f"its run modified protected files: {', '.join(fence.changes)}" if fence.tampered
            else "timed out" if outcome.timed_out else f"exit {outcome.exit_code}; log {log}")
        rows.append({"guard": g.label, "passed": passed, "detail": detail})
    return rows


def check_heldout(session: Session, exp: ExperimentRow, commit: str,
                  incumbent: ExperimentRow) -> None:
    """Warn when the objective improved but a held-out metric did not (overfitting val)."""
    sign = session.rule.sign
    now = mean_metrics(session, commit)
    before = mean_metrics(session, incumbent.commit_sha or "")
    for name in session.config.metric.heldout:
        if name in now and name in before and sign * (now[name] - before[name]) < 0:
            msg = (f"{exp.id}: {session.config.metric.name} improved but held-out {name} got "
                   f"worse ({before[name]:.6g} → {now[name]:.6g})")
            session.event("heldout_divergence", msg, exp.id)
            session.display.message("warning: " + msg, "yellow")
