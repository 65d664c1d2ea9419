"""The progress chart's series, shared by the dashboard and progress.png.

Besides the points and the running best, it decides the visible y-range: one wild result (a loss
of 50 among values near 2) would otherwise flatten everything else into a line. Far outliers are
left out of the range and drawn at its edge, with their value in the tooltip; the baseline and the
running best are always inside it, because they are the story the chart tells.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from autoresearch.views.experiment import ExperimentView

KEPT = ("keep",)
CRASHED = ("crash", "timeout")
# A value is off the scale beyond this many interquartile ranges outside the quartiles.
OUTLIER_IQRS = 3.0

Role = Literal["baseline", "kept", "discarded"]
OffScale = Literal["", "high", "low"]


@dataclass(frozen=True)
class ChartPoint:
    """One experiment with a measured objective. `low`/`high` span its repeated runs."""

    seq: int
    exp_id: str
    status: str
    role: Role
    objective: float
    low: float
    high: float
    runs: int
    label: str
    # "high"/"low" when the objective is beyond the visible range (drawn at that edge).
    off_scale: OffScale = ""


@dataclass(frozen=True)
class ChartData:
    metric: str
    direction: str
    points: list[ChartPoint]
    # The incumbent as a step function of the experiment number: (seq, value) at each change,
    # closed by a final point at the last experiment so the line reaches the right edge. It
    # holds its value up to the next change (matplotlib's where="post").
    best_line: list[tuple[int, float]]
    baseline: float | None
    crashed_seqs: list[int]
    max_seq: int
    # The visible range of the objective when outliers are cut off; None: everything fits.
    y_min: float | None = None
    y_max: float | None = None


def short_label(hypothesis: str, limit: int = 48) -> str:
    """The first line of a hypothesis, cut at a word boundary to fit a chart label."""
    line = hypothesis.strip().splitlines()[0] if hypothesis.strip() else ""
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0] if " " in line[: limit - 1] else line[: limit - 1]
    return cut.rstrip(",;:. ") + "…"


def robust_range(objectives: Sequence[float], extra: Sequence[float],
                 keep: Sequence[float]) -> tuple[float, float] | None:
    """The y-range without far outliers, or None when nothing needs cutting off.

    Far: more than OUTLIER_IQRS × the interquartile range (or the span of `keep`, if wider)
    outside the quartiles of `objectives`. `extra` (the ends of repeat spreads) widens the range
    when inside those fences; `keep` is always inside.
    """
    values = sorted(v for v in objectives if math.isfinite(v))
    must = [v for v in keep if math.isfinite(v)]
    if len(values) < 5:
        return None
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    spread = max(q3 - q1, (max(must) - min(must)) if must else 0.0)
    if spread <= 0:
        return None  # nearly every value identical: there is no scale to protect
    lo_fence, hi_fence = q1 - OUTLIER_IQRS * spread, q3 + OUTLIER_IQRS * spread
    everything = values + [v for v in extra if math.isfinite(v)] + must
    inside = [v for v in everything if lo_fence <= v <= hi_fence] + must
    lo, hi = min(inside), max(inside)
    if lo <= min(everything) and hi >= max(everything):
        return None
    return lo, hi


def build_chart(rows: Sequence[ExperimentView], metric: str, direction: str) -> ChartData:
    points: list[ChartPoint] = []
    best_line: list[tuple[int, float]] = []
    baseline: float | None = None
    for e in rows:
        if e.objective is None:
            continue
        is_baseline = e.kind == "baseline"
        role: Role = "baseline" if is_baseline else "kept" if e.status in KEPT else "discarded"
        spread = e.run_values or [e.objective]
        points.append(ChartPoint(
            seq=e.seq, exp_id=e.id, status=e.status, role=role, objective=e.objective,
            low=min(spread), high=max(spread), runs=len(e.run_values),
            label="baseline" if is_baseline else short_label(e.hypothesis) if role == "kept" else "",
        ))
        if is_baseline and baseline is None:
            baseline = e.objective
        if role != "discarded":
            best_line.append((e.seq, e.objective))
    max_seq = max((e.seq for e in rows), default=0)
    if best_line and best_line[-1][0] < max_seq:
        best_line.append((max_seq, best_line[-1][1]))
    crashed = [e.seq for e in rows if e.status in CRASHED]

    visible = robust_range([p.objective for p in points],
                           [v for p in points for v in (p.low, p.high)],
                           [y for _, y in best_line])
    if visible is not None:
        lo, hi = visible
        points = [p if lo <= p.objective <= hi else
                  replace(p, off_scale="high" if p.objective > hi else "low") for p in points]
    return ChartData(metric, direction, points, best_line, baseline, crashed, max_seq,
                     visible[0] if visible else None, visible[1] if visible else None)

