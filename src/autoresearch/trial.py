"""One experiment while it is open: a Trial owns its lifecycle and its own ledger writes.

    PROPOSED ──propose──▶ (guardrails) ──commit──▶ RUNNING ──runs, verdict──▶ KEEP | DISCARD
        │                                             │                     | CRASH | TIMEOUT
        └──── refused, duplicate, failed ────▶ REJECTED      anything that stops it ──▶ INTERRUPTED

Every transition is one method here, and each writes what it means to the ledger through the
ledger's typed API: nothing else writes an experiment's row. The frozen view of a trial, once
written, is the ledger's `ExperimentRow` (as optuna's FrozenTrial is to its Trial).

A trial's commit is parked under `refs/autoresearch/<tag>/discarded/<id>` unless it is kept, and
the ref is created before the ledger records the verdict, so a `kill -9` between the two leaves a
parked commit the ledger does not know about yet (harmless: the experiment is re-run), never a
recorded discard whose commit has no ref. A parked ref is written once (`gitops.park_ref`): one
that holds another commit (a ledger restored from an older backup numbered its experiments
again) is refused, not overwritten. Each earlier commit of the same experiment (a crashed
attempt that was repaired, a winner replayed onto a newer incumbent) is parked as `<id>-a<n>`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from autoresearch import gitops
from autoresearch.executor import Measurement, RunRequest
from autoresearch.gitops.commits import Committed
from autoresearch.ledger import ExperimentRow, Ledger, SessionRow, TrialStatus
from autoresearch.proposers.base import Proposal, Usage
from autoresearch.slots import Slot
from autoresearch.state import StatePaths

__all__ = ["Program", "Steps", "Trial", "TrialStatus"]

T = TypeVar("T")
# A trial's program: it yields the runs it needs, one at a time, and is sent their measurements.
# Everything else it does (propose, commit, judge, record) happens on the scheduler's thread.
# `Steps[T]` is a part of a program that returns a T (`yield from` it).
Steps: TypeAlias = Generator[RunRequest, Measurement, T]
Program: TypeAlias = Generator[RunRequest, Measurement, None]


class Trial:
    """An open experiment in a slot: what it is, where it stands, and how it is recorded."""

    def __init__(self, ledger: Ledger, root: Path, paths: StatePaths, row: ExperimentRow,
                 slot: Slot, parent: str) -> None:
        self.ledger = ledger
        self.root = root
        self.paths = paths
        self.id = row.id
        self.session_id = row.session_id
        self.seq = row.seq
        self.kind = row.kind
        self.status = TrialStatus(row.status)
        self.slot = slot
        self.parent = parent  # the incumbent it builds on: the slot goes back there if it fails
        self.attempt = row.attempts
        self.hypothesis = row.hypothesis
        self.params: Mapping[str, Any] | None = row.params
        self.change: Committed | None = None  # the candidate's commit, once made
        self.proposal: Proposal | None = None
        self.failed: Measurement | None = None  # the crashed run a repair is being asked for
        # The crash the current attempt is a repair of: if the repair is refused, that crash stands.
        self.repairing: Measurement | None = None
        self.removed = False  # abandoned before it was proposed: no row any more

    @classmethod
    def open(cls, ledger: Ledger, root: Path, paths: StatePaths, session: SessionRow,
             slot: Slot, parent: str, *, kind: str = "candidate", proposer: str = "",
             hypothesis: str = "") -> Trial:
        """A new experiment: the next sequence number, allocated atomically."""
        status = TrialStatus.RUNNING if kind == "baseline" else TrialStatus.PROPOSED
        row = ledger.create_experiment(
            session, kind=kind, status=status, hypothesis=hypothesis, proposer=proposer,
            parent_commit=None if kind == "baseline" else parent, worker=slot.name)
        return cls(ledger, root, paths, row, slot, parent)

    @classmethod
    def reopened(cls, ledger: Ledger, root: Path, paths: StatePaths, row: ExperimentRow,
                 slot: Slot) -> Trial:
        """A decided experiment measured again (the session's headline): runs only, no verdict."""
        trial = cls(ledger, root, paths, row, slot, row.parent_commit or row.commit_sha or "")
        if row.commit_sha:
            trial.change = Committed(row.commit_sha, row.tree_sha or "", row.files,
                                            row.lines_added, row.lines_removed)
        return trial

    @property
    def commit(self) -> str | None:
        return self.change.sha if self.change else None

    @property
    def done(self) -> bool:
        return self.status.final or self.removed

    # --- the lifecycle -------------------------------------------------------------------

    def propose(self, proposal: Proposal) -> None:
        """The proposal to try (the first attempt's is what the experiment is about)."""
        self.proposal = proposal
        self.hypothesis, self.params = proposal.hypothesis, proposal.params
        if self.attempt == 1:
            self.ledger.record_proposal(self.id, hypothesis=proposal.hypothesis,
                                        rationale=proposal.rationale, params=proposal.params)

    def meant(self, hypothesis: str) -> None:
        """A proposal that failed still says what it meant to try."""
        self.hypothesis = hypothesis
        self.ledger.record_hypothesis(self.id, hypothesis)

    def commit_message(self, proposal: Proposal) -> str:
        """The message of a commit made for this trial: the hypothesis, its rationale, the id."""
        message = f"{proposal.hypothesis.strip() or 'experiment'}\n\n"
        if proposal.rationale.strip():
            message += proposal.rationale.strip() + "\n\n"
        return message + f"Experiment-Id: {self.id}\n"

    def commit_made(self, change: Committed) -> None:
        """The change is committed in the slot: the trial runs from now on."""
        self.change = change
        self.status = TrialStatus.RUNNING
        self.ledger.record_commit(self.id, commit_sha=change.sha, tree_sha=change.tree,
                                  files=change.files, lines_added=change.lines_added,
                                  lines_removed=change.lines_removed, parent_commit=self.parent)

    def base_measured(self, commit: str, tree: str, params: Mapping[str, Any] | None) -> None:
        """The baseline measures the session's base commit as it is."""
        self.change = Committed(commit, tree, [], 0, 0)
        self.ledger.record_commit(self.id, commit_sha=commit, tree_sha=tree)
        if params:
            self.params = params
            self.ledger.record_params(self.id, params)

    def next_attempt(self, hypothesis: str, parent: str | None = None) -> None:
        """Go on with another commit: the current one is parked as `<id>-a<attempt>`."""
        if self.commit is not None:
            gitops.park_ref(self.root, self.paths.discarded_ref(f"{self.id}-a{self.attempt}"),
                            self.commit)
        if parent is not None:
            self.parent = parent
        self.change, self.repairing, self.failed = None, self.failed, None
        self.attempt += 1
        self.hypothesis = hypothesis
        self.ledger.record_attempt(self.id, attempts=self.attempt, hypothesis=hypothesis)

    def judged(self, *, incumbent_objective: float | None, delta: float | None,
               threshold: float | None, guards: Sequence[Mapping[str, Any]] = ()) -> None:
        self.ledger.record_judgement(self.id, incumbent_objective=incumbent_objective,
                                     delta=delta, threshold=threshold, guards=guards)

    def finish(self, status: TrialStatus, reason: str, objective: float | None = None, *,
               move_branch: Callable[[str, str], None]) -> None:
        """The verdict: the session branch moves to a kept candidate (`move_branch(id, commit)`:
        the session's `SessionBranch.keep`, which stops the session rather than move a branch
        someone else moved or checked out), any other commit is parked; then the ledger records
        it. Git first: a kill -9 in between is undone by the recovery (which points the branch
        back at the ledger's incumbent, re-creates refs)."""
        if not status.final:
            raise ValueError(f"{status} is not a final status")
        if self.commit is not None and self.kind != "baseline":
            if status == TrialStatus.KEEP:
                move_branch(self.id, self.commit)
            else:
                gitops.park_ref(self.root, self.paths.discarded_ref(self.id), self.commit)
        self.ledger.finish_experiment(self.id, status=status, reason=reason, objective=objective)
        self.status = status

    def bill(self, usage: Sequence[Usage], purpose: str | None = None) -> None:
        """Every model call is billed to its trial, including calls that produced nothing."""
        for u in usage:
            self.ledger.add_usage(
                self.session_id, self.id, provider=u.provider, model=u.model,
                purpose=purpose or u.purpose, input_tokens=u.input_tokens,
                output_tokens=u.output_tokens, cache_read_tokens=u.cache_read_tokens,
                cache_write_tokens=u.cache_write_tokens, cost_usd=u.cost_usd)

    def abandon(self) -> bool:
        """Remove a trial that never got a proposal; False when it cannot go (it spent money)."""
        self.ledger.discard_unstarted(self.id)
        self.removed = self.ledger.experiment(self.id) is None
        return self.removed

    def run_request(self, role: str, commit: str, *, index: int, seed: int | None,
                    run_id: str, protected: Mapping[str, str]) -> RunRequest:
        """One run of this trial in its slot; `index` counts this role's runs in the attempt."""
        return RunRequest(
            commit=commit, worktree=self.slot.worktree, role=role, run_id=run_id, seed=seed,
            log_path=self.paths.log_path(self.id, role, index, self.attempt),
            resources=self.slot.resources, protected=protected, index=index)
