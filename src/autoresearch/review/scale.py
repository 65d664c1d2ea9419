"""The scale rule: which reviewers run, and in how many model calls, for a change of this size.

The offline reviewers run on every change they apply to (they are cheap and certain): ruff and
bandit on changed Python files, mypy when the project is typed, history whenever there is git
history. The LLM angles that apply are logic and security (code files changed), history (a fix
commit has touched a changed file) and rules (a REVIEW.md applies). How they are asked depends on
the size of the change, counted in changed lines (added + removed) of text files:

    tiny   <= 10 lines in one file      one pass covering every applicable angle
    small  <= 200 lines in <= 5 files   two passes: logic + rules, security + history
    large  anything bigger              one pass per angle, files batched so that no call
                                        carries more than BATCH_LINES changed lines

A change to documentation only (.md, .rst, .txt, .adoc) gets the rules angle alone. Naming
reviewers (`--reviewers` or `[review] reviewers`) overrides the choice: each named LLM angle gets
its own pass. A plugin angle always gets its own pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from autoresearch.review.context import ReviewContext
from autoresearch.review.diff import ChangedFile
from autoresearch.review.model import ReviewerRun
from autoresearch.review.reviewers.base import Reviewer
from autoresearch.review.reviewers.llm import LLMReviewer, code_files

TINY_LINES, SMALL_LINES, SMALL_FILES = 10, 200, 5
BATCH_LINES = 800
# The two passes of a small change: angles that read the same things go together.
SMALL_GROUPS = (("logic", "rules"), ("security", "history"))

Tier = Literal["tiny", "small", "large", "named"]


@dataclass(frozen=True)
class LLMPass:
    reviewers: tuple[LLMReviewer, ...]
    files: tuple[ChangedFile, ...]

    @property
    def name(self) -> str:
        return "llm:" + "+".join(r.angle for r in self.reviewers)


@dataclass
class Plan:
    tier: Tier
    offline: list[Reviewer] = field(default_factory=list)
    passes: list[LLMPass] = field(default_factory=list)
    skipped: list[ReviewerRun] = field(default_factory=list)
    description: str = ""


def size_of(files: list[ChangedFile]) -> tuple[int, int]:
    text = [f for f in files if not f.binary]
    return sum(f.lines_added + f.lines_removed for f in text), len(text)


def tier_of(lines: int, files: int) -> Tier:
    if lines <= TINY_LINES and files <= 1:
        return "tiny"
    if lines <= SMALL_LINES and files <= SMALL_FILES:
        return "small"
    return "large"


def batches(files: list[ChangedFile], limit: int = BATCH_LINES) -> list[tuple[ChangedFile, ...]]:
    """Files grouped in order so that each group's changed lines stay under `limit` (a bigger
    single file is a group of its own)."""
    out: list[list[ChangedFile]] = []
    size = 0
    for f in files:
        lines = f.lines_added + f.lines_removed
        if not out or size + lines > limit:
            out.append([])
            size = 0
        out[-1].append(f)
        size += lines
    return [tuple(group) for group in out if group]


def plan(ctx: ReviewContext, reviewers: list[Reviewer], *, named: bool) -> Plan:
    lines, nfiles = size_of(ctx.change.files)
    tier: Tier = "named" if named else tier_of(lines, nfiles)
    result = Plan(tier=tier)
    llm: list[LLMReviewer] = []
    for reviewer in reviewers:
        try:
            reason = reviewer.skip_reason(ctx)
        except Exception as exc:  # noqa: BLE001 - a plugin's mistake fails it, not the review
            result.skipped.append(ReviewerRun(
                reviewer.name, reviewer.kind, "failed",
                note=f"skip_reason() raised {type(exc).__name__}: {exc}"))
            continue
        if reason is not None:
            result.skipped.append(ReviewerRun(reviewer.name, reviewer.kind, "skipped",
                                              note=reason))
        elif isinstance(reviewer, LLMReviewer):
            llm.append(reviewer)
        else:
            result.offline.append(reviewer)
    reviewable = ctx.model_files  # what a model may read: the protected files left out
    code = code_files(reviewable)
    if not code and not named:  # documentation only: the project's rules, nothing else
        for r in [r for r in llm if r.angle != "rules"]:
            result.skipped.append(ReviewerRun(r.name, "llm", "skipped",
                                              note="documentation only"))
        llm = [r for r in llm if r.angle == "rules"]
    builtin = [r for r in llm if r.combinable]
    plugins = [r for r in llm if not r.combinable]
    targets = code if code else reviewable
    if builtin:
        if tier == "tiny":
            result.passes.append(LLMPass(tuple(builtin), tuple(targets)))
        elif tier == "small":
            for group in SMALL_GROUPS:
                members = tuple(r for r in builtin if r.angle in group)
                if members:
                    result.passes.append(LLMPass(members, tuple(_files_for(members, reviewable,
                                                                           code))))
        else:
            for r in builtin:
                for batch in batches(_files_for((r,), reviewable, code)):
                    result.passes.append(LLMPass((r,), batch))
    for r in plugins:
        for batch in batches(list(reviewable)):
            result.passes.append(LLMPass((r,), batch))
    calls = len(result.passes)
    offline = ", ".join(r.name for r in result.offline)
    passes = (f"{calls} LLM pass(es): " + ", ".join(p.name for p in result.passes) if calls
              else "no LLM pass")
    # No offline reviewer runs on an empty change: no empty item before the passes.
    result.description = (f"{tier} change ({lines} changed lines in {nfiles} file(s)): "
                          + "; ".join(part for part in (offline, passes) if part))
    return result


def _files_for(members: tuple[LLMReviewer, ...], reviewable: list[ChangedFile],
               code: list[ChangedFile]) -> list[ChangedFile]:
    """Rules read every file (documentation has rules too); the other angles read code."""
    if any(r.angle == "rules" for r in members):
        return reviewable
    return code or reviewable
