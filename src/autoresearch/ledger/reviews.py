"""Rows of the review tables (schema migration 3): one per review, one per finding.

A review is recorded by `autoresearch review` (unless --no-record) and by the in-loop review gate,
which attaches it to the experiment it judged (`experiment_id`). The ledger keeps plain values so
the ledger package does not depend on the review package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The scale of a review stopped before it finished: recorded for the cost of the model calls
# that had returned (review/store.py), with no finding because none was judged.
INTERRUPTED_SCALE = "interrupted"


@dataclass(frozen=True)
class FindingFields:
    """What a review says about one finding: the fields the ledger stores and every view shows
    (views/review.py `FindingView` adds how it is displayed)."""

    colour: str
    path: str
    start_line: int
    end_line: int
    angle: str
    category: str
    severity: str
    title: str
    body: str
    evidence: str
    confidence: float
    sources: list[str]
    inline: bool
    known: bool  # reported by an earlier review of the same commit


@dataclass(frozen=True)
class ReviewFindingRecord(FindingFields):
    fingerprint: str


@dataclass(frozen=True)
class ReviewRecord:
    subject_key: str
    subject: str
    kind: str
    base_commit: str | None
    head_commit: str | None
    started_at: float
    duration_s: float
    red: int
    yellow: int
    purple: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    capped: bool
    scale: str
    reviewers: list[dict[str, Any]]
    notes: list[str]
    findings: list[ReviewFindingRecord] = field(default_factory=list)
    blocked: bool = False
    session_id: int | None = None
    experiment_id: str | None = None


@dataclass(frozen=True)
class ReviewRow(ReviewRecord):
    id: int = 0


@dataclass(frozen=True)
class ReviewMark:
    """An experiment's latest review in brief, for a table row: its counts and whether it
    blocked the keep (`reviews` says how many reviews the experiment has)."""

    review_id: int
    red: int
    yellow: int
    purple: int
    blocked: bool
    reviews: int = 1
    # No LLM pass was made (the cap could not afford one): its "no findings" are the offline
    # reviewers' alone (review.model.LLM_NOT_ASKED among the review's notes).
    offline_only: bool = False
