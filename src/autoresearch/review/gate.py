"""The review gate of the research loop (`[review] gate = "red"`).

On a would-be keep the engine (`gatekeeper.py`, from `judge.settle`) calls
`review_candidate(repo, parent, candidate, config)`: the candidate commit is reviewed against its
parent (offline reviewers by default; the LLM reviewers too when `[review] llm` is set), and a red
finding on a changed line (or a yellow one, with `gate = "yellow"`) blocks the keep: the
experiment becomes a discard with the finding as its reason. A reviewer that fails never blocks
(the gate reports what it could check). The engine bills each model call to the experiment as
it returns, through the `meter` it passes (the llm proposer's `Meter`), then records the review
against the experiment with `record_gate(ledger, result, ...)`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.config import ProposerConfig, ReviewConfig
from autoresearch.ledger import Ledger
from autoresearch.proposers.base import Meter, Usage
from autoresearch.review.change import from_commits
from autoresearch.review.context import ReviewSettings
from autoresearch.review.llm_setup import resolve_llm
from autoresearch.review.model import Colour, Finding, Review
from autoresearch.review.pipeline import run_review
from autoresearch.review.protected import DEFAULT_PROTECTED, configured_protected
from autoresearch.review.registry import load_reviewers, select
from autoresearch.review.store import record_review

BLOCKING: dict[str, tuple[Colour, ...]] = {"red": ("red",), "yellow": ("red", "yellow"),
                                           "off": ()}
MAX_REASONS = 3


@dataclass(frozen=True)
class GateResult:
    blocked: bool
    reason: str  # the decision reason when blocked; a one-line summary otherwise
    blockers: tuple[Finding, ...]  # the findings that block (empty when not blocked)
    findings: tuple[Finding, ...]  # every finding of the review, ranked
    cost_usd: float
    usage: tuple[Usage, ...]
    review: Review


def settings_for_gate(config: ReviewConfig, proposer: ProposerConfig | None,
                      env: Mapping[str, str], protected: Sequence[str] = ()) -> ReviewSettings:
    llm, note = resolve_llm(config.llm, proposer.name if proposer else "",
                            proposer.options if proposer else {}, env, when_unset="off")
    return ReviewSettings(
        reviewers=tuple(config.reviewers) if config.reviewers else None, llm=llm, llm_note=note,
        max_usd=config.max_usd, inline_cap=config.inline_cap,
        history_commits=config.history_commits, tool_timeout_s=config.tool_timeout_seconds,
        protected=(*DEFAULT_PROTECTED, *protected))


def check_gate(config: ReviewConfig, proposer: ProposerConfig | None = None,
               env: Mapping[str, str] | None = None) -> str:
    """Resolve the gate's settings once before a session starts, so a bad `[review]` (an
    unknown reviewer, `llm = true` without a model) stops it at once with a ConfigError instead
    of failing at the first keep. Returns a sentence for the session's header."""
    if config.gate == "off":
        return "review gate off"
    settings = settings_for_gate(config, proposer, os.environ if env is None else env)
    available = load_reviewers()
    names = list(settings.reviewers) if settings.reviewers else [
        name for name, r in available.items() if r.kind == "offline" or settings.llm is not None]
    select(available, names, "autoresearch.toml → review.reviewers")
    model = f"; LLM: {settings.llm.describe}" if settings.llm is not None else ""
    return f"review gate {config.gate}: {', '.join(names)}{model}"


def describe_block(blockers: list[Finding], gate: str) -> str:
    parts = [f"{f.colour} {f.location} {f.title} ({', '.join(f.sources)})"
             for f in blockers[:MAX_REASONS]]
    more = len(blockers) - MAX_REASONS
    return (f"review gate ({gate}): " + "; ".join(parts)
            + (f"; and {more} more" if more > 0 else ""))


def review_candidate(repo: Path, parent_commit: str, candidate_commit: str,
                     config: ReviewConfig, *, proposer: ProposerConfig | None = None,
                     env: Mapping[str, str] | None = None, label: str | None = None,
                     known: Collection[str] = (), meter: Meter | None = None) -> GateResult:
    """Review `candidate_commit` against `parent_commit` and decide whether it blocks a keep;
    with a `meter`, each model call is billed through it as it returns (`result.usage` lists
    them too: not to be billed again)."""
    # The session's protected files (the evaluation) are the ones a model must never read: the
    # candidate cannot have changed the config that lists them (it is always protected).
    settings = settings_for_gate(config, proposer, os.environ if env is None else env,
                                 configured_protected(repo))
    change = from_commits(repo, parent_commit, candidate_commit,
                          key=f"commit:{candidate_commit}",
                          label=label or f"candidate {candidate_commit[:12]} against "
                          f"{parent_commit[:12]}")
    review = run_review(change, settings, known=known, meter=meter)
    colours = BLOCKING[config.gate]
    blockers = [f for f in review.findings if f.colour in colours and f.on_changed_lines]
    if blockers:
        reason = describe_block(blockers, config.gate)
    else:
        counts = ", ".join(f"{review.count(c)} {c}" for c in ("red", "yellow", "purple"))
        failed = [r.name for r in review.failed]
        reason = f"review: {counts}" + (f" (failed: {', '.join(failed)})" if failed else "")
    return GateResult(blocked=bool(blockers), reason=reason, blockers=tuple(blockers),
                      findings=review.findings,
                      cost_usd=review.cost.usd, usage=review.usage, review=review)


def record_gate(ledger: Ledger, result: GateResult, *, session_id: int | None,
                experiment_id: str | None) -> int:
    """Record the gate's review against the experiment it judged; returns the review's id."""
    return record_review(ledger, result.review, blocked=result.blocked, session_id=session_id,
                         experiment_id=experiment_id)
