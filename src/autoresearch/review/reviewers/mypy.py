"""mypy, where the project is typed, reporting only errors on the changed lines.

"Typed" means the project says so: a `py.typed` marker, or a mypy configuration (`[tool.mypy]`
in pyproject.toml, `mypy.ini`, `.mypy.ini`, `[mypy]` in setup.cfg). mypy checks the changed files
inside a copy of the head revision's Python files (so imports between the project's modules
resolve) with the project's own configuration; third-party imports it cannot see are ignored.
Only error codes that mean a wrong value reaches an operation are red candidates; annotation
bookkeeping (missing annotations, Any leaks) is not reported.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import ClassVar

from autoresearch.review.change import Change
from autoresearch.review.context import ReviewContext
from autoresearch.review.model import Severity
from autoresearch.review.reviewers.base import Reviewer, ReviewerReport, ReviewerUnavailable
from autoresearch.review.reviewers.tools import (
    PYTHON_SUFFIXES,
    analyzer_finding,
    python_files,
    run_tool,
)

CONFIG_FILES = ("pyproject.toml", "mypy.ini", ".mypy.ini", "setup.cfg")
LIKELY_BUG: frozenset[str] = frozenset({
    "attr-defined", "name-defined", "call-arg", "arg-type", "return-value", "union-attr",
    "index", "operator", "call-overload", "func-returns-value", "has-type", "return",
    "abstract", "misc-await",
})
WORTH_A_LOOK: frozenset[str] = frozenset({
    "assignment", "override", "list-item", "dict-item", "valid-type", "type-var", "str-format",
    "comparison-overlap", "truthy-bool", "redundant-expr", "str-bytes-safe", "no-redef",
    "unreachable", "await-not-async", "unused-coroutine", "exit-return", "literal-required",
    "typeddict-item", "typeddict-unknown-key", "empty-body", "safe-super", "top-level-await",
})
_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?:(?P<col>\d+):)?"
                   r"(?:(?P<end_line>\d+):(?P<end_col>\d+):)? error: (?P<msg>.*?)"
                   r"(?:  \[(?P<code>[a-z0-9-]+)\])?$")


def cache_dir(workdir: Path) -> Path:
    """mypy's cache, kept between reviews: the standard library's stubs alone take seconds to
    analyse cold. mypy checks each cached module against its source's hash, so files of another
    revision (or another project) never reuse a stale entry. The workspace when no user cache
    directory is writable."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "autoresearch" / "mypy"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return workdir / ".mypy_cache"
    return path if os.access(path, os.W_OK) else workdir / ".mypy_cache"


def is_typed(change: Change) -> bool:
    source = change.source
    source.prefetch(head=CONFIG_FILES)
    pyproject = source.head_text("pyproject.toml") or ""
    setup_cfg = source.head_text("setup.cfg") or ""
    if "[tool.mypy]" in pyproject or "[mypy]" in setup_cfg:
        return True
    if source.head_text("mypy.ini") is not None or source.head_text(".mypy.ini") is not None:
        return True
    return any(p.endswith("/py.typed") or p == "py.typed" for p in source.head_paths())


class MypyReviewer(Reviewer):
    name: ClassVar[str] = "mypy"
    kind = "offline"
    angle = "types"
    description = "mypy with the project's configuration, where the project is typed"

    def skip_reason(self, ctx: ReviewContext) -> str | None:
        if not python_files(ctx.change):
            return "no Python file changed"
        if not is_typed(ctx.change):
            return "the project is not typed (no py.typed marker or mypy configuration)"
        return None

    def review(self, ctx: ReviewContext) -> ReviewerReport:
        try:
            import mypy  # noqa: F401  (only to tell "not installed" from a failure)
        except ImportError:
            raise ReviewerUnavailable("mypy is not installed (pip install mypy)") from None
        files = python_files(ctx.change)
        project = [p for p in ctx.change.source.head_paths() if p.endswith(PYTHON_SUFFIXES)]
        workdir = ctx.workspace.materialize([*CONFIG_FILES, *project, *files])
        present = [p for p in files if (workdir / p).is_file()]
        if not present:
            return ReviewerReport()
        out = run_tool(
            [sys.executable, "-m", "mypy", "--no-error-summary", "--show-error-codes",
             "--no-pretty", "--show-column-numbers", "--show-error-end", "--hide-error-context",
             "--no-color-output", "--follow-imports=silent", "--ignore-missing-imports",
             "--cache-dir", str(cache_dir(workdir)), "--", *present],
            workdir, ctx.settings.tool_timeout_s, "mypy")
        report = ReviewerReport()
        for line in out.splitlines():
            m = _LINE.match(line.strip())
            if not m:
                continue
            code = m["code"] or ""
            if code in LIKELY_BUG:
                severity: Severity = "high"
                confidence = 0.7
            elif code in WORTH_A_LOOK:
                severity, confidence = "medium", 0.55
            else:
                continue
            start = int(m["line"])
            end = int(m["end_line"] or start)
            finding = analyzer_finding(
                ctx, reviewer="mypy", angle="types", path=m["path"].removeprefix("./"),
                start=start, end=end, rule=code, message=m["msg"], category="types",
                severity=severity, confidence=confidence, body=f"mypy [{code}]: {m['msg']}")
            if finding is not None:
                report.findings.append(finding)
        return report
