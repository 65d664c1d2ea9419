"""Untrusted prose of any length in the terminal: whole when it is of a normal size, else its head
and a line saying how much more there is and the command that prints it whole.

A proposer's hypothesis is usually a sentence, an agent's a paragraph or a commit message; but
nothing bounds what a model or an agent writes, and a 1 MB hypothesis printed whole by `status`,
`results`, `run` or `show` buries everything else (and `run`'s live panel would re-wrap it four
times a second). Every character of it stays in the ledger: `autoresearch show ID --full` prints
it whole, `results --json` and the dashboard's drawer carry it whole.
"""

from __future__ import annotations

# Far above what a hypothesis, a rationale or a decision reason normally holds (the LLM proposer
# keeps 200 characters of a hypothesis and 2,000 of a rationale), so normal text is never cut.
SHOWN_CHARS = 4000
SHOWN_LINES = 40
# `run`'s live panel is a few lines at the bottom of the screen, redrawn four times a second.
PANEL_CHARS = 300
PANEL_LINES = 3
# How far back from the cut to look for a space, so that a word is not split.
_WORD = 80


def full_command(exp_id: str) -> str:
    return f"autoresearch show {exp_id} --full"


def bounded(text: str, exp_id: str, *, chars: int = SHOWN_CHARS,
            lines: int = SHOWN_LINES) -> str:
    """`text` whole when it has at most `chars` characters and `lines` lines; else its head, then
    on a line of its own "… N more characters (M more lines): `autoresearch show ID --full`"."""
    if len(text) <= chars and text.count("\n") < lines:
        return text
    head = text[:chars]
    if head.count("\n") >= lines:
        head = "\n".join(head.split("\n")[:lines])
    elif len(head) == chars and not text[chars].isspace():
        space = max(head.rfind(" ", chars - _WORD), head.rfind("\n", chars - _WORD))
        if space > 0:
            head = head[:space]
    rest = text[len(head):]
    more_lines = rest.count("\n")
    return (f"{head.rstrip()}\n… {len(rest):,} more characters"
            + (f" ({more_lines:,} more lines)" if more_lines else "")
            + f": `{full_command(exp_id)}`")
