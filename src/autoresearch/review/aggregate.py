"""Normalize, deduplicate and rank findings; cap the inline ones.

Deduplication: findings of two reviewers are one issue when they are in the same file, their
lines overlap, and they are about the same thing: the same category, or titles that
share most of their words. One reviewer's reports stay separate unless they are identical. The merged finding keeps the most severe member's location and wording (a model's
explanation is preferred to an analyzer's one-liner when both are there) and lists every source.

Ranking (docs/review.md states the same rule):
- confidence of a merged finding = 1 - prod(1 - c) over its distinct reviewers (the highest per
  reviewer): agreement between independent reviewers raises it;
- purple: the finding is not on a line the change adds or modifies, or it is a note about the
  past (history hotspots);
- red: on a changed line, high severity, confidence >= RED_CONFIDENCE;
- yellow: every other finding on a changed line.
Within a colour: severity, then confidence, then file and line. The first `inline_cap` red and
yellow findings not already reported are inline; the rest are listed in the summary.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import replace

from autoresearch.review.change import Change
from autoresearch.review.fingerprint import fingerprints
from autoresearch.review.model import COLOURS, SEVERITY_RANK, Colour, Finding, RawFinding, Severity

RED_CONFIDENCE = 0.6
MAX_EVIDENCE_LINES = 6
_WORD = re.compile(r"[a-z0-9_]{3,}")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def same_issue(a: RawFinding, b: RawFinding) -> bool:
    if a.path != b.path:
        return False
    if a.reviewer == b.reviewer:
        # One reviewer's two reports are two issues, unless it said the same thing twice.
        return (a.start_line, a.end_line, a.category, a.rule) == (
            b.start_line, b.end_line, b.category, b.rule)
    if a.start_line > b.end_line or b.start_line > a.end_line:
        return False
    if a.category == b.category:
        return True
    wa, wb = _words(a.title), _words(b.title)
    return bool(wa and wb) and len(wa & wb) / len(wa | wb) >= 0.5


def _groups(raws: Sequence[RawFinding]) -> list[list[RawFinding]]:
    parent = list(range(len(raws)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(raws)):
        for j in range(i + 1, len(raws)):
            if same_issue(raws[i], raws[j]):
                parent[root(j)] = root(i)
    groups: dict[int, list[RawFinding]] = {}
    for i, raw in enumerate(raws):
        groups.setdefault(root(i), []).append(raw)
    return list(groups.values())


def _source(raw: RawFinding) -> str:
    return f"{raw.reviewer} {raw.rule}" if raw.rule else raw.reviewer


def combined_confidence(members: Sequence[RawFinding]) -> float:
    best: dict[str, float] = {}
    for m in members:
        best[m.reviewer] = max(best.get(m.reviewer, 0.0), m.confidence)
    miss = 1.0
    for c in best.values():
        miss *= 1.0 - c
    return round(min(1.0 - miss, 0.99), 3)


def colour_of(severity: Severity, confidence: float, on_changed: bool, about_past: bool) -> Colour:
    if about_past or not on_changed:
        return "purple"
    if severity == "high" and confidence >= RED_CONFIDENCE:
        return "red"
    return "yellow"


def aggregate(raws: Sequence[RawFinding], change: Change, *, inline_cap: int,
              known: Collection[str] = ()) -> list[Finding]:
    drafts: list[tuple[RawFinding, list[RawFinding]]] = []
    for members in _groups(raws):
        lead = max(members, key=lambda m: (SEVERITY_RANK[m.severity], m.confidence,
                                           -m.start_line))
        drafts.append((lead, members))
    texts: list[tuple[str, str, str, int]] = []
    for lead, _ in drafts:
        head = (change.source.head_text(lead.path) or "").splitlines()
        first = head[lead.start_line - 1] if 0 < lead.start_line <= len(head) else lead.quote
        texts.append((lead.path, lead.category, first, lead.start_line))
    prints = fingerprints(texts)
    findings: list[Finding] = []
    for (lead, members), fingerprint in zip(drafts, prints, strict=True):
        changed = change.file(lead.path)
        added = changed.added if changed else frozenset()
        on_changed = any(n in added for n in range(lead.start_line, lead.end_line + 1))
        confidence = combined_confidence(members)
        severity = max((m.severity for m in members), key=lambda s: SEVERITY_RANK[s])
        about_past = all(m.about_past for m in members)
        explainer = next((m for m in members if m.needs_verification and m.body), lead)
        sources = tuple(sorted({_source(m) for m in members}))
        head = (change.source.head_text(lead.path) or "").splitlines()
        end = min(lead.end_line, lead.start_line + MAX_EVIDENCE_LINES - 1)
        evidence = "\n".join(head[lead.start_line - 1:end]) or lead.quote
        findings.append(Finding(
            fingerprint=fingerprint,
            colour=colour_of(severity, confidence, on_changed, about_past),
            path=lead.path, start_line=lead.start_line, end_line=lead.end_line,
            angle=lead.angle, category=lead.category, severity=severity, title=explainer.title,
            body=explainer.body, evidence=evidence, confidence=confidence, sources=sources,
            on_changed_lines=on_changed, known=fingerprint in known))
    findings.sort(key=lambda f: (COLOURS.index(f.colour), -SEVERITY_RANK[f.severity],
                                 -f.confidence, f.path, f.start_line))
    placed = 0
    out: list[Finding] = []
    for f in findings:
        inline = f.colour != "purple" and not f.known and placed < inline_cap
        placed += inline
        out.append(replace(f, inline=inline))
    return out
