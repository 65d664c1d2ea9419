"""The history reviewer: the change read against the touched files' git history.

Three checks, all offline:

- a line this change adds that an earlier fix or revert commit removed from the same file, and
  that the base does not have (the bug that fix removed may be coming back): red;
- a line this change removes that a fix commit wrote (blame at the base), gone from the head
  (a fix being undone): yellow when the hunk also adds lines, context otherwise;
- a region this change edits that two or more fix commits have already changed (`git log -L`):
  purple, a note that the code has a history of bugs.
"""

from __future__ import annotations

from typing import ClassVar

from autoresearch.review.change import Change
from autoresearch.review.context import ReviewContext
from autoresearch.review.diff import ChangedFile, Hunk
from autoresearch.review.history import History, normalize, significant
from autoresearch.review.model import RawFinding
from autoresearch.review.reviewers.base import Reviewer, ReviewerReport

MAX_HOTSPOT_REGIONS = 8  # `git log -L` per region is the costly part: the biggest hunks only
HOTSPOT_FIXES = 2


class HistoryReviewer(Reviewer):
    name: ClassVar[str] = "history"
    kind = "offline"
    angle = "history"
    description = "git history: lines a fix removed coming back, fixes undone, fix-prone regions"

    def skip_reason(self, ctx: ReviewContext) -> str | None:
        if ctx.change.source.base_rev is None:
            return "no git history to compare with"
        return None if any(not f.binary for f in ctx.change.files) else "no text file changed"

    def review(self, ctx: ReviewContext) -> ReviewerReport:
        history = ctx.history
        change = ctx.change
        report = ReviewerReport()
        change.source.prefetch(head=[f.path for f in change.reviewable],
                               base=[f.old_path for f in change.files if f.old_path])
        for changed in change.files:
            if changed.binary:
                continue
            report.findings += self._reintroduced(change, history, changed)
            report.findings += self._fix_undone(change, history, changed)
        report.findings += self._hotspots(change, history)
        report.notes.append(f"{history.scanned} commit(s) of history read")
        return report

    def _reintroduced(self, change: Change, history: History,
                      changed: ChangedFile) -> list[RawFinding]:
        head = (change.source.head_text(changed.path) or "").splitlines()
        base_text = change.source.base_text(changed.old_path) if changed.old_path else None
        in_base = {normalize(line) for line in (base_text or "").splitlines()}
        found: list[RawFinding] = []
        for number in sorted(changed.added):
            if number > len(head) or not significant(head[number - 1]):
                continue
            text = normalize(head[number - 1])
            removal = history.removed_by_fix.get((changed.old_path or changed.path, text)) or \
                history.removed_by_fix.get((changed.path, text))
            if removal is None or text in in_base:
                continue
            found.append(RawFinding(
                reviewer="history", angle="history", path=changed.path, start_line=number,
                end_line=number,
                title=f"Re-introduces a line that fix commit {removal.commit.short} removed",
                body=(f"This line was removed by {removal.commit.short} "
                      f"\"{removal.commit.subject}\". Check that the bug that commit fixed does "
                      "not come back with it."),
                quote=head[number - 1], category="regression", severity="high", confidence=0.75,
                rule="reintroduced-line"))
        return found

    def _fix_undone(self, change: Change, history: History,
                    changed: ChangedFile) -> list[RawFinding]:
        if changed.old_path is None or not changed.removed:
            return []
        base = (change.source.base_text(changed.old_path) or "").splitlines()
        head = change.source.head_text(changed.path) if changed.status != "deleted" else ""
        in_head = {normalize(line) for line in (head or "").splitlines()}
        candidates = [n for n in sorted(changed.removed)
                      if n <= len(base) and significant(base[n - 1])
                      and normalize(base[n - 1]) not in in_head]
        if not candidates:
            return []
        blamed = history.blame(changed.old_path, candidates)
        found: list[RawFinding] = []
        for hunk in changed.hunks:
            lines = [n for n in hunk.removed if n in blamed and blamed[n].is_fix]
            if not lines:
                continue
            commit = blamed[lines[0]]
            start, end = _anchor(hunk)
            found.append(RawFinding(
                reviewer="history", angle="history", path=changed.path, start_line=start,
                end_line=end,
                title=f"Removes code that fix commit {commit.short} added",
                body=(f"`{base[lines[0] - 1].strip()}` came from {commit.short} "
                      f"\"{commit.subject}\" and is gone after this change. Make sure the case "
                      "that fix handled is still handled."),
                quote=base[lines[0] - 1], category="regression", severity="high",
                confidence=0.55, rule="fix-undone", about_past=not hunk.added))
        return found

    def _hotspots(self, change: Change, history: History) -> list[RawFinding]:
        regions: list[tuple[int, ChangedFile, Hunk]] = []
        for changed in change.files:
            if changed.old_path is None or changed.binary or changed.status == "deleted":
                continue
            if not history.fix_commits(changed.old_path):
                continue  # no fix ever touched the file: no region of it can be a hotspot
            for hunk in changed.hunks:
                regions.append((len(hunk.added) + len(hunk.removed), changed, hunk))
        regions.sort(key=lambda r: -r[0])
        found: list[RawFinding] = []
        for _, changed, hunk in regions[:MAX_HOTSPOT_REGIONS]:
            assert changed.old_path is not None
            base_lines = len((change.source.base_text(changed.old_path) or "").splitlines())
            if base_lines == 0:
                continue
            start = min(max(hunk.old_start, 1), base_lines)
            end = min(max(start, hunk.old_start + hunk.old_length - 1), base_lines)
            fixes = [c for c in history.region_commits(changed.old_path, start, end) if c.is_fix]
            if len({c.sha for c in fixes}) < HOTSPOT_FIXES:
                continue
            listed = "; ".join(f"{c.short} \"{c.subject}\"" for c in fixes[:4])
            first, last = _anchor(hunk)
            head = (change.source.head_text(changed.path) or "").splitlines()
            found.append(RawFinding(
                reviewer="history", angle="history", path=changed.path, start_line=first,
                end_line=last,
                title=f"Edits code that {len(fixes)} fix commits have changed before",
                body=f"This region has needed fixing before: {listed}. Re-check the cases "
                "those fixes were about.",
                quote="\n".join(head[first - 1:last]), category="regression", severity="medium",
                confidence=0.5, rule="fix-hotspot", about_past=True))
        return found


def _anchor(hunk: Hunk) -> tuple[int, int]:
    """The head lines a note about this hunk sits on: its added lines, else where it removed."""
    if hunk.added:
        return min(hunk.added), max(hunk.added)
    line = max(hunk.new_start, 1)
    return line, line
