"""bandit (security), on the changed lines only, with its noisiest checks left out.

bandit's own severity and confidence are kept, except where they understate a class of bug that
ships vulnerabilities (SQL built from strings is "medium" to bandit; it is high here) or overstate
a habit (importing subprocess, using assert, `random` for non-crypto work: not reported).
"""

from __future__ import annotations

import json
import posixpath
import sys
from pathlib import Path
from typing import Any, ClassVar

from autoresearch.review.context import ReviewContext
from autoresearch.review.model import Severity
from autoresearch.review.reviewers.base import ReviewerReport
from autoresearch.review.reviewers.tools import PythonAnalyzer, analyzer_finding, run_tool

# Checks that flag habits rather than defects on new code.
IGNORED = frozenset({"B101", "B311", "B403", "B404", "B603", "B607"})

CATEGORY: dict[str, str] = {
    **dict.fromkeys(("B602", "B604", "B605", "B606", "B609", "B307", "B102"), "injection"),
    "B608": "sql",
    "B110": "error-handling",
    "B112": "error-handling",
}
SEVERITY_OVERRIDE: dict[str, Severity] = {"B608": "high", "B110": "medium", "B112": "medium"}
CONFIDENCE = {"HIGH": 0.85, "MEDIUM": 0.65, "LOW": 0.4}
SEVERITY: dict[str, Severity] = {"HIGH": "high", "MEDIUM": "medium", "LOW": "low"}


class BanditReviewer(PythonAnalyzer):
    name: ClassVar[str] = "bandit"
    angle = "security"
    description = "bandit's security checks (injection, SQL strings, unsafe calls, swallowed errors)"

    def analyze(self, ctx: ReviewContext, workdir: Path, files: list[str]) -> ReviewerReport:
        out = run_tool([sys.executable, "-m", "bandit", "--format", "json", "--quiet", *files],
                       workdir, ctx.settings.tool_timeout_s, "bandit")
        data: dict[str, Any] = json.loads(out or "{}")
        report = ReviewerReport()
        for error in data.get("errors", []):
            report.notes.append(f"bandit could not read {error.get('filename')}: "
                                f"{error.get('reason')}")
        for item in data.get("results", []):
            test = str(item.get("test_id", ""))
            if test in IGNORED:
                continue
            lines = [int(n) for n in item.get("line_range") or [item["line_number"]]]
            severity = SEVERITY_OVERRIDE.get(test, SEVERITY.get(str(item.get("issue_severity")),
                                                                "low"))
            cwe = (item.get("issue_cwe") or {}).get("id")
            finding = analyzer_finding(
                ctx, reviewer="bandit", angle="security",
                path=posixpath.normpath(str(item["filename"])),
                start=min(lines), end=max(lines), rule=test,
                message=str(item.get("issue_text", test)),
                category=CATEGORY.get(test, "security"), severity=severity,
                confidence=CONFIDENCE.get(str(item.get("issue_confidence")), 0.4),
                body=f"bandit {test} ({item.get('test_name', '')}"
                + (f", CWE-{cwe}" if cwe else "") + f"): {item.get('issue_text', '')}")
            if finding is not None:
                report.findings.append(finding)
        return report
