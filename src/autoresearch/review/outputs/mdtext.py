"""Untrusted text in Markdown: shown as the words it is, never as structure or HTML.

Much of a review is text nobody vetted: a model's titles and explanations, file names from the
diff, a server's error message in a reviewer's note. Put raw into the Markdown of a comment or of
a GitHub review, it could draw a fake `# ✅ APPROVED` heading, close the `<details>` around it,
or carry an `<img onerror=...>`. So such text is escaped: HTML's `& < >` as entities, the
characters that make inline Markdown (emphasis, code, links, tables, strikethrough) with a
backslash, and a line's leading block marker (a heading's `#`, a list's `-` or `1.`, a setext
underline) too.
"""

from __future__ import annotations

import re

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_INLINE = set("\\`*_[]|~")
# A block marker at the start of a line: `#`, `+`, `-` (list, rule, setext), `=`, `1.` / `1)`.
_LEADING = re.compile(r"^(\s*)(?:([#+=-])|(\d+)([.)]))")


def _escape_line(line: str) -> str:
    out = "".join(_ENTITIES.get(c, f"\\{c}" if c in _INLINE else c) for c in line)
    return _LEADING.sub(lambda m: m[1] + (f"\\{m[2]}" if m[2] else f"{m[3]}\\{m[4]}"), out,
                        count=1)


def inline(text: str) -> str:
    """`text` as one line of plain words: line breaks and runs of blanks collapsed to a space,
    everything Markdown or HTML would act on escaped (for titles, notes and table cells)."""
    return _escape_line(" ".join(text.split()))


def in_html(text: str) -> str:
    """`text` as one line inside an HTML element (a `<summary>`), where Markdown is not read and
    a backslash would show: only HTML's characters are escaped."""
    return "".join(_ENTITIES.get(c, c) for c in " ".join(text.split()))


def quoted(text: str) -> str:
    """`text` as a block quote of plain words, its line breaks kept (for a model's
    explanation): every line is inside the quote and escaped like `inline`."""
    lines = [_escape_line(line.strip()) for line in text.strip().splitlines()]
    return "\n".join(f"> {line}" if line else ">" for line in lines)
