"""Untrusted text in Markdown (report.md and the reviews in it): shown as text, never as markup."""

from __future__ import annotations

from autoresearch.views.safe_console import terminal_safe

# Untrusted text (a hypothesis, a decision reason, a metric's or session's name) is shown as
# text: Markdown renders inline HTML (`<img onerror=…>`) and links (`[x](javascript:…)`), a
# backtick opens code, a pipe ends a table cell and a newline ends a line. Each of these
# characters gets CommonMark's backslash escape, which renders as the character itself; `*` and
# `_` are left alone (at worst they change emphasis, and `val_bpb` stays readable).
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`<>[]|"})


def literal(text: object) -> str:
    """Untrusted text as literal Markdown on one line (and without control characters: the
    file is read with `cat` too)."""
    return " ".join(terminal_safe(str(text)).translate(_MARKDOWN_SPECIAL).split())


def code_span(text: object) -> str:
    """Untrusted text as inline code: a backtick run longer than any inside it, so it cannot be
    closed early (a code span shows every other character literally)."""
    flat = " ".join(terminal_safe(str(text)).split())
    ticks = "`" * (longest_run(flat) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def longest_run(text: str) -> int:
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return longest


def fence(text: str) -> str:
    """A code fence longer than any backtick run inside the diff, so it cannot be closed early."""
    return "`" * max(3, longest_run(text) + 1)
