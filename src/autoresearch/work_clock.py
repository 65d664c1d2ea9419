"""The session's clock for drift: wall-clock time with its pauses taken out.

The verdict models slow machine drift as a linear trend in time (effect.py). Across a stop and a
resume, wall-clock time is the wrong axis: after a night's pause a trend fitted on minutes of
runs was extrapolated over hours, and the uncertainty it added dwarfed the noise (±3.4 where
σ was 0.03, the test nearly blind). Whatever happened to the machine in a pause is not a trend
the session can follow; the incumbent's control runs after it measure where it stands now.

A pause is a gap of PAUSE_S or more in which nothing of the session was at work (no experiment
and no run open: the union of their spans, as `[limits] max_hours` counts the time at work),
and the gap from the last thing recorded to the start of this process. Shorter gaps are kept:
within a running process the scheduler is never idle that long.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

PAUSE_S = 60.0


class WorkClock:
    """Maps a wall-clock time (`time.time()`) to the session's time at work, from the spans
    (start, end or None) recorded before `now`, the moment this process took the session up."""

    def __init__(self, spans: Iterable[tuple[float, float | None]], now: float) -> None:
        self._starts: list[float] = []  # where each stretch of work begins
        self._paused: list[float] = []  # the pauses before it, in seconds
        paused, end = 0.0, None
        for start, stop in sorted((s, s if e is None else max(s, e)) for s, e in spans):
            if end is None or start - end >= PAUSE_S:
                if end is not None:
                    paused += start - end
                self._starts.append(start)
                self._paused.append(paused)
            end = stop if end is None else max(end, stop)
        if end is not None and now - end >= PAUSE_S:
            paused += now - end  # the pause before this process
        self._since, self._total = now, paused

    def __call__(self, at: float) -> float:
        if at >= self._since:
            return at - self._total
        i = bisect.bisect_right(self._starts, at) - 1
        return at - (self._paused[i] if i >= 0 else 0.0)
