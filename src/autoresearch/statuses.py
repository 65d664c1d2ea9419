"""Statuses in sentences: "the baseline timed out", never "the baseline timeouted".

Run and experiment statuses are nouns or adjectives (`crash`, `timeout`, `interrupted`, `ok`,
`keep`, …); a message that says what happened to something needs the verb phrase, which is not
always the status plus "ed".
"""

from __future__ import annotations

__all__ = ["happened"]

_PHRASES = {
    "ok": "passed",
    "crash": "crashed",
    "timeout": "timed out",
    "interrupted": "was interrupted",
    "keep": "was kept",
    "discard": "was discarded",
    "rejected": "was rejected",
    "proposed": "was proposed",
    "running": "is running",
}


def happened(status: str) -> str:
    """What a run or an experiment with `status` did: `happened("timeout") == "timed out"`."""
    return _PHRASES.get(status, f"ended with status {status!r}")
