"""Number formatting shared by the report and the CLI (the page has its twin in app.js)."""

from __future__ import annotations

import math


def fmt_value(value: float | None, digits: int = 6) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def fmt_signed(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:+.{digits}g}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"
