"""The proposer interface: everything a plugin needs to produce the next change.

A proposer never decides anything about results: the harness owns the verdict. It only sees a
read-only context (the brief, the in-scope files, the history without held-out metrics) and returns
a `Proposal`. Lifecycle, in the order the session calls it:

    resume(history)          once, with every finished experiment of the session (memory on resume)
    propose(ctx) -> Proposal | None     each experiment; None means "nothing left to try"
    repair(ctx, failed, log) -> Proposal | None   after a crash, up to the repair cap (optional)
    observe(outcome)         after each experiment is decided
    close()                  when the session stops

Plugins register a `Proposer` subclass under the entry-point group `autoresearch.proposers`;
the built-in `tune` proposer is registered the same way (see pyproject.toml).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from autoresearch.config import Config


@dataclass(frozen=True)
class Usage:
    """Tokens and money one model call cost. Agent CLIs that report only dollars set cost_usd."""

    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    purpose: str = "propose"


def _no_limit() -> str | None:
    return None


@dataclass(frozen=True)
class Meter:
    """The session's till, handed to a proposer with each context: `record` bills one model call
    to the experiment the moment the call returns (so a Ctrl-C, a SIGTERM or a kill in the middle
    of a proposal loses none of what was spent), and `stop_reason` says why no further call may
    be made (the spending limit is reached), or None. A proposer that records its calls here
    leaves them out of `Proposal.usage` and of its exceptions' usage, which would bill them
    twice.

    `deadline` (a `time.time()`, or None) is when the session's time limit ends: no call or
    agent run may last past it (a proposer cuts it there and raises `OutOfTime`), since the
    harness counts on `--until` ending the session on time."""

    record: Callable[[Usage], None]
    stop_reason: Callable[[], str | None] = _no_limit
    deadline: float | None = None

    def seconds_left(self) -> float | None:
        """Seconds until `deadline` (≤ 0 once it passed), or None without one."""
        return None if self.deadline is None else self.deadline - time.time()


@dataclass
class Proposal:
    """One proposed change.

    Either `edits` (repo-relative POSIX path -> new full file content, or None to delete the file),
    or `in_worktree=True` when the proposer edited `ctx.worktree` directly (coding-agent CLIs); the
    harness then reads the change from git. Either way the guardrails check it before any commit.
    """

    hypothesis: str
    edits: dict[str, str | None] = field(default_factory=dict)
    rationale: str = ""
    params: dict[str, Any] | None = None
    usage: list[Usage] = field(default_factory=list)
    in_worktree: bool = False

    @property
    def cost_usd(self) -> float:
        return sum(u.cost_usd for u in self.usage)


@dataclass(frozen=True)
class ExperimentSummary:
    """What a proposer may know about one past experiment (held-out metrics are never included)."""

    id: str
    seq: int
    status: str
    hypothesis: str
    objective: float | None
    delta: float | None
    reason: str
    params: dict[str, Any] | None = None
    commit: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    lines_added: int = 0
    lines_removed: int = 0
    kind: str = "candidate"  # or "baseline" (the unchanged code; a session may retry it)


@dataclass(frozen=True)
class ExperimentOutcome:
    """What the proposer is told after the harness decided an experiment."""

    summary: ExperimentSummary
    proposal: Proposal | None


@dataclass(frozen=True)
class InFlight:
    """A sibling experiment proposed but not yet decided (parallel sessions run several at once).

    Proposers use it to avoid proposing the same thing twice: tune tells Optuna these points are
    running, the llm/agent proposers list the hypotheses in their context.
    """

    id: str
    hypothesis: str
    params: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ProposalContext:
    """A read-only view of the session for one proposal."""

    session_tag: str
    worktree: Path
    config: Config
    program: str
    scope_files: Sequence[str]
    history: Sequence[ExperimentSummary]
    baseline: ExperimentSummary | None
    incumbent: ExperimentSummary | None
    stuck: bool
    last_crash_log: str | None
    metric_name: str
    direction: str
    diff_from_baseline: Callable[[], str] = field(default=lambda: "")
    experiment_id: str = ""
    # Experiments already proposed and still running in other slots (empty in a serial session).
    in_flight: Sequence[InFlight] = ()
    # Where each model call is billed as it returns, and the budget it must stay within
    # (None: the proposer reports its usage in the Proposal or its exception, as before).
    meter: Meter | None = None

    def read(self, path: str) -> str:
        """The incumbent's content of an in-scope, non-protected repo-relative file; PathRefused
        (from `autoresearch.repo_paths`) for any other, judged by the guardrails on the path's
        canonical form: what a proposer reads here may end up in a model's prompt."""
        from autoresearch import guardrails  # local: guardrails imports this module's types

        rules = guardrails.Rules(self.config.scope, self.config.all_protected)
        real = guardrails.judge_path(self.worktree, path, rules, exact=False)
        return (self.worktree / real).read_text(encoding="utf-8", errors="replace")

    def best(self, n: int = 5) -> list[ExperimentSummary]:
        """The n best kept-or-baseline experiments, best first."""
        scored = [e for e in self.history if e.objective is not None and e.status == "keep"]
        sign = 1.0 if self.direction == "minimize" else -1.0
        return sorted(scored, key=lambda e: sign * (e.objective or 0.0))[:n]


class Proposer(ABC):
    """Base class for proposers; subclasses implement `propose`."""

    name: ClassVar[str] = "proposer"
    # The `[proposer]` options this proposer reads; any other key is a config error (a typo).
    # None (the default, for plugins): anything is accepted.
    known_options: ClassVar[frozenset[str] | None] = None

    def __init__(self, config: Config, options: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.options: dict[str, Any] = dict(options or {})

    def resume(self, history: Sequence[ExperimentOutcome]) -> None:
        """Learn from a session's past experiments (called once, before the first propose)."""
        for outcome in history:
            self.observe(outcome)

    @abstractmethod
    def propose(self, ctx: ProposalContext) -> Proposal | None:
        """The next change to try, or None when there is nothing left to try."""

    def repair(self, ctx: ProposalContext, failed: Proposal, log_tail: str) -> Proposal | None:
        """A fix for a proposal whose run crashed, or None to give up (the default).

        A repair that spent money and still gives up raises `FailedProposal` with that `usage`
        instead of returning None: the session bills it to the crashed experiment.
        """
        return None

    def observe(self, outcome: ExperimentOutcome) -> None:  # noqa: B027 - optional hook
        """Called after every decided experiment (keep, discard, crash, ...)."""

    def replay(self, before: Mapping[str, str | None], after: Mapping[str, str | None],
               worktree: Path) -> Proposal | None:
        """A winner's change made again on a newer incumbent, when git cannot replay its
        commit there (parallel slots: another slot's keep changed the same lines).

        `before` and `after` hold the files the change touched as they were without it and with
        it (None: absent); `worktree` holds the new incumbent. Returns the proposal that makes
        the same change there (its edits, and its hypothesis told from the new incumbent's
        values), or None when this proposer cannot say (the default: the winner is dropped as a
        conflict). What it returns is measured again against the new incumbent before anything
        is kept."""
        return None

    def describe(self) -> str:
        """One line for logs and the status display."""
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HTTP clients, studies)."""
