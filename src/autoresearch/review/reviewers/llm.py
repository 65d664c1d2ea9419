"""LLM reviewers: one per angle, each a prompt; a pass asks the model about one or more angles.

The built-in angles are logic (first: the errors that matter most), security, history
(regressions against the fix history) and rules (the project's REVIEW.md). The scale rule
(`review/scale.py`) decides which angles run and how many calls they take: a one-line change
gets a single pass covering every applicable angle, a large change one pass per angle. A new
angle is a subclass with a name, an `angle` and its `instructions`, registered under the
`autoresearch.reviewers` entry-point group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from autoresearch.proposers.llm.providers import Turn
from autoresearch.review.context import ReviewContext
from autoresearch.review.diff import ChangedFile
from autoresearch.review.llm_call import ask
from autoresearch.review.model import Dropped
from autoresearch.review.prompts import (
    ANGLES,
    RETRY_JSON,
    history_block,
    review_prompt,
    review_system,
    rules_block,
)
from autoresearch.review.replies import ReplyError, findings_from_reply
from autoresearch.review.reviewers.base import Reviewer, ReviewerReport, ReviewerUnavailable

CHARS_PER_TOKEN = 3.5
DOC_SUFFIXES = (".md", ".rst", ".txt", ".adoc")
# How much of an unusable reply goes back to the model with the request to answer again: enough
# to see what went wrong; a 5 MB reply echoed whole would make a 5 MB (and 5 MB-priced) prompt.
MAX_ECHOED_CHARS = 4_000


def code_files(files: Sequence[ChangedFile]) -> list[ChangedFile]:
    return [f for f in files if not f.path.lower().endswith(DOC_SUFFIXES)]


class LLMReviewer(Reviewer):
    kind = "llm"
    instructions: ClassVar[str] = ""
    # The built-in angles may share one call on a small change (the scale rule); a plugin's
    # angle always gets a call of its own.
    combinable: ClassVar[bool] = False

    def skip_reason(self, ctx: ReviewContext) -> str | None:
        if ctx.settings.llm is None:
            return no_model_reason(ctx)
        if code_files(ctx.model_files):
            return None
        if code_files(ctx.change.reviewable):
            return "only protected code files changed (no model may read them)"
        return "no code file changed"

    def review(self, ctx: ReviewContext) -> ReviewerReport:
        return run_pass(ctx, [self], ctx.model_files)


def no_model_reason(ctx: ReviewContext) -> str:
    return ctx.settings.llm_note or "no model configured"


class BuiltinAngleReviewer(LLMReviewer):
    """A built-in angle: its instructions are the shared prompt text for its `angle`
    (prompts.ANGLES), and it may share one call with the other built-ins on a small change."""

    combinable = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "instructions" not in vars(cls) and cls.angle in ANGLES:
            cls.instructions = ANGLES[cls.angle]


class LogicReviewer(BuiltinAngleReviewer):
    name: ClassVar[str] = "logic"
    angle = "logic"
    description = "a model looking for logic errors (no style nits)"


class SecurityReviewer(BuiltinAngleReviewer):
    name: ClassVar[str] = "security"
    angle = "security"
    description = "a model looking for vulnerabilities"


class RegressionReviewer(BuiltinAngleReviewer):
    name: ClassVar[str] = "regression"
    angle = "history"
    description = "a model comparing the change with the files' fix history"

    def skip_reason(self, ctx: ReviewContext) -> str | None:
        reason = super().skip_reason(ctx)
        if reason is None and not any(ctx.history.fix_commits(f.old_path or f.path)
                                      for f in ctx.model_files):
            return "no fix commit in the touched files' history"
        return reason


class RulesReviewer(BuiltinAngleReviewer):
    name: ClassVar[str] = "rules"
    angle = "rules"
    description = "a model checking the project's REVIEW.md rules"

    def skip_reason(self, ctx: ReviewContext) -> str | None:
        if ctx.settings.llm is None:
            return no_model_reason(ctx)
        if not ctx.model_files:
            return "no file with added lines" if not ctx.change.reviewable else \
                "only protected files changed (no model may read them)"
        return None if ctx.rules else "no REVIEW.md applies to the changed files"


def echoed(reply: str) -> str:
    """An unusable reply as it is sent back with the retry: its start, when it is long."""
    if len(reply) <= MAX_ECHOED_CHARS:
        return reply
    return reply[:MAX_ECHOED_CHARS] + f"\n[... {len(reply) - MAX_ECHOED_CHARS:,} more characters]"


def run_pass(ctx: ReviewContext, reviewers: Sequence[LLMReviewer],
             files: Sequence[ChangedFile]) -> ReviewerReport:
    """Ask the model about `files` from the angles of `reviewers` (one call, one retry)."""
    setup = ctx.settings.llm
    if setup is None:
        raise ReviewerUnavailable(no_model_reason(ctx))
    # Whoever chose `files`, a protected one never reaches the prompt (protected.py).
    files = [f for f in files if f.path not in ctx.withheld]
    if not files:
        return ReviewerReport(notes=["every file of this pass is protected: nothing to ask"])
    angles = [r.angle for r in reviewers]
    instructions = {r.angle: r.instructions for r in reviewers}
    paths = [f.path for f in files]
    history_paths = [f.old_path or f.path for f in files]
    history = history_block(ctx.history, history_paths) if "history" in angles else \
        history_block(ctx.history, history_paths)[:4_000]
    rules = rules_block(ctx.rules, paths)
    system = review_system(angles, instructions)
    budget_chars = int(setup.context_tokens * CHARS_PER_TOKEN) - len(system)
    prompt = review_prompt(ctx.change, files, history=history, rules=rules,
                           budget_chars=budget_chars)
    what = f"{'+'.join(angles)} pass over {len(files)} file(s)"
    turns = [Turn.user(prompt)]
    report = ReviewerReport()
    problem = ""
    for attempt in (1, 2):
        result = ask(ctx, system, turns, purpose="review", what=what)
        report.usage += result.usage
        if result.skipped:
            if attempt == 2:
                # The first call was made and answered nothing usable: the pass did not review
                # the files, and must not pass for a pass the cap merely spared.
                raise RuntimeError(f"the model's reply was not usable JSON ({problem}); its "
                                   f"retry was not made: {result.skip_reason}")
            report.notes.append(f"not asked: {what}: {result.skip_reason}")
            return report
        if result.error is not None:
            raise RuntimeError(result.error)
        assert result.text is not None
        try:
            found, rejected = findings_from_reply(
                result.text, reviewer_prefix="llm", angles=angles,
                paths=paths)
        except ReplyError as exc:
            if attempt == 2:
                raise RuntimeError(f"the model's reply was not usable JSON twice ({exc})") from None
            problem = "it was cut off at the output limit" if result.truncated else str(exc)
            turns = [*turns, Turn.assistant(echoed(result.text)),
                     Turn.user(RETRY_JSON.format(problem=problem))]
            continue
        report.findings += found
        report.dropped += [Dropped(r.finding, r.reason, "quote") for r in rejected]
        return report
    return report
