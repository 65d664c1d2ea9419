"""One budget for a session: what its model calls cost plus what its machine time costs.

`[limits] max_usd` caps the session's spend. Model calls are priced as they return (the ledger's
usage table). Machine time is priced when `[limits] compute_usd_per_hour` says what the machine
costs an hour (a rented GPU box, all its slots together): the session pays for the time it is at
work, the union of its experiments' and runs' spans, so the time between a stop and a resume
costs nothing and N slots at once cost the machine's hour once. Both count against the one cap:
a night on a rented H100 with an LLM proposer stops when tokens and GPU hours together reach it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from autoresearch.views.format import fmt_duration, fmt_usd

if TYPE_CHECKING:
    from autoresearch.config import Config


class _Spans(Protocol):
    def usage_totals(self, session_id: int) -> dict[str, float]: ...

    def work_spans(self, session_id: int) -> list[tuple[float, float | None]]: ...


def active_seconds(spans: Sequence[tuple[float | None, float | None]], until: float) -> float:
    """The length of the union of [start, end] spans (an open one ends at `until`): the time the
    session was doing something, without the pauses between its processes."""
    intervals = sorted((start, end if end is not None else until)
                       for start, end in spans if start is not None)
    total, current_start, current_end = 0.0, None, None
    for start, end in intervals:
        if current_end is None or start > current_end:
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            current_start, current_end = start, max(start, end)
        else:
            current_end = max(current_end, end)
    if current_end is not None and current_start is not None:
        total += current_end - current_start
    return total


@dataclass(frozen=True)
class Spend:
    """A session's spend so far; `compute_usd` is None when machine time is not priced."""

    model_usd: float
    compute_usd: float | None
    compute_s: float
    usd_per_hour: float | None

    @property
    def total_usd(self) -> float:
        return self.model_usd + (self.compute_usd or 0.0)

    def describe(self) -> str:
        """"$1.20 on model calls + $3.40 on 1 h 21 min of machine time at $2.50/h" (seconds,
        minutes or hours as the time is long: 12 s once read "0.00 h")."""
        model = f"{fmt_usd(self.model_usd)} on model calls"
        if self.compute_usd is None or self.usd_per_hour is None:
            return model
        return (f"{model} + {fmt_usd(self.compute_usd)} on {fmt_duration(self.compute_s)} of "
                f"machine time at ${self.usd_per_hour:g}/h")


# How the session's stop reason begins when the spending limit stopped it (session.py).
SPEND_STOP = "the spending limit is reached"


def is_spend_stop(reason: str) -> bool:
    """Whether a session's stop reason is its spending limit (to be said again once the
    experiments in flight are recorded: they kept spending after the limit was seen)."""
    return reason.startswith(SPEND_STOP)


def price_per_hour(limits: Mapping[str, Any]) -> float | None:
    """`[limits] compute_usd_per_hour` from a session's recorded config."""
    value = limits.get("compute_usd_per_hour")
    return None if value is None else float(value)


def session_spend(ledger: _Spans, session_id: int, usd_per_hour: float | None,
                  now: float | None = None) -> Spend:
    model = float(ledger.usage_totals(session_id)["cost_usd"])
    if usd_per_hour is None:
        return Spend(model, None, 0.0, None)
    seconds = active_seconds(ledger.work_spans(session_id), time.time() if now is None else now)
    return Spend(model, usd_per_hour * seconds / 3600.0, seconds, usd_per_hour)


def unreachable_spend_limit(config: Config, proposer: str) -> str | None:
    """A warning when `[limits] max_usd` can never stop the session: its proposer (`tune`)
    makes no model call, no LLM reviewer is at the gate, and machine time is not priced (or
    priced at $0), so the spend stays $0 and the cap is no limit at all."""
    limits, review = config.limits, config.review
    if limits.max_usd is None or limits.compute_usd_per_hour or proposer != "tune":
        return None
    if review.gate != "off" and review.llm not in (None, False):
        return None  # the gate's LLM reviewers are billed to the session
    unpriced = ("machine time is not priced (no [limits] compute_usd_per_hour)"
                if limits.compute_usd_per_hour is None else
                "machine time is priced at $0 ([limits] compute_usd_per_hour = 0)")
    return (f"[limits] max_usd = {limits.max_usd:g} can never stop this session: the tune "
            f"proposer makes no model calls and {unpriced}, so its spend stays $0. Set "
            "compute_usd_per_hour to what the machine costs an hour for the cap to count its "
            "time, or limit the session with max_hours or max_experiments")
