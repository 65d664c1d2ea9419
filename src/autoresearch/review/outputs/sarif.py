"""The review as SARIF 2.1.0, for GitHub code scanning and any other SARIF consumer.

One run, one rule per category. Levels: red -> error, yellow -> warning, purple -> note. Each
result carries the stable fingerprint as a partialFingerprint (so code scanning tracks it across
commits as this tool's re-review does), the region of the head revision, the quoted code as the
region's snippet, and its colour, confidence and sources as properties. Findings reported by an
earlier review are kept, with baselineState "unchanged".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from autoresearch import __version__
from autoresearch.review.model import CATEGORIES, Colour, Review

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "autoresearchReview/v1"
LEVEL: dict[Colour, str] = {"red": "error", "yellow": "warning", "purple": "note"}
RULE_TEXT: dict[str, str] = {
    "logic": "A logic error: the code computes the wrong result in some case.",
    "error-handling": "Exceptions swallowed or handled wrongly.",
    "resource": "A resource (file, socket, lock, process) is not released on every path.",
    "concurrency": "A race or unsynchronised access to shared state or files.",
    "injection": "Untrusted input reaches a shell or an interpreter.",
    "sql": "An SQL statement built from strings.",
    "security": "A security weakness.",
    "types": "A value of the wrong type reaches an operation.",
    "regression": "The change brings back, or undoes the fix of, an earlier bug.",
    "rules": "The change breaks a rule of the project's REVIEW.md.",
    "other": "Another problem.",
}
SECURITY_SEVERITY = {"injection": "9.0", "sql": "8.5", "security": "7.0"}


def artifact_uri(path: str) -> str:
    """A repository path as the relative URI reference SARIF requires: a space, `#`, `%`, `?`
    or a non-ASCII letter percent-encoded (UTF-8), so that `a#b.py` names that file and not the
    fragment `b.py` of `a`."""
    return quote(path, safe="/")


def render_sarif(review: Review, root: Path | None = None) -> dict[str, Any]:
    categories = [c for c in CATEGORIES if any(f.category == c for f in review.findings)]
    index = {c: i for i, c in enumerate(categories)}
    rules = []
    for c in categories:
        rule: dict[str, Any] = {
            "id": f"autoresearch/{c}", "name": c.replace("-", " ").title().replace(" ", ""),
            "shortDescription": {"text": RULE_TEXT[c]},
            "defaultConfiguration": {"level": "warning"},
            "properties": {"tags": ["security"] if c in SECURITY_SEVERITY else ["correctness"]},
        }
        if c in SECURITY_SEVERITY:
            rule["properties"]["security-severity"] = SECURITY_SEVERITY[c]
        rules.append(rule)
    results = []
    for f in review.findings:
        region: dict[str, Any] = {"startLine": f.start_line, "endLine": f.end_line}
        if f.evidence:
            region["snippet"] = {"text": f.evidence}
        result: dict[str, Any] = {
            "ruleId": f"autoresearch/{f.category}",
            "ruleIndex": index[f.category],
            "level": LEVEL[f.colour],
            "message": {"text": f.title + (f"\n\n{f.body}" if f.body and f.body != f.title
                                           else "")},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": artifact_uri(f.path), "uriBaseId": "SRCROOT"},
                "region": region}}],
            "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
            "baselineState": "unchanged" if f.known else "new",
            "rank": round(f.confidence * 100, 1),
            "properties": {"colour": f.colour, "severity": f.severity,
                           "confidence": f.confidence, "sources": list(f.sources),
                           "angle": f.angle, "inline": f.inline,
                           "onChangedLines": f.on_changed_lines},
        }
        results.append(result)
    run: dict[str, Any] = {
        "tool": {"driver": {
            "name": "autoresearch-review", "version": __version__, "semanticVersion": __version__,
            "rules": rules}},
        "automationDetails": {"id": f"autoresearch-review/{review.subject.kind}/"},
        "results": results,
        "invocations": [{
            "executionSuccessful": not review.failed,
            "toolExecutionNotifications": [
                {"level": "error" if r.status == "failed" else "note",
                 "message": {"text": f"{r.name}: {r.status}" + (f" ({r.note})" if r.note else "")}}
                for r in review.reviewers if r.status in ("failed", "skipped", "not-asked")],
            "properties": {"costUsd": round(review.cost.usd, 6),
                           "inputTokens": review.cost.input_tokens,
                           "outputTokens": review.cost.output_tokens,
                           "capped": review.cost.capped, "scale": review.scale},
        }],
        "properties": {"subject": review.subject.label, "base": review.subject.base,
                       "head": review.subject.head},
    }
    if root is not None:
        run["originalUriBaseIds"] = {"SRCROOT": {"uri": root.resolve().as_uri() + "/"}}
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}
