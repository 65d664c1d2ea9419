"""Shared plumbing of the analyzer reviewers: which files, running the tool, anchoring results."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

from autoresearch import strays
from autoresearch.review.change import Change
from autoresearch.review.context import ReviewContext
from autoresearch.review.model import RawFinding, Severity
from autoresearch.review.reviewers.base import Reviewer, ReviewerReport, ReviewerUnavailable

PYTHON_SUFFIXES = (".py", ".pyi")
MAX_EVIDENCE_LINES = 6


def python_files(change: Change) -> list[str]:
    """Changed Python files with added lines (the only ones an analyzer may comment on)."""
    return [f.path for f in change.reviewable if f.path.endswith(PYTHON_SUFFIXES)]


class PythonAnalyzer(Reviewer):
    """An analyzer of the changed Python files alone (bandit, ruff): it has nothing to do when
    none changed, and runs over the head revision's copies of those still present."""

    kind = "offline"

    def skip_reason(self, ctx: ReviewContext) -> str | None:
        return None if python_files(ctx.change) else "no Python file changed"

    def review(self, ctx: ReviewContext) -> ReviewerReport:
        files = python_files(ctx.change)
        workdir = ctx.workspace.materialize(files)
        present = [p for p in files if (workdir / p).is_file()]  # a deleted file has no code
        if not present:
            return ReviewerReport()
        return self.analyze(ctx, workdir, present)

    @abstractmethod
    def analyze(self, ctx: ReviewContext, workdir: Path, files: list[str]) -> ReviewerReport:
        """Run the analyzer in `workdir` over `files` (paths relative to it)."""


# The analyzers running now, so that a review that is interrupted (Ctrl-C, SIGTERM) can end
# them: each runs in its own session, out of reach of the terminal's signals and of a SIGTERM
# sent to the review alone, and would otherwise go on for up to its timeout after the review.
_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


def stop_tools() -> None:
    """Kill every analyzer process group still running (the review is being abandoned)."""
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def run_tool(args: Sequence[str], cwd: Path, timeout_s: float, name: str) -> str:
    """Run an analyzer and return its stdout; a missing tool makes the reviewer unavailable."""
    try:
        # Outside our session, so registered as ours: the orchestrator's stray sweep and
        # reaper would otherwise take it for an orphan (strays.py).
        proc = strays.spawn_helper(lambda: subprocess.Popen(
            list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, start_new_session=True), lambda p: p.pid)
    except FileNotFoundError:
        raise ReviewerUnavailable(f"{name} is not installed") from None
    with _running_lock:
        _running.add(proc)
    try:
        raw_out, raw_err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"{name} did not finish within {timeout_s:g} s") from None
    finally:
        with _running_lock:
            _running.discard(proc)
        strays.forget(proc.pid, proc)
    stdout = raw_out.decode("utf-8", errors="replace")
    if not stdout.strip() and proc.returncode != 0:
        # Exit 1 is "found something" for bandit and mypy, and they say what on stdout: an
        # exit 1 with nothing there is a crash (a traceback on stderr), not a clean bill.
        stderr = raw_err.decode("utf-8", errors="replace").strip()
        if "No module named" in stderr:
            raise ReviewerUnavailable(f"{name} is not installed ({stderr.splitlines()[-1]})")
        raise RuntimeError(f"{name} failed (exit {proc.returncode}): {stderr[-500:]}")
    return stdout


def evidence(ctx: ReviewContext, path: str, start: int, end: int) -> str:
    text = ctx.change.source.head_text(path) or ""
    lines = text.splitlines()[start - 1:min(end, start + MAX_EVIDENCE_LINES - 1)]
    return "\n".join(lines)


def on_added(ctx: ReviewContext, path: str, start: int, end: int) -> bool:
    changed = ctx.change.file(path)
    # A link's target name is not code an analyzer may comment on (mypy reads every file).
    return changed is not None and not changed.symlink and any(n in changed.added for n in range(start, end + 1))


def analyzer_finding(ctx: ReviewContext, *, reviewer: str, angle: str, path: str, start: int,
                     end: int, rule: str, message: str, category: str, severity: Severity,
                     confidence: float, body: str = "") -> RawFinding | None:
    """A finding at an analyzer's location, or None when the location is not a changed line."""
    end = max(end, start)
    if not on_added(ctx, path, start, end):
        return None  # pre-existing problems in untouched code are not this change's
    return RawFinding(
        reviewer=reviewer, angle=angle, path=path, start_line=start, end_line=end,
        title=message, body=body or f"{reviewer} {rule}: {message}",
        quote=evidence(ctx, path, start, end), category=category, severity=severity,
        confidence=confidence, rule=rule)
