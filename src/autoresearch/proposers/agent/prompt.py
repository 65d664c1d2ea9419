"""The task given to a coding agent: the same context as the `llm` proposer, minus the file
contents (the agent reads files itself), plus the rules of the worktree it works in."""

from __future__ import annotations

import re

from autoresearch.proposers.base import ProposalContext
from autoresearch.proposers.llm.context import Context
from autoresearch.unicode_controls import clean_prose

RULES = """\
You are the proposer of an autonomous research loop, working in a git worktree (your current
directory). Make ONE experiment: a single idea, implemented as a small, focused edit of the files.

Rules, enforced by the harness:
- Edit only these files (the scope): {scope}. Creating or changing any other file, or any
  protected file ({protected}), gets the whole change rejected and thrown away.
- Do NOT run the verify command (`{verify}`), training runs, benchmarks or tests that take long:
  the harness runs the experiment under a fixed budget and decides whether it is kept.
- Do NOT commit, switch branches, create or move refs, stash, or change git's config or hooks
  (do not run git at all): leave your change as edits in the working tree. The harness checks
  HEAD and every ref after you finish; any such change gets the whole change rejected.
- Do NOT create, edit or delete git-ignored files (data, caches, outputs) or any .gitignore:
  the harness cannot see or commit them, so such a change is rejected and reverted.
- Read the history below: do not repeat discarded ideas; refine near-misses; when told you are
  stuck, change direction.

When you are done, end your final message with two lines:
HYPOTHESIS: <one line: the change and why it should move the objective>
RATIONALE: <two to five sentences>
"""

PROPOSE = "## Your task\nMake the next experiment's change now."

REPAIR = """\
## Repair a crash
The experiment "{hypothesis}" crashed when it was run; the log tail is above. {state}
Fix the cause of the crash while keeping the idea; change nothing else. If the idea cannot work,
make no change and say why."""

_HYPOTHESIS = re.compile(r"^\s*[*_#\s]*HYPOTHESIS[*_\s]*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_RATIONALE = re.compile(r"^\s*[*_#\s]*RATIONALE[*_\s]*:\s*(.+(?:\n(?!\s*\n).+)*)",
                        re.IGNORECASE | re.MULTILINE)


def names_hypothesis(text: str) -> bool:
    """Whether `text` has a `HYPOTHESIS:` line (what `summary` reads first)."""
    return _HYPOTHESIS.search(text) is not None


def render(ctx: ProposalContext, context: Context, task: str) -> str:
    rules = RULES.format(
        scope=", ".join(ctx.config.scope),
        protected=", ".join(ctx.config.all_protected),
        # `{python}` is the harness's placeholder; the agent would look for "python".
        verify=ctx.config.verify.command.replace("{python}", "python"),
    )
    return "\n\n".join([rules, context.stable, context.volatile, task])


def summary(text: str, fallback: str, *, fallback_first: bool = False) -> tuple[str, str]:
    """The hypothesis and rationale lines of the agent's final message (or a fallback: after the
    message's first line, or before it with `fallback_first`, for a commit message)."""
    text = clean_prose(text)  # the agent's output is untrusted text
    hyp = _HYPOTHESIS.findall(text)
    rat = _RATIONALE.findall(text)
    hypothesis = " ".join(hyp[-1].split()).strip(" *_")[:200] if hyp else ""
    if not hypothesis and fallback_first and fallback.strip():
        hypothesis = " ".join(clean_prose(fallback).split())[:200]
    if not hypothesis:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("{")]
        hypothesis = lines[0][:200] if lines else fallback
    rationale = rat[-1].strip()[:2000] if rat else ""
    return hypothesis, rationale
