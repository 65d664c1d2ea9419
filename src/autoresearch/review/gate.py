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
from autoresearch.review.budget import REVIEW_MAX_USD, CapSource
from autoresearch.review.change import from_commits
from autoresearch.review.context import ReviewSettings
from autoresearch.review.llm_setup import resolve_llm
from autoresearch.review.model import Colour, Finding, Review
from autoresearch.review.pipeline import run_review
from autoresearch.review.protected import DEFAULT_PROTECTED, configured_protected
from autoresearch.review.registry import load_reviewers, select
from autoresearch.review.store import record_review
from autoresearch.views.format import fmt_usd

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
                      env: Mapping[str, str], protected: Sequence[str] = (),
                      cap_source: CapSource = REVIEW_MAX_USD) -> ReviewSettings:
    llm, note = resolve_llm(config.llm, proposer.name if proposer else "",
                            proposer.options if proposer else {}, env, when_unset="off")
    return ReviewSettings(
        reviewers=tuple(config.reviewers) if config.reviewers else None, llm=llm, llm_note=note,
        max_usd=config.max_usd, max_usd_source=cap_source, inline_cap=config.inline_cap,
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
    names = _gate_reviewers(settings)
    model = f"; LLM: {settings.llm.describe}" if settings.llm is not None else ""
    return f"review gate {config.gate}: {', '.join(names)}{model}"


def _gate_reviewers(settings: ReviewSettings) -> list[str]:
    """The names of the reviewers the gate may run (an unknown one named is a ConfigError)."""
    available = load_reviewers()
    names = list(settings.reviewers) if settings.reviewers else [
        name for name, r in available.items() if r.kind == "offline" or settings.llm is not None]
    select(available, names, "autoresearch.toml → review.reviewers")
    return names


def gate_warnings(config: ReviewConfig, proposer: ProposerConfig | None = None,
                  session_max_usd: float | None = None,
                  env: Mapping[str, str] | None = None) -> list[str]:
    """What `check` and `run` must say before a session whose gate has LLM reviewers: a model
    with no known price (its calls count as $0 against every cap), and a cap that no call can
    fit under, which would leave every review to the offline reviewers while each keep still
    read "no findings". `session_max_usd` is `[limits] max_usd`: a review may spend at most
    what the session has left, so the smaller of the two caps is the one that applies."""
    if config.gate == "off":
        return []
    settings = settings_for_gate(config, proposer, os.environ if env is None else env)
    setup = settings.llm
    if setup is None:
        return []
    warnings = setup.unpriced(setup.models)
    cap, source = _gate_cap(config.max_usd, session_max_usd)
    if cap is None:
        return warnings
    for model in setup.models:
        price = setup.prices.price_for(model)
        if price is None:
            continue
        least = price.cost(0, setup.settings.max_tokens)  # the reply alone; the prompt adds
        if least > cap:
            warnings.append(
                f"the review gate cannot afford its LLM reviewers: a call to {model} reserves "
                f"at least {fmt_usd(least)} (a full {setup.settings.max_tokens:,}-token reply "
                f"at ${price.output:g} per million output tokens, before its prompt), more "
                f"than the whole {fmt_usd(cap)} a review may spend ({source}): no such call "
                "would be made, and each keep would be reviewed by the offline reviewers only; "
                f"raise {source}, or lower max_tokens in [review] llm")
            break
    return warnings


def _gate_cap(review_max_usd: float | None,
              session_max_usd: float | None) -> tuple[float | None, str]:
    """The cap a gate review starts with, and the setting it comes from (the smaller)."""
    if session_max_usd is not None and (review_max_usd is None
                                        or session_max_usd < review_max_usd):
        return session_max_usd, "[limits] max_usd"
    return review_max_usd, "[review] max_usd"


def describe_block(blockers: list[Finding], gate: str) -> str:
    parts = [f"{f.colour} {f.location} {f.title} ({', '.join(f.sources)})"
             for f in blockers[:MAX_REASONS]]
    more = len(blockers) - MAX_REASONS
    return (f"review gate ({gate}): " + "; ".join(parts)
            + (f"; and {more} more" if more > 0 else ""))


def review_candidate(repo: Path, parent_commit: str, candidate_commit: str,
                     config: ReviewConfig, *, proposer: ProposerConfig | None = None,
                     env: Mapping[str, str] | None = None, label: str | None = None,
                     known: Collection[str] = (), meter: Meter | None = None,
                     cap_source: CapSource = REVIEW_MAX_USD) -> GateResult:
    """Review `candidate_commit` against `parent_commit` and decide whether it blocks a keep;
    with a `meter`, each model call is billed through it as it returns (`result.usage` lists
    them too: not to be billed again). `cap_source` names the setting `config.max_usd` comes
    from, for the reason of a call the cap refuses."""
    # The session's protected files (the evaluation) are the ones a model must never read: the
    # candidate cannot have changed the config that lists them (it is always protected).
    settings = settings_for_gate(config, proposer, os.environ if env is None else env,
                                 configured_protected(repo), cap_source)
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
        if review.llm_not_asked is not None:  # its "no findings" are the offline reviewers'
            reason += f"; {review.llm_not_asked}"
    return GateResult(blocked=bool(blockers), reason=reason, blockers=tuple(blockers),
                      findings=review.findings,
                      cost_usd=review.cost.usd, usage=review.usage, review=review)


def record_gate(ledger: Ledger, result: GateResult, *, session_id: int | None,
                experiment_id: str | None) -> int:
    """Record the gate's review against the experiment it judged; returns the review's id."""
    return record_review(ledger, result.review, blocked=result.blocked, session_id=session_id,
                         experiment_id=experiment_id)
