"""The reviewer interface: one angle on a change, offline or through a model.

A reviewer reads the shared `ReviewContext` and returns a `ReviewerReport`. Offline reviewers
(analyzers, history) report findings anchored to real lines; LLM reviewers' findings carry
`needs_verification` and are checked before they count. Plugins subclass `Reviewer` (or
`LLMReviewer` in `reviewers/llm.py`, for a new angle that is only a prompt) and register the class
under the entry-point group `autoresearch.reviewers`; the built-ins register the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from autoresearch.proposers.base import Usage
from autoresearch.review.context import ReviewContext
from autoresearch.review.model import Dropped, RawFinding


@dataclass
class ReviewerReport:
    findings: list[RawFinding] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)  # claims that could not be anchored


class ReviewerUnavailable(Exception):
    """The reviewer cannot run in this setting (its tool is missing); not a failure."""


class Reviewer(ABC):
    name: ClassVar[str]
    kind: ClassVar[Literal["offline", "llm"]] = "offline"
    angle: ClassVar[str] = "logic"
    description: ClassVar[str] = ""

    def skip_reason(self, ctx: ReviewContext) -> str | None:
        """Why this reviewer has nothing to do on this change (None: it runs)."""
        return None

    @abstractmethod
    def review(self, ctx: ReviewContext) -> ReviewerReport:
        """Review the change; raise ReviewerUnavailable when the tool cannot run here."""
