"""Reviews in the ledger: what each cost and found, and what a re-review must not repeat."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from autoresearch.config import STATE_DIR
from autoresearch.ledger import Ledger
from autoresearch.ledger.reviews import INTERRUPTED_SCALE, ReviewFindingRecord, ReviewRecord
from autoresearch.proposers.base import Usage
from autoresearch.review.change import Change
from autoresearch.review.model import CostSummary, Review
from autoresearch.state import ensure_state_dir


def ledger_path(root: Path) -> Path:
    return root / STATE_DIR / "ledger.db"


def open_ledger(root: Path) -> Ledger:
    """The repository's ledger (created on first use, with the state directory git-ignored)."""
    state = root / STATE_DIR
    ensure_state_dir(state)
    return Ledger(ledger_path(root))


def to_record(review: Review, *, blocked: bool = False, session_id: int | None = None,
              experiment_id: str | None = None) -> ReviewRecord:
    c = review.cost
    return ReviewRecord(
        subject_key=review.subject.key, subject=review.subject.label, kind=review.subject.kind,
        base_commit=review.subject.base, head_commit=review.subject.head,
        started_at=review.started_at, duration_s=review.duration_s,
        red=review.count("red"), yellow=review.count("yellow"), purple=review.count("purple"),
        input_tokens=c.input_tokens, output_tokens=c.output_tokens,
        cache_read_tokens=c.cache_read_tokens, cache_write_tokens=c.cache_write_tokens,
        cost_usd=c.usd, capped=c.capped, scale=review.scale,
        reviewers=[asdict(r) for r in review.reviewers], notes=list(review.notes),
        findings=[ReviewFindingRecord(
            fingerprint=f.fingerprint, colour=f.colour, path=f.path, start_line=f.start_line,
            end_line=f.end_line, angle=f.angle, category=f.category, severity=f.severity,
            title=f.title, body=f.body, evidence=f.evidence, confidence=f.confidence,
            sources=list(f.sources), inline=f.inline, known=f.known) for f in review.findings],
        blocked=blocked, session_id=session_id, experiment_id=experiment_id)


def record_review(ledger: Ledger, review: Review, *, blocked: bool = False,
                  session_id: int | None = None, experiment_id: str | None = None) -> int:
    return ledger.add_review(to_record(review, blocked=blocked, session_id=session_id,
                                       experiment_id=experiment_id))


def interrupted_review(change: Change, usage: Sequence[Usage], *, max_usd: float | None,
                       started_at: float, why: str) -> Review:
    """What an interrupted review leaves for the ledger: no finding (none was verified and
    ranked), but the model calls that had returned, so their cost is not lost."""
    return Review(
        subject=change.subject, findings=(), dropped=(), reviewers=(), usage=tuple(usage),
        cost=CostSummary.of(usage, max_usd, False), scale=INTERRUPTED_SCALE,
        files=len(change.files), lines_added=change.lines_added,
        lines_removed=change.lines_removed, started_at=started_at,
        duration_s=time.time() - started_at,
        notes=(f"interrupted ({why}) before it finished: no finding recorded; the "
               f"{len(usage)} model call(s) that had returned are billed in its cost",))
