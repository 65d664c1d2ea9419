"""Where the kept points' labels go on progress.png, so that no two of them overlap.

Each label is a slanted strip starting just beside its point. Points are labelled right to left;
each label goes up (the usual way) or, when that leaves it less room, down, and it takes the
longest prefix of its text (cut with an ellipsis) that stays inside the plot and clear of every
label already placed. A label that cannot keep at least `min_px` of text is left out: report.md
and report.html list every hypothesis. The dashboard's progress.js does the same in the browser.

Coordinates are display pixels with y pointing up (matplotlib's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Point = tuple[float, float]


@dataclass(frozen=True)
class Label:
    text: str
    up: bool  # slanting up from the point (else down)


def corners(x: float, y: float, angle: float, width: float, height: float,
            pad: float = 1.5) -> list[Point]:
    """The strip a text of `width` drawn from (x, y) at `angle`, `height` tall, covers."""
    tx, ty = math.cos(angle), math.sin(angle)
    nx, ny = -ty, tx
    h = height / 2 + pad
    return [(x + nx * s * h + tx * t, y + ny * s * h + ty * t)
            for s, t in ((-1, -pad), (-1, width + pad), (1, width + pad), (1, -pad))]


def overlap(a: Sequence[Point], b: Sequence[Point]) -> bool:
    """Whether two convex polygons intersect (separating-axis test)."""
    for poly in (a, b):
        for i in range(len(poly)):
            (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % len(poly)]
            nx, ny = y2 - y1, x1 - x2
            pa = [nx * x + ny * y for x, y in a]
            pb = [nx * x + ny * y for x, y in b]
            if max(pa) <= min(pb) or max(pb) <= min(pa):
                return False
    return True


def _prefix(label: str, n: int) -> str:
    return label if n >= len(label) else label[:n].rstrip() + "…"


def place_labels(points: Sequence[tuple[str, float, float]], width_of: Callable[[str], float],
                 height: float, bounds: tuple[float, float, float, float], slant: float,
                 offset: float, min_px: float) -> list[Label | None]:
    """A label (or None) for each (text, x, y) point, in the order given.

    `bounds` is (left, bottom, right, top) of the area labels must stay in, `slant` the angle in
    radians, `offset` the gap between a point and the start of its label.
    """
    _, bottom, right, top = bounds
    placed: list[list[Point]] = []
    out: list[Label | None] = [None] * len(points)
    order = sorted(range(len(points)), key=lambda i: points[i][1], reverse=True)
    for i in order:
        label, x, y = points[i]
        best: tuple[int, Label, list[Point]] | None = None
        for up in (True, False):
            sign = 1.0 if up else -1.0
            ax, ay = x + offset, y + sign * offset
            angle = sign * slant
            edge = (top - ay) if up else (ay - bottom)
            room = min((right - ax) / math.cos(slant),
                       (edge - height / 2) / math.sin(slant) if slant else math.inf)

            def free(n: int, label: str = label, ax: float = ax, ay: float = ay,
                     angle: float = angle, room: float = room) -> list[Point] | None:
                w = width_of(_prefix(label, n))
                if w > room:
                    return None
                strip = corners(ax, ay, angle, w, height)
                return None if any(overlap(strip, q) for q in placed) else strip

            # Longer prefixes cover more, so whether one fits is monotonic in its length.
            lo, hi, fit = 1, len(label), None
            while lo <= hi:
                mid = (lo + hi) // 2
                strip = free(mid)
                if strip is not None:
                    fit, lo = (mid, strip), mid + 1
                else:
                    hi = mid - 1
            if fit is None:
                continue
            n, strip = fit
            text = _prefix(label, n)
            if text != label and width_of(text) < min_px:
                continue
            if best is None or n > best[0]:
                best = (n, Label(text, up), strip)
        if best is not None:
            out[i] = best[1]
            placed.append(best[2])
    return out
