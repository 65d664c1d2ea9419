"""What the ledger holds, as frozen rows, and the vocabulary of an experiment's status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TrialStatus(StrEnum):
    """Where an experiment is in its life. Stored as its value; compares equal to it."""

    PROPOSED = "proposed"  # created, the proposer is being asked
    RUNNING = "running"  # committed; its runs are being measured and judged
    KEEP = "keep"  # the branch advanced to it (the baseline is the first keep)
    DISCARD = "discard"  # measured, not better: parked
    CRASH = "crash"  # its run failed (exit code, no metric, tampering): parked
    TIMEOUT = "timeout"  # its run was killed at the timeout: parked
    REJECTED = "rejected"  # never run: refused, duplicate, or a failed proposal
    INTERRUPTED = "interrupted"  # the session stopped while it was open

    @property
    def final(self) -> bool:
        return self not in (TrialStatus.PROPOSED, TrialStatus.RUNNING)


FINAL_STATUSES = tuple(s.value for s in TrialStatus if s.final)
OPEN_STATUSES = tuple(s.value for s in TrialStatus if not s.final)


@dataclass(frozen=True)
class SessionRow:
    id: int
    tag: str
    branch: str
    base_commit: str
    worktree: str
    metric: str
    direction: str
    config: dict[str, Any]
    proposer: str
    status: str
    created_at: float
    updated_at: float
    noise: float | None
    fingerprint_key: str | None


@dataclass(frozen=True)
class RunRow:
    id: int
    experiment_id: str
    role: str
    idx: int
    attempt: int
    commit_sha: str
    status: str
    exit_code: int | None
    duration_s: float | None
    log_path: str | None
    fingerprint_key: str | None
    started_at: float
    finished_at: float | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentRow:
    id: str
    session_id: int
    seq: int
    kind: str
    status: str
    hypothesis: str
    rationale: str
    proposer: str
    params: dict[str, Any] | None
    parent_commit: str | None
    commit_sha: str | None
    tree_sha: str | None
    files: list[str]
    lines_added: int
    lines_removed: int
    objective: float | None
    incumbent_objective: float | None
    delta: float | None
    threshold: float | None
    decision_reason: str
    guards: list[dict[str, Any]]
    attempts: int
    cost_usd: float
    worker: str
    started_at: float
    finished_at: float | None

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at
