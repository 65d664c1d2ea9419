"""Reading a model's JSON reply into findings and verdicts, leniently but without guessing.

Models wrap JSON in prose or code fences; the first JSON object that parses is taken. Fields are
checked one by one: a finding without a path in the change, a line number or a quote is not a
finding (it is dropped, with the reason, so the summary can count hallucinations).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from autoresearch.review.model import CATEGORIES, RawFinding, Severity

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class ReplyError(Exception):
    """The reply holds no JSON object of the expected shape."""


def json_object(text: str, key: str) -> dict[str, Any]:
    """The first JSON object in `text` that has `key` (a list)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start in [i for i, c in enumerate(candidate) if c == "{"][:50]:
            try:
                value, _ = decoder.raw_decode(candidate[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and isinstance(value.get(key), list):
                return value
    raise ReplyError(f'no JSON object with a "{key}" list')


@dataclass(frozen=True)
class Rejected:
    finding: RawFinding  # as much of the claim as could be read
    reason: str


def findings_from_reply(text: str, *, reviewer_prefix: str, angles: Collection[str],
                        paths: Collection[str]) -> tuple[list[RawFinding], list[Rejected]]:
    data = json_object(text, "findings")
    found: list[RawFinding] = []
    rejected: list[Rejected] = []
    for item in data["findings"]:
        if not isinstance(item, dict):
            continue
        try:
            found.append(_finding(item, reviewer_prefix, angles, paths))
        except ValueError as exc:
            rejected.append(Rejected(_loose(item, reviewer_prefix, angles), str(exc)))
    return found, rejected


def _finding(item: dict[str, Any], prefix: str, angles: Collection[str],
             paths: Collection[str]) -> RawFinding:
    path = str(item.get("path") or "").strip().removeprefix("./")
    path = path[2:] if path.startswith(("a/", "b/")) and path[2:] in paths else path
    if path not in paths:
        raise ValueError(f"path {path!r} is not a file this change touches")
    try:
        line = int(item["line"])
        end = int(item.get("end_line") or line)
    except (KeyError, TypeError, ValueError, OverflowError):  # 1e400 reads as inf
        raise ValueError("no line number") from None
    quote = str(item.get("quote") or "")
    if not quote.strip():
        raise ValueError("no quoted code")
    title = " ".join(str(item.get("title") or "").split())
    if not title:
        raise ValueError("no title")
    angle = str(item.get("angle") or "")
    angle = angle if angle in angles else next(iter(angles))
    category = str(item.get("category") or "other")
    severity = str(item.get("severity") or "medium").lower()
    try:
        confidence = float(item.get("confidence", 0.5))
    except (TypeError, ValueError):
        confidence = 0.5
    # NaN (which Python's JSON reader accepts) would pass every clamp and reach the SARIF and
    # JSON outputs as the invalid literal NaN.
    confidence = min(max(confidence, 0.0), 1.0) if math.isfinite(confidence) else 0.5
    return RawFinding(
        reviewer=f"{prefix}:{angle}", angle=angle, path=path, start_line=max(line, 1),
        end_line=max(end, line, 1), title=title[:200], body=str(item.get("body") or "").strip(),
        quote=quote, category=category if category in CATEGORIES else "other",
        severity=_severity(severity), confidence=confidence, needs_verification=True)


def _loose(item: dict[str, Any], prefix: str, angles: Collection[str]) -> RawFinding:
    """What a malformed claim said, for the record of dropped findings."""
    def number(key: str) -> int:
        try:
            return max(int(item.get(key) or 0), 0)
        except (TypeError, ValueError, OverflowError):
            return 0

    angle = next(iter(angles))
    return RawFinding(
        reviewer=f"{prefix}:{angle}", angle=angle, path=str(item.get("path") or "?"),
        start_line=number("line"), end_line=number("end_line") or number("line"),
        title=" ".join(str(item.get("title") or "(no title)").split())[:200],
        body=str(item.get("body") or ""), quote=str(item.get("quote") or ""),
        category="other", severity=_severity(str(item.get("severity") or "")), confidence=0.0,
        needs_verification=True)


def _severity(raw: str) -> Severity:
    if raw in ("high", "critical", "blocker", "error"):
        return "high"
    if raw in ("low", "minor", "info", "nit"):
        return "low"
    return "medium"


@dataclass(frozen=True)
class Verdict:
    confirmed: bool
    reason: str


def verdicts_from_reply(text: str, count: int) -> dict[int, Verdict]:
    """Verdicts by finding index (1-based, as the prompt numbered them F1..Fn)."""
    data = json_object(text, "verdicts")
    out: dict[int, Verdict] = {}
    for item in data["verdicts"]:
        if not isinstance(item, dict):
            continue
        match = re.fullmatch(r"F?(\d+)", str(item.get("id", "")).strip(), re.IGNORECASE)
        if not match or not 1 <= int(match.group(1)) <= count:
            continue
        verdict = str(item.get("verdict", "")).strip().lower()
        out[int(match.group(1))] = Verdict(verdict == "confirmed",
                                           str(item.get("reason") or "").strip())
    return out
