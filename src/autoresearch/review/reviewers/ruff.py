"""ruff, restricted to rules that find bugs (never style), on the changed lines only.

The selection is explicit and isolated from the project's own ruff config: a project that
selects only style rules still gets these, and one that ignores them for style reasons does not
silence a bug. `# noqa` comments are honoured (the author said so at that line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from autoresearch.review.context import ReviewContext
from autoresearch.review.model import Severity
from autoresearch.review.reviewers.base import ReviewerReport, ReviewerUnavailable
from autoresearch.review.reviewers.tools import PythonAnalyzer, analyzer_finding, run_tool

_H: Severity = "high"
_M: Severity = "medium"

# rule -> (category, severity, confidence). The confidence says how often the rule, where it
# fires on new code, points at a real defect; red needs high severity and confidence >= 0.6.
RULES: dict[str, tuple[str, Severity, float]] = {
    # pyflakes: names and format strings that fail at run time
    **{code: ("logic", _H, 0.85) for code in ("F821", "F822", "F823")},
    "F632": ("logic", _H, 0.8),
    **{code: ("logic", _H, 0.8) for code in (
        "F501", "F502", "F503", "F505", "F506", "F507", "F508", "F509",
        "F521", "F523", "F524", "F525")},
    **{code: ("logic", _H, 0.9) for code in ("F701", "F702", "F704", "F706", "F707")},
    # exceptions that swallow everything
    "E722": ("error-handling", _H, 0.6),
    "BLE001": ("error-handling", _H, 0.6),
    "B012": ("error-handling", _H, 0.8),
    "B029": ("error-handling", _H, 0.8),
    "B030": ("error-handling", _H, 0.8),
    "PLW0711": ("error-handling", _H, 0.85),
    "B025": ("error-handling", _M, 0.7),
    # bugbear: code that does not do what it says
    "B002": ("logic", _H, 0.9),
    "B003": ("logic", _H, 0.8),
    "B005": ("logic", _M, 0.7),
    "B006": ("logic", _M, 0.7),
    "B008": ("logic", _M, 0.5),
    "B015": ("logic", _H, 0.7),
    "B016": ("logic", _H, 0.8),
    "B017": ("logic", _M, 0.6),
    "B018": ("logic", _M, 0.6),
    "B020": ("logic", _H, 0.8),
    "B023": ("logic", _H, 0.65),
    "B031": ("logic", _H, 0.7),
    "B032": ("logic", _H, 0.8),
    "B033": ("logic", _M, 0.7),
    "B034": ("logic", _H, 0.7),
    "B035": ("logic", _H, 0.7),
    "B039": ("concurrency", _M, 0.6),
    "B909": ("logic", _H, 0.6),
    # resources
    "SIM115": ("resource", _H, 0.6),
    # pylint errors and likely-bug warnings
    **{code: ("logic", _H, 0.8) for code in (
        "PLE0100", "PLE0101", "PLE0116", "PLE0117", "PLE0118", "PLE0302", "PLE0604", "PLE0605",
        "PLE0643", "PLE0704", "PLE1132", "PLE1142", "PLE1205", "PLE1206", "PLE1300", "PLE1307",
        "PLE1310", "PLE1507", "PLE1519", "PLE1700", "PLE2502")},
    "PLW0127": ("logic", _H, 0.7),
    "PLW0128": ("logic", _M, 0.6),
    "PLW0129": ("logic", _H, 0.7),
    "PLW0131": ("logic", _M, 0.6),
    "PLW0177": ("logic", _H, 0.85),
    "PLW1501": ("logic", _H, 0.85),
    "PLW1508": ("logic", _H, 0.8),
    "PLW1509": ("concurrency", _M, 0.6),
    "PLW2101": ("concurrency", _H, 0.8),
    # ruff's own, pie, pygrep, debugger, async
    "RUF006": ("concurrency", _H, 0.7),
    "RUF016": ("logic", _H, 0.85),
    "RUF018": ("logic", _H, 0.8),
    "RUF024": ("logic", _H, 0.75),
    "RUF027": ("logic", _M, 0.6),
    "RUF034": ("logic", _M, 0.6),
    "PIE794": ("logic", _M, 0.7),
    "PIE796": ("logic", _H, 0.8),
    "PGH005": ("logic", _H, 0.85),
    "T100": ("other", _H, 0.8),
    "ASYNC210": ("concurrency", _M, 0.6),
    "ASYNC230": ("concurrency", _M, 0.6),
    "ASYNC251": ("concurrency", _M, 0.6),
}


def ruff_binary() -> str:
    try:
        from ruff import find_ruff_bin
    except ImportError:
        raise ReviewerUnavailable("ruff is not installed (pip install ruff)") from None
    try:
        return str(find_ruff_bin())
    except FileNotFoundError:
        raise ReviewerUnavailable("the ruff binary was not found") from None


class RuffReviewer(PythonAnalyzer):
    name: ClassVar[str] = "ruff"
    angle = "logic"
    description = "ruff's bug-class rules (pyflakes, bugbear, pylint errors, blind excepts, leaks)"

    def analyze(self, ctx: ReviewContext, workdir: Path, files: list[str]) -> ReviewerReport:
        out = run_tool(
            [ruff_binary(), "check", "--isolated", "--no-cache", "--exit-zero", "--quiet",
             "--output-format=json", "--select=" + ",".join(RULES), "--", *files],
            workdir, ctx.settings.tool_timeout_s, "ruff")
        report = ReviewerReport()
        items: list[dict[str, Any]] = json.loads(out or "[]")
        for item in items:
            code = str(item.get("code") or "")
            if code not in RULES:
                continue
            category, severity, confidence = RULES[code]
            path = _relative(str(item["filename"]), str(workdir))
            start = int(item["location"]["row"])
            end = int((item.get("end_location") or item["location"])["row"])
            finding = analyzer_finding(
                ctx, reviewer="ruff", angle="logic", path=path, start=start, end=end,
                rule=code, message=str(item.get("message", code)), category=category,
                severity=severity, confidence=confidence,
                body=f"ruff {code}: {item.get('message', '')}" + (
                    f" ({item['url']})" if item.get("url") else ""))
            if finding is not None:
                report.findings.append(finding)
        return report


def _relative(filename: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return filename[len(prefix):] if filename.startswith(prefix) else filename
