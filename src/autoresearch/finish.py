"""How an experiment ends. Every path, including an exception, goes through `finish`:

    park the commit (unless kept) → record the verdict → reset the slot → streaks → tell

The ref is created before the ledger records the verdict, so a `kill -9` between the two leaves a
parked commit the ledger does not know about yet (harmless: the experiment is re-run), never a
recorded discard whose commit has no ref.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from autoresearch import gitops
from autoresearch.executor import Measurement, Slot
from autoresearch.ledger import ExperimentRow
from autoresearch.proposers.base import ExperimentOutcome, Proposal, Usage
from autoresearch.proposers.faults import FatalProposerError, usage_of
from autoresearch.session import Session, SessionStopped


@dataclass
class Work:
    """An open experiment: where it runs, and what must be undone if it ends early."""

    exp: ExperimentRow
    slot: Slot
    parent: str  # the incumbent it started from: the slot goes back there unless it is kept
    change: gitops.Committed | None = None  # the candidate's commit, once made
    attempt: int = 1
    failed: Measurement | None = None  # the crashed run a repair is being asked for
    # The crash the current attempt is a repair of: if the repair is refused, that crash stands.
    repairing: Measurement | None = None
    done: bool = False

    @property
    def commit(self) -> str | None:
        return self.change.sha if self.change else None


def finish(session: Session, work: Work, status: str, reason: str, proposal: Proposal | None,
           objective: float | None = None) -> None:
    """Record the verdict; park or keep the commit, reset the slot, tell the proposer/display."""
    exp = work.exp
    if work.commit is not None and status != "keep":
        gitops.update_ref(session.root, session.paths.discarded_ref(exp.id), work.commit)
    session.ledger.finish_experiment(exp.id, status=status, reason=reason, objective=objective)
    work.done = True
    row = session.refresh(exp.id)
    if status != "keep":
        session.executor.reset(work.slot, work.parent)
    session.streaks.record(status)
    if status in ("discard", "crash", "timeout") and (
            session.streaks.without_keep == session.config.decision.stuck_after):
        session.event("stuck", f"{session.streaks.without_keep} consecutive experiments without "
                      "a keep: the proposer is told to change strategy", exp.id)
    if status != "interrupted":
        session.proposer.observe(ExperimentOutcome(summary=session.summary(row), proposal=proposal))
    session.write_results(row)
    session.display.experiment_finished(exp.id, status, row.objective, row.delta, reason,
                                        row.hypothesis, baseline=row.kind == "baseline")


@contextmanager
def finished_on_error(session: Session, work: Work) -> Iterator[None]:
    """Whatever stops an experiment early still ends it recorded, parked and reset."""
    try:
        yield
    except BaseException as exc:
        if not work.done:
            abandon(session, work, exc)
        raise


def abandon(session: Session, work: Work, exc: BaseException) -> None:
    """End an experiment an exception cut short (the caller re-raises it)."""
    record_usage(session, work.exp.id, usage_of(exc), purpose="repair" if work.failed else None)
    if isinstance(exc, FatalProposerError) and work.failed is not None:
        # The candidate did crash; only its repair could not be asked for.
        status = work.failed.status
        reason = f"{work.failed.reason}; the repair stopped: {exc.what}"
    elif isinstance(exc, FatalProposerError):
        status, reason = "interrupted", f"the proposer stopped with a fatal error: {exc.what}"
    elif isinstance(exc, KeyboardInterrupt):
        during = "during the baseline" if work.exp.kind == "baseline" else "by the user"
        status, reason = "interrupted", f"interrupted {during}"
    elif isinstance(exc, SessionStopped):
        status, reason = "interrupted", f"the session stopped: {exc.reason}"
    else:
        status, reason = "interrupted", f"the harness stopped on an error: {exc!r}"
    finish(session, work, status, reason, None)


def record_usage(session: Session, exp_id: str, usage: Sequence[Usage],
                 purpose: str | None = None) -> None:
    """Bill every model call to its experiment, including calls that produced nothing."""
    for u in usage:
        session.ledger.add_usage(session.row.id, exp_id, provider=u.provider, model=u.model,
                                 purpose=purpose or u.purpose, input_tokens=u.input_tokens,
                                 output_tokens=u.output_tokens,
                                 cache_read_tokens=u.cache_read_tokens,
                                 cache_write_tokens=u.cache_write_tokens, cost_usd=u.cost_usd)
