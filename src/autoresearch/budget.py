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
from typing import Any, Protocol


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
        """"$1.20 on model calls + $3.40 on 1.36 h of machine time at $2.50/h"."""
        model = f"${self.model_usd:.2f} on model calls"
        if self.compute_usd is None or self.usd_per_hour is None:
            return model
        return (f"{model} + ${self.compute_usd:.2f} on {self.compute_s / 3600:.2f} h of machine "
                f"time at ${self.usd_per_hour:g}/h")


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
