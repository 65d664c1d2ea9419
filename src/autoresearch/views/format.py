"""Number formatting shared by the report and the CLI (the page has its twins in app.js)."""

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


def fmt_rate(per_hour: float | None, noun: str = "experiments") -> str:
    """A rate a person reads at a glance: "12.5 experiments / hour", "4,210 … / hour", and per
    minute or per second once the hourly number gets long (never "5.05e+04")."""
    if per_hour is None or not math.isfinite(per_hour) or per_hour < 0:
        return "—"
    if per_hour < 100:
        return f"{per_hour:.3g} {noun} / hour"
    if per_hour < 6000:
        return f"{per_hour:,.0f} {noun} / hour"
    per_min = per_hour / 60
    if per_min < 6000:
        return f"{per_min:,.0f} {noun} / min"
    return f"{per_hour / 3600:,.0f} {noun} / s"


# The outcome counts as the dashboard header shows them: these three always, the rest when any.
_COUNT_WORDS = (("keep", "kept"), ("discard", "discarded"), ("crash", "crashed"),
                ("timeout", "timed out"), ("rejected", "rejected"), ("interrupted", "interrupted"),
                ("open", "running"))


def fmt_counts(counts: dict[str, int]) -> list[str]:
    """["7 kept", "17 discarded", "0 crashed", ...]: candidates only (the baseline is no keep)."""
    return [f"{counts.get(key, 0)} {word}" for key, word in _COUNT_WORDS
            if counts.get(key) or key in ("keep", "discard", "crash")]


def fmt_experiments(counts: dict[str, int]) -> str:
    """ "25 experiments (the baseline + 24 candidates)": the count `run -n 25` and the table use."""
    base = counts.get("baseline", 0)
    cand = counts.get("candidates", 0)
    total = counts.get("total", base + cand)
    noun = "experiment" if total == 1 else "experiments"
    if not base:
        return f"{total} {noun}"
    return f"{total} {noun} (the baseline + {cand} candidate{'' if cand == 1 else 's'})"
