"""What a review produces: raw findings from reviewers, ranked findings, and the review itself.

A reviewer reports `RawFinding`s: a claim about a range of lines in the head revision, with the
code it quotes. LLM findings are anchored and verified before they count; analyzer findings are
anchored by construction. Aggregation turns them into `Finding`s, one per underlying issue, each
with a colour:

    red     fix before merge (a likely bug or vulnerability on a line this change adds)
    yellow  worth a look (on a changed line, less certain or less severe)
    purple  about pre-existing code or a past bug: context, never a verdict on the change
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from autoresearch.proposers.base import Usage

Colour = Literal["red", "yellow", "purple"]
Severity = Literal["high", "medium", "low"]
COLOURS: tuple[Colour, ...] = ("red", "yellow", "purple")
# The note of a review none of whose LLM passes was made (the cap or a session's limit refused
# each one's first call), followed by why: its "no findings" are the offline reviewers' alone.
# The review gate's reason and every view of a review say it in these words.
LLM_NOT_ASKED = "the LLM reviewers were not asked"
# How the review gate's keep reason ends when the review could not run at all (gatekeeper.py);
# the views count such keeps by it.
GATE_FAILED = "kept unreviewed: the review gate failed"
SEVERITY_RANK: dict[str, int] = {"high": 3, "medium": 2, "low": 1}

# The kinds of problem a finding may be about. LLM reviewers must pick from this list (anything
# else becomes "other"); analyzer rules are mapped onto it. Deduplication and the fingerprint use
# the category, so two reviewers describing one issue in different words still meet.
CATEGORIES: tuple[str, ...] = (
    "logic",  # wrong result: off-by-one, inverted condition, wrong variable, unreachable branch
    "error-handling",  # swallowed or mis-handled exceptions
    "resource",  # leaked files, sockets, locks, processes
    "concurrency",  # races, unsynchronised shared state, check-then-act on files
    "injection",  # shell / command injection
    "sql",  # SQL built from strings
    "security",  # other vulnerabilities: secrets, unsafe deserialisation, weak crypto, temp files
    "types",  # a value of the wrong type reaches an operation
    "regression",  # brings back something an earlier fix removed
    "rules",  # breaks a rule from the project's REVIEW.md
    "other",
)


@dataclass(frozen=True)
class RawFinding:
    """One reviewer's claim about lines of the head revision (1-based, inclusive)."""

    reviewer: str  # "ruff", "bandit", "llm:logic", ...
    angle: str  # logic | security | history | rules | types
    path: str
    start_line: int
    end_line: int
    title: str
    body: str
    quote: str  # the code the finding is about, as the reviewer quoted it
    category: str
    severity: Severity
    confidence: float
    rule: str = ""  # the analyzer's rule id (S602, B110, arg-type) when there is one
    about_past: bool = False  # a note about pre-existing code or a past bug (always purple)
    needs_verification: bool = False  # LLM findings: anchored and verified before they count


@dataclass(frozen=True)
class Dropped:
    """A finding that did not survive verification, and why (shown in the summary as counts)."""

    finding: RawFinding
    reason: str
    stage: Literal["quote", "model", "budget"]


@dataclass(frozen=True)
class Finding:
    """One underlying issue after verification, deduplication and ranking."""

    fingerprint: str
    colour: Colour
    path: str
    start_line: int
    end_line: int
    angle: str
    category: str
    severity: Severity
    title: str
    body: str
    evidence: str  # the code at the anchored lines of the head revision
    confidence: float
    sources: tuple[str, ...]  # "bandit B602", "llm:security", ...
    on_changed_lines: bool
    inline: bool = False  # posted as an inline comment (within the cap, not already reported)
    known: bool = False  # reported by an earlier review of the same subject

    @property
    def location(self) -> str:
        span = f"{self.start_line}" if self.end_line == self.start_line else (
            f"{self.start_line}-{self.end_line}")
        return f"{self.path}:{span}"


@dataclass(frozen=True)
class ReviewerRun:
    """What one reviewer (or one LLM pass) did: for the summary and the ledger."""

    name: str
    kind: Literal["offline", "llm", "verify"]
    status: Literal["ok", "skipped", "failed", "not-asked"]
    seconds: float = 0.0
    findings: int = 0
    note: str = ""


@dataclass(frozen=True)
class Subject:
    """What was reviewed. `key` names it across reviews, so a re-review knows what it reported."""

    kind: Literal["range", "diff", "session", "commit"]
    label: str
    key: str
    base: str | None = None
    head: str | None = None


@dataclass(frozen=True)
class CostSummary:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    usd: float = 0.0
    calls: int = 0
    max_usd: float | None = None
    capped: bool = False  # the cap stopped the review from asking every reviewer

    @classmethod
    def of(cls, usage: Sequence[Usage], max_usd: float | None, capped: bool) -> CostSummary:
        return cls(
            input_tokens=sum(u.input_tokens for u in usage),
            output_tokens=sum(u.output_tokens for u in usage),
            cache_read_tokens=sum(u.cache_read_tokens for u in usage),
            cache_write_tokens=sum(u.cache_write_tokens for u in usage),
            usd=sum(u.cost_usd for u in usage), calls=len(usage), max_usd=max_usd, capped=capped,
        )


@dataclass(frozen=True)
class Review:
    """A finished review: ranked findings, what was dropped, who ran, what it cost."""

    subject: Subject
    findings: tuple[Finding, ...]
    dropped: tuple[Dropped, ...]
    reviewers: tuple[ReviewerRun, ...]
    usage: tuple[Usage, ...]
    cost: CostSummary
    scale: str  # the scale rule's decision, in words
    files: int
    lines_added: int
    lines_removed: int
    started_at: float
    duration_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)  # budget stops, skipped reviewers, ...

    def by_colour(self, colour: Colour) -> list[Finding]:
        return [f for f in self.findings if f.colour == colour]

    def count(self, colour: Colour, *, new_only: bool = False) -> int:
        """Findings of this colour (a finding reported before is still there: it counts)."""
        return sum(1 for f in self.findings if f.colour == colour and not (new_only and f.known))

    @property
    def failed(self) -> list[ReviewerRun]:
        return [r for r in self.reviewers if r.status == "failed"]

    @property
    def llm_not_asked(self) -> str | None:
        """ "the LLM reviewers were not asked: <why>" when no LLM pass was made, else None."""
        return llm_not_asked(self.notes)


def llm_not_asked(notes: Sequence[str]) -> str | None:
    """The note saying that no LLM pass was made, among a review's notes (None: none says so)."""
    return next((n for n in notes if n.startswith(LLM_NOT_ASKED)), None)
