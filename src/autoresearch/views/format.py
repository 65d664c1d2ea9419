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


OPEN_STATUSES = ("proposed", "running")


def count_key(kind: str, status: str) -> str:
    """Which count an experiment falls in, in every view: the baseline that passed is
    "baseline" (never a keep), a baseline attempt that failed is "baseline_failed", an open
    experiment is "open", anything else its status."""
    if kind == "baseline":
        if status == "keep":
            return "baseline"
        if status not in OPEN_STATUSES and status != "interrupted":
            return "baseline_failed"
    return "open" if status in OPEN_STATUSES else status


# The outcome counts as the dashboard header shows them: these three always, the rest when any.
_COUNT_WORDS = (("keep", "kept"), ("discard", "discarded"), ("crash", "crashed"),
                ("timeout", "timed out"), ("rejected", "rejected"), ("interrupted", "interrupted"),
                ("open", "running"))


def fmt_counts(counts: dict[str, int], process_gone: bool = False) -> list[str]:
    """["7 kept", "17 discarded", "0 crashed", ...]: candidates only (the baseline is no keep).
    Open experiments of a session whose process died are not running: they are left open (a
    resume marks them interrupted and runs them again)."""
    words = dict(_COUNT_WORDS, open="left open by a dead process" if process_gone else "running")
    return [f"{counts.get(key, 0)} {word}" for key, word in words.items()
            if counts.get(key) or key in ("keep", "discard", "crash")]


def fmt_composition(counts: dict[str, int]) -> str:
    """ "the baseline + 24 candidates" (+ "1 failed baseline attempt" after a resumed one)."""
    base = counts.get("baseline", 0)
    cand = counts.get("candidates", 0)
    failed = counts.get("baseline_failed", 0)
    parts = (["the baseline"] if base else []) + (
        [f"{cand} candidate{'' if cand == 1 else 's'}"] if base or cand else []) + (
        [f"{failed} failed baseline attempt{'' if failed == 1 else 's'}"] if failed else [])
    return " + ".join(parts)


def fmt_experiments(counts: dict[str, int]) -> str:
    """ "25 experiments (the baseline + 24 candidates)": the count `run -n 25` and the table use."""
    total = counts.get("total", 0)
    noun = "experiment" if total == 1 else "experiments"
    if not counts.get("baseline") and not counts.get("baseline_failed"):
        return f"{total} {noun}"
    return f"{total} {noun} ({fmt_composition(counts)})"


def fmt_usd(usd: float) -> str:
    """Money as "$0.03", "$0.025", "$0.1229", "$8.82": up to four decimals, at least two (two
    alone would show a limit of $0.025 as $0.03, and then "spent $0.03 of the $0.03", or a cap
    of $0.004 as $0.00)."""
    if not math.isfinite(usd):
        return f"${usd}"
    sign, usd = ("-" if usd < 0 else ""), abs(usd)
    if 0 < usd < 0.0001:  # a fraction of a hundredth of a cent: its first digits
        return f"{sign}${usd:.2g}"
    whole, _, cents = f"{usd:.4f}".partition(".")
    return f"{sign}${whole}.{cents.rstrip('0').ljust(2, '0')}"


def headline_doubt(verified_pairs: int, estimate: float | None, low: float | None,
                   high: float | None) -> str | None:
    """Why the session's own "% better" does not stand, when its verified headline (best vs
    baseline re-measured in pairs) did not show the best to be better; None when it did, or
    there is none. The dashboard's twin is `doubted` in app.js (verifiedHeadline's verdict)."""
    if verified_pairs < 1 or estimate is None:
        return None
    low = -math.inf if low is None else low  # one pair: an unbounded interval
    high = math.inf if high is None else high
    if high < 0:
        return "worse than the baseline when re-measured"
    if low <= 0 <= high:
        return "not shown to be better when re-measured (its interval covers 0)"
    return None


def fmt_improvement(improvement: float | None, pct: float | None, delta: float | None,
                    metric: str, doubt: str | None = None) -> str:
    """ "+0.0123 (+0.86%) better than the baseline (Δ val_bpb −0.0123)": positive is better
    whatever the direction, with the metric's own change beside it. With `doubt` (the verified
    headline did not bear it out: `headline_doubt`) it is the selecting runs' figure, said as
    such, without "% better". The dashboard's twin is improvementText in app.js."""
    if improvement is None or not math.isfinite(improvement):
        return "—"
    if doubt is not None:
        text = f"{fmt_signed(improvement)} on the runs that kept it"
        if delta is not None and math.isfinite(delta):
            text += f" (Δ {metric} {fmt_signed(delta)})"
        return f"{text}; {doubt}"
    word = "better" if improvement > 0 else "worse" if improvement < 0 else "no change"
    text = fmt_signed(improvement)
    if pct is not None and math.isfinite(pct):
        text += f" ({pct:+.3g}%)"
    text += f" {word} than the baseline" if improvement else f" ({word} from the baseline)"
    if delta is not None and math.isfinite(delta):
        text += f" (Δ {metric} {fmt_signed(delta)})"
    return text
