"""The review as JSON (`--json`): everything, for scripts; also read back by `--previous`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from autoresearch.errors import AutoresearchError
from autoresearch.review.model import Review

FORMAT = "autoresearch-review/1"


def to_json(review: Review) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "subject": asdict(review.subject),
        "scale": review.scale,
        "files": review.files,
        "lines_added": review.lines_added,
        "lines_removed": review.lines_removed,
        "started_at": review.started_at,
        "duration_s": round(review.duration_s, 3),
        "counts": {c: review.count(c) for c in ("red", "yellow", "purple")},
        "findings": [asdict(f) for f in review.findings],
        "dropped": [{"reason": d.reason, "stage": d.stage, "reviewer": d.finding.reviewer,
                     "path": d.finding.path, "line": d.finding.start_line,
                     "title": d.finding.title} for d in review.dropped],
        "reviewers": [asdict(r) for r in review.reviewers],
        "cost": asdict(review.cost),
        "notes": list(review.notes),
    }


def read_previous(path: Path) -> set[str]:
    """The fingerprints an earlier review reported: from this JSON, or from its SARIF."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AutoresearchError(f"cannot read the previous review: {exc}", where=str(path),
                                fix="pass the --json or --sarif file an earlier review wrote"
                                ) from None
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return {str(f["fingerprint"]) for f in _items(data, "findings", path)
                if "fingerprint" in f}
    if isinstance(data, dict) and str(data.get("version")) == "2.1.0":
        from autoresearch.review.outputs.sarif import FINGERPRINT_KEY

        found: set[str] = set()
        # SARIF lets `results` be null (the tool did not say): no result, as when absent.
        for run in _items(data, "runs", path, null_ok=True):
            for result in _items(run, "results", path, null_ok=True):
                fingerprints = result.get("partialFingerprints")
                value = fingerprints.get(FINGERPRINT_KEY) if isinstance(fingerprints, dict) \
                    else None
                if isinstance(value, str) and value:
                    found.add(value)
        return found
    raise _not_a_review(path)


def _items(container: dict[str, Any], key: str, path: Path, *,
           null_ok: bool = False) -> list[dict[str, Any]]:
    """The list of objects under `key` (absent: none); any other shape is not a file this tool
    wrote, and is said so rather than failing later with a traceback."""
    value = container.get(key, [])
    if value is None and null_ok:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _not_a_review(path)
    return value


def _not_a_review(path: Path) -> AutoresearchError:
    return AutoresearchError("the previous review is neither this tool's JSON nor SARIF",
                             where=str(path), fix="pass the --json or --sarif file of a review")
