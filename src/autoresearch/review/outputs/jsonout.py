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
    found: set[str] = set()
    if isinstance(data, dict) and data.get("format") == FORMAT:
        found |= {str(f["fingerprint"]) for f in data.get("findings", []) if "fingerprint" in f}
        return found
    if isinstance(data, dict) and str(data.get("version")) == "2.1.0":
        from autoresearch.review.outputs.sarif import FINGERPRINT_KEY

        for run in data.get("runs") or []:
            for result in run.get("results") or []:
                value = (result.get("partialFingerprints") or {}).get(FINGERPRINT_KEY)
                if value:
                    found.add(str(value))
        return found
    raise AutoresearchError("the previous review is neither this tool's JSON nor SARIF",
                            where=str(path), fix="pass the --json or --sarif file of a review")
