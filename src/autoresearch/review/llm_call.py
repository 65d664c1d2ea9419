"""One model call of a review: reserved against the cap, its cost recorded, its failure named.

The provider (shared with the llm proposer) retries what is worth retrying; what is left is a
fact about this call, not an exception for the review: a call the cap forbade, a call that
failed (bad key, unknown model, outage after every retry, a refused request), or a reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from autoresearch.errors import AutoresearchError
from autoresearch.proposers.base import Usage
from autoresearch.proposers.faults import usage_of
from autoresearch.proposers.llm.providers import Part, Turn
from autoresearch.review.budget import Refusal, estimate_tokens
from autoresearch.review.context import ReviewContext


@dataclass
class CallResult:
    text: str | None = None
    usage: list[Usage] = field(default_factory=list)
    skipped: bool = False  # the cap forbade it
    skip_reason: str = ""  # why, naming the cap's setting (budget.py)
    error: str | None = None
    truncated: bool = False


def ask(ctx: ReviewContext, system: str, turns: Sequence[Turn], *, purpose: str, what: str,
        model: str | None = None) -> CallResult:
    setup = ctx.settings.llm
    assert setup is not None
    provider = ctx.provider(model)
    prompt = system + "".join(t.text for t in turns)
    chosen = provider.settings
    estimate = ctx.budget.estimate(setup.prices, chosen.model, prompt, chosen.max_tokens)
    detail = (f"~{estimate_tokens(prompt):,} prompt tokens and a full {chosen.max_tokens:,}-token "
              f"reply at {chosen.model}'s prices")
    reservation = ctx.budget.reserve(estimate, what, detail)
    if isinstance(reservation, Refusal):
        return CallResult(skipped=True, skip_reason=reservation.reason)
    usage: list[Usage] = []
    try:
        meter = ctx.budget.meter  # a session's review gate: its time limit bounds the call
        completion = provider.complete([Part(system, cache=True)], list(turns), purpose=purpose,
                                       deadline=meter.deadline if meter is not None else None)
        usage.append(completion.usage)
        return CallResult(text=completion.text, usage=usage, truncated=completion.truncated)
    except AutoresearchError as exc:
        usage.extend(usage_of(exc))
        return CallResult(usage=usage, error=exc.what)
    finally:
        ctx.budget.settle(reservation, usage)
