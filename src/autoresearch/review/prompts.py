"""What the LLM reviewers and the verifier are asked, and how their context is laid out.

A review pass gets: the diff of its files, each file of the head revision with line numbers (the
whole file when it fits the context budget, else windows around the hunks), the fix history of
those files, and the REVIEW.md rules that apply. Every finding must quote the code it is about,
so the quote can be checked against the file before anyone reads the finding.
"""

from __future__ import annotations

from collections.abc import Sequence

from autoresearch.review.change import Change
from autoresearch.review.diff import ChangedFile
from autoresearch.review.history import History
from autoresearch.review.model import CATEGORIES, RawFinding
from autoresearch.review.rules import RulesFile

WINDOW = 40  # lines of context kept around each hunk when a file is too big to send whole
MAX_HISTORY_COMMITS = 8
MAX_HISTORY_LINES = 6

REVIEW_SYSTEM = """\
You review a code change as a careful senior engineer. This pass looks at it from these angles:

{angles}

Rules for every finding:
- Report only problems in the lines this change adds or modifies (the + lines of the diff), or
  problems those lines cause elsewhere. Never report style, naming, formatting, comments, missing
  tests or documentation, or matters of taste.
- Be certain. Fewer, real findings are worth more than many guesses; for a correct change the
  right answer is an empty list.
- Quote the code: copy one to five complete lines verbatim from the numbered head file (without
  the line numbers) and give the line numbers where they are. A finding without an exact quote
  is discarded.

Answer with one JSON object and nothing else:
{{"findings": [{{"path": "src/app.py", "line": 42, "end_line": 43, "angle": "{first_angle}",
  "category": "<one of: {categories}>", "severity": "high | medium | low",
  "confidence": 0.0-1.0, "title": "the problem in one line",
  "body": "what goes wrong, when, and how to fix it", "quote": "the exact code"}}]}}
severity high: a bug or vulnerability that must be fixed before merging; medium: likely wrong or
fragile; low: minor.
"""

ANGLES: dict[str, str] = {
    "logic": (
        "logic: wrong results. Off-by-one and boundary errors, inverted or incomplete "
        "conditions, the wrong variable, unhandled None or empty cases, exceptions swallowed or "
        "mis-handled, resources (files, sockets, locks, processes) not released on every path, "
        "races on shared state or shared files, broken invariants. Read how the rest of the file "
        "uses the changed code."),
    "security": (
        "security: shell or command injection, SQL built from strings, path traversal, unsafe "
        "deserialisation, secrets in code, untrusted input used without validation, missing "
        "authorisation checks, insecure temporary files, weak cryptography."),
    "history": (
        "history/regression: compare the change with the history given below (fix commits and "
        "the lines they removed). Report when the change brings back a bug an earlier fix "
        "removed, undoes a fix, or breaks a case an earlier fix handled. Cite the commit."),
    "rules": (
        "project rules: the REVIEW.md rules given below. Report each added line that breaks a "
        "rule that applies to its directory, and name the rule in the body."),
}

VERIFY_SYSTEM = """\
You check findings that other code reviewers made about a change, against the code itself.
For each finding, read the code shown and decide:
- "confirmed": the problem is real, it is in the quoted lines, and the explanation is right;
- "rejected": the code does not do what the finding claims, the case is handled in the code
  shown, the finding is speculation or style, or it is not about what this change adds.
Be strict: every confirmed finding costs a person's time, and a wrong one costs trust.

Answer with one JSON object and nothing else:
{"verdicts": [{"id": "F1", "verdict": "confirmed | rejected", "reason": "one sentence"}]}
"""

RETRY_JSON = ("Your reply was not the JSON object asked for ({problem}). Answer again with only "
              "the JSON object.")


def review_system(angles: Sequence[str], instructions: dict[str, str]) -> str:
    listed = "\n".join(f"- {instructions.get(a, a)}" for a in angles)
    return REVIEW_SYSTEM.format(angles=listed, first_angle=angles[0],
                                categories=", ".join(CATEGORIES))


def numbered(text: str, start: int = 1, end: int | None = None) -> str:
    lines = text.splitlines()
    end = len(lines) if end is None else min(end, len(lines))
    width = len(str(end))
    return "\n".join(f"{n:>{width}} | {lines[n - 1]}" for n in range(start, end + 1))


def file_block(change: Change, changed: ChangedFile, budget_chars: int) -> str:
    """The head file, numbered: whole when it fits `budget_chars`, else windows around hunks."""
    text = change.source.head_text(changed.path) or ""
    total = len(text.splitlines())
    whole = numbered(text)
    if len(whole) <= budget_chars:
        return f"### {changed.path} ({total} lines)\n```\n{whole}\n```"
    windows: list[tuple[int, int]] = []
    for hunk in changed.hunks:
        lo = max(1, hunk.new_start - WINDOW)
        hi = min(total, hunk.new_start + hunk.new_length + WINDOW)
        if windows and lo <= windows[-1][1] + 1:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
        else:
            windows.append((lo, hi))
    parts = [f"### {changed.path} ({total} lines; only the parts around the change)"]
    for lo, hi in windows:
        parts.append(f"```\n{numbered(text, lo, hi)}\n```")
    return "\n".join(parts)


def file_diff(change: Change, paths: Sequence[str]) -> str:
    """The part of the change's diff that touches `paths`."""
    wanted = set(paths)
    return "".join(f.patch for f in change.files if f.path in wanted).rstrip("\n")


def history_block(history: History, paths: Sequence[str]) -> str:
    parts: list[str] = []
    for path in paths:
        fixes = history.fix_commits(path)[:MAX_HISTORY_COMMITS]
        if not fixes:
            continue
        parts.append(f"### {path}: fix commits, newest first")
        removals: dict[str, list[str]] = {}
        for r in history.fix_removals_by_path.get(path, []):
            removals.setdefault(r.commit.sha, []).append(r.line.strip())
        for commit in fixes:
            parts.append(f"- {commit.short} {commit.subject}")
            for line in removals.get(commit.sha, [])[:MAX_HISTORY_LINES]:
                parts.append(f"    removed: {line}")
    return "\n".join(parts)


def rules_block(rules: Sequence[RulesFile], paths: Sequence[str]) -> str:
    parts = []
    for rule in rules:
        if any(rule.applies_to(p) for p in paths):
            scope = f"files under {rule.directory}/" if rule.directory else "every file"
            parts.append(f"### {rule.path} (applies to {scope})\n{rule.text.strip()}")
    return "\n\n".join(parts)


def review_prompt(change: Change, files: Sequence[ChangedFile], *, history: str, rules: str,
                  budget_chars: int) -> str:
    paths = [f.path for f in files]
    diff = file_diff(change, paths)
    commits = "".join(f"\n- {c.sha[:10]} {c.subject}" for c in change.commits[:20])
    sections = [f"## The change: {change.subject.label}" + (f"\nCommits:{commits}" if commits
                                                            else ""),
                f"## Diff\n```diff\n{diff}\n```"]
    if history:
        sections.append(f"## History of these files\n{history}")
    if rules:
        sections.append(f"## Review rules\n{rules}")
    remaining = budget_chars - sum(len(s) for s in sections)
    per_file = max(remaining // max(len(files), 1), 2_000)
    sections.append("## Head files (line-numbered)\n" + "\n\n".join(
        file_block(change, f, per_file) for f in files))
    return "\n\n".join(sections)


def verify_prompt(change: Change, changed: ChangedFile, findings: Sequence[RawFinding],
                  budget_chars: int, history: str = "") -> str:
    lines = []
    for i, f in enumerate(findings, 1):
        lines.append(
            f"### F{i}: {f.path}:{f.start_line}-{f.end_line} [{f.category}, {f.severity}]\n"
            f"title: {f.title}\nbody: {f.body}\nquote:\n```\n{f.quote}\n```")
    diff = file_diff(change, [changed.path])
    sections = ["## Findings to check\n" + "\n\n".join(lines),
                f"## Diff of {changed.path}\n```diff\n{diff}\n```"]
    if history:
        sections.append(f"## History of this file\n{history}")
    sections.append("## The file after the change\n"
                    + file_block(change, changed, budget_chars // 2))
    return "\n\n".join(sections)
