"""Stable fingerprints: the same issue keeps its id when lines move.

A fingerprint hashes what the issue is about, never where: the file, the category, and the text of
the finding's first line with its whitespace collapsed (so re-indenting or adding lines above does
not change it). Two findings of one category on identical lines of one file are told apart by
their order among such lines (the second `x = eval(s)` in a file stays the second). A re-review of
new commits compares fingerprints with the earlier review's and does not post the same finding
again; SARIF carries it as a partialFingerprint, for code scanning to do the same.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

VERSION = "v1"


def _key(path: str, category: str, line_text: str) -> str:
    return "\0".join((VERSION, path, category, " ".join(line_text.split())))


def fingerprints(items: Sequence[tuple[str, str, str, int]]) -> list[str]:
    """Fingerprints for (path, category, first-line text, line number) items, in input order."""
    order = sorted(range(len(items)), key=lambda i: (items[i][0], items[i][3]))
    seen: Counter[str] = Counter()
    out = [""] * len(items)
    for i in order:
        path, category, text, _ = items[i]
        key = _key(path, category, text)
        occurrence = seen[key]
        seen[key] += 1
        digest = hashlib.sha256(f"{key}\0{occurrence}".encode()).hexdigest()
        out[i] = digest[:20]
    return out
