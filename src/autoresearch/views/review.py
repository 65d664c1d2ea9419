"""The code reviews of a session's experiments, as every view shows them.

The in-loop review gate (`[review] gate`) reviews each would-be keep and records the review
against the experiment it judged (review/gate.py `record_gate`). The experiment drawer, `show ID`
and the report read it from here, so they say the same thing in the same words:
"review: 1 red, 2 yellow — blocked the keep".

Which findings blocked the keep is not stored finding by finding; it follows from the gate's rule
(red or yellow findings on changed lines block, and a red one blocks under either setting): in
a blocked review the red findings blocked it, or, when there is none, the yellow ones did (only
`gate = "yellow"` blocks on those). Purple findings never block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from autoresearch.ledger import Ledger
from autoresearch.ledger.reviews import (
    INTERRUPTED_SCALE,
    FindingFields,
    ReviewFindingRecord,
    ReviewMark,
    ReviewRow,
)
from autoresearch.review.model import GATE_FAILED, LLM_NOT_ASKED, llm_not_asked
from autoresearch.views.experiment import ExperimentView

COLOURS = ("red", "yellow", "purple")
# What each colour asks of the reader (the words of `autoresearch review`).
MEANING = {"red": "fix before merge", "yellow": "worth a look",
           "purple": "about existing code or past bugs"}


@dataclass(frozen=True)
class FindingView(FindingFields):
    location: str  # path:line or path:start-end
    blocking: bool  # one of the findings that turned the keep into a discard


@dataclass(frozen=True)
class ReviewerView:
    name: str
    kind: str  # offline | llm | verify
    status: str  # ok | skipped | failed | not-asked
    seconds: float
    findings: int
    note: str


@dataclass(frozen=True)
class ReviewView:
    id: int
    subject: str
    base_commit: str | None
    head_commit: str | None
    started_at: float
    duration_s: float
    red: int
    yellow: int
    purple: int
    blocked: bool
    headline: str  # "review: 1 red, 2 yellow — blocked the keep"
    findings: list[FindingView]  # ranked: red, yellow, purple; the most important first
    reviewers: list[ReviewerView]
    failed: list[ReviewerView]  # reviewers that failed (a failure never blocks a keep)
    input_tokens: int
    output_tokens: int
    cost_usd: float
    capped: bool  # the cost cap stopped it from asking every reviewer
    scale: str
    notes: list[str]
    cost_line: str  # "reviewers: ruff, bandit, history · 1.2 s · $0"

    @property
    def blockers(self) -> list[FindingView]:
        return [f for f in self.findings if f.blocking]

    def by_colour(self, colour: str) -> list[FindingView]:
        return [f for f in self.findings if f.colour == colour]


# It has no finding because none was judged, not because the change is clean.
INTERRUPTED_HEADLINE = "review: interrupted before it finished (no finding judged)"


def counts_text(red: int, yellow: int, purple: int) -> str:
    """ "1 red, 2 yellow" (the colours that have findings), or "no findings"."""
    parts = [f"{n} {c}" for c, n in zip(COLOURS, (red, yellow, purple), strict=True) if n]
    return ", ".join(parts) or "no findings"


def headline(red: int, yellow: int, purple: int, blocked: bool,
             failed: Sequence[str] = (), not_asked: str | None = None) -> str:
    """ "review: 1 red — blocked the keep"; `not_asked`: the note saying no LLM pass was made
    ("the LLM reviewers were not asked: ..."), so "no findings" does not read as the model's."""
    text = f"review: {counts_text(red, yellow, purple)}"
    if failed:
        text += f" ({', '.join(failed)} failed)"
    text += " — blocked the keep" if blocked else ""
    return text + (f"; {not_asked}" if not_asked else "")


def mark_headline(mark: ReviewMark) -> str:
    """The headline of a table row's review mark (no reviewer detail: the row has none); a
    review no LLM pass was made in says so, so its "no findings" is not read as the model's."""
    text = headline(mark.red, mark.yellow, mark.purple, mark.blocked)
    return text + " (offline reviewers only: `show` says why)" if mark.offline_only else text


def finding_meta(f: FindingView) -> str:
    """ "bandit B602 · security · injection · confidence 0.85" (angle and category once each)."""
    kinds = [f.angle] + ([f.category] if f.category != f.angle else [])
    return " · ".join([", ".join(f.sources), *kinds, f"confidence {f.confidence:.2f}"]
                      + (["reported before"] if f.known else []))


def blocking_colours(red: int, blocked: bool) -> tuple[str, ...]:
    """The colours whose findings blocked the keep (see the module's docstring)."""
    if not blocked:
        return ()
    return ("red",) if red else ("yellow",)


def _finding(f: ReviewFindingRecord, blocking: tuple[str, ...]) -> FindingView:
    span = f"{f.start_line}" if f.end_line == f.start_line else f"{f.start_line}-{f.end_line}"
    shared = {field.name: getattr(f, field.name) for field in fields(FindingFields)}
    shared["sources"] = list(f.sources)  # the view's own copy
    return FindingView(**shared, location=f"{f.path}:{span}", blocking=f.colour in blocking)


def _cost_line(reviewers: Sequence[ReviewerView], row: ReviewRow) -> str:
    """Who ran, how long it took and what it cost, in one line."""
    ran = [r.name for r in reviewers if r.status == "ok"]
    tokens = row.input_tokens + row.output_tokens + row.cache_read_tokens + row.cache_write_tokens
    spend = f"${row.cost_usd:.4f}, {tokens:,} tokens" if tokens else "$0 (no model calls)"
    if row.capped:
        spend += ", stopped by the cost cap"
    return f"reviewers: {', '.join(ran) or 'none ran'} · {row.duration_s:.1f} s · {spend}"


def _reviewer(raw: Mapping[str, Any]) -> ReviewerView:
    return ReviewerView(name=str(raw.get("name", "?")), kind=str(raw.get("kind", "")),
                        status=str(raw.get("status", "")),
                        seconds=float(raw.get("seconds") or 0.0),
                        findings=int(raw.get("findings") or 0), note=str(raw.get("note", "")))


def review_view(row: ReviewRow) -> ReviewView:
    blocking = blocking_colours(row.red, row.blocked)
    reviewers = [_reviewer(r) for r in row.reviewers]
    failed = [r for r in reviewers if r.status == "failed"]
    rank = {c: i for i, c in enumerate(COLOURS)}
    findings = sorted((_finding(f, blocking) for f in row.findings),
                      key=lambda f: rank.get(f.colour, len(COLOURS)))  # stable: keeps the rank
    return ReviewView(
        id=row.id, subject=row.subject, base_commit=row.base_commit, head_commit=row.head_commit,
        started_at=row.started_at, duration_s=row.duration_s, red=row.red, yellow=row.yellow,
        purple=row.purple, blocked=row.blocked,
        headline=(INTERRUPTED_HEADLINE if row.scale == INTERRUPTED_SCALE else
                  headline(row.red, row.yellow, row.purple, row.blocked,
                           [r.name for r in failed], llm_not_asked(row.notes))),
        findings=findings, reviewers=reviewers, failed=failed, input_tokens=row.input_tokens,
        output_tokens=row.output_tokens, cost_usd=row.cost_usd, capped=row.capped,
        scale=row.scale, notes=list(row.notes), cost_line=_cost_line(reviewers, row))


def experiment_reviews(ledger: Ledger, exp_id: str) -> list[ReviewView]:
    """The reviews recorded against one experiment, oldest first (the last one decided)."""
    if ledger.schema_version < ledger.REVIEWS_SCHEMA:
        return []  # a ledger from before the review tables, opened read-only
    return [review_view(r) for r in ledger.reviews(experiment_id=exp_id)]


def session_reviews(ledger: Ledger, session_id: int,
                    experiment_ids: Sequence[str]) -> dict[str, ReviewView]:
    """The latest review of each of these experiments that has one."""
    marks = ledger.review_marks(session_id, experiment_ids)
    out: dict[str, ReviewView] = {}
    for exp_id in marks:
        reviews = experiment_reviews(ledger, exp_id)
        if reviews:
            out[exp_id] = reviews[-1]
    return out


def gate_tally(experiments: Sequence[ExperimentView]) -> str:
    """What the review gate did in the session, in one sentence, or "" when it did nothing:
    "4 would-be keeps reviewed: 1 blocked (1 red); 3 not blocked (2 yellow, 1 purple)", then the
    keeps reviewed without their LLM reviewers (the cap let no call through) and the keeps the
    gate failed to review (both said by the keep's reason: gatekeeper.py)."""
    unreviewed = [e for e in experiments if GATE_FAILED in e.decision_reason]
    reviewed = [e for e in experiments if e.review is not None and e not in unreviewed]
    offline_only = [e.decision_reason[e.decision_reason.index(LLM_NOT_ASKED):]
                    for e in reviewed if LLM_NOT_ASKED in e.decision_reason]
    parts = [_reviewed_text([e.review for e in reviewed if e.review is not None], offline_only)]
    if unreviewed:
        parts.append(f"{len(unreviewed)} kept unreviewed (the review gate failed; `show ID` "
                     "says why)")
    return "; ".join(p for p in parts if p)


def _reviewed_text(reviewed: Sequence[ReviewMark], offline_only: Sequence[str]) -> str:
    """ "4 would-be keeps reviewed: 1 blocked (1 red); 3 not blocked (no findings), 3 of them
    by the offline reviewers alone (the LLM reviewers were not asked: <why>)"."""
    if not reviewed:
        return ""

    def part(group: list[ReviewMark], word: str) -> str:
        found = counts_text(sum(m.red for m in group), sum(m.yellow for m in group),
                            sum(m.purple for m in group))
        return f"{len(group)} {word} ({found})"

    blocked = [m for m in reviewed if m.blocked]
    passed = [m for m in reviewed if not m.blocked]
    n = len(reviewed)
    parts = [part(blocked, "blocked") if blocked else "none blocked"]
    if passed:
        parts.append(part(passed, "not blocked"))
    if offline_only:
        # The latest reason: the cap of a late review is what the session had left.
        parts[-1] += (f", {len(offline_only)} of them by the offline reviewers alone "
                      f"({offline_only[-1]})")
    return f"{n} would-be keep{'s' * (n != 1)} reviewed: " + "; ".join(parts)
