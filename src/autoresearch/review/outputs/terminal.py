"""The review in the terminal: grouped by colour, most important first, then the summary."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.padding import Padding
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from autoresearch.review.model import Colour, Finding, Review
from autoresearch.review.outputs.markdown import (
    NEVER_APPROVES,
    cost_line,
    grouped_runs,
    language_of,
)

STYLE: dict[Colour, str] = {"red": "bold red", "yellow": "bold yellow", "purple": "bold magenta"}
TITLE: dict[Colour, str] = {"red": "red: fix before merge", "yellow": "yellow: worth a look",
                            "purple": "purple: about existing code or past bugs"}
MAX_BODY = 600


def _finding(f: Finding) -> Group:
    head = Text.assemble((f"{f.location}", "bold"), "  ", f.title)
    meta = Text(f"{', '.join(f.sources)} · {f.category} · confidence {f.confidence:.2f}"
                + (" · inline" if f.inline else "") + (" · reported before" if f.known else ""),
                style="dim")
    parts: list[Text | Padding] = [head, meta]
    if f.body and f.body != f.title:
        body = f.body if len(f.body) <= MAX_BODY else f.body[:MAX_BODY] + " ..."
        parts.append(Text(body))
    if f.evidence.strip():
        parts.append(Padding(Syntax(f.evidence, language_of(f.path) or "text",
                                    line_numbers=True, start_line=f.start_line,
                                    theme="ansi_dark", word_wrap=True), (0, 0, 0, 2)))
    return Group(*parts)


def print_review(review: Review, console: Console) -> None:
    console.print(Text(cost_line(review), style="dim"))
    for colour in ("red", "yellow", "purple"):
        shown = [f for f in review.findings if f.colour == colour]
        if not shown:
            continue
        console.print()
        console.print(Text(f"{TITLE[colour]} ({len(shown)})", style=STYLE[colour]))
        for f in shown:
            console.print(Padding(_finding(f), (0, 0, 1, 2)))
    known = sum(1 for f in review.findings if f.known)
    if known:
        console.print(f"[dim]{known} finding(s) were reported by an earlier review of "
                      f"{escape(review.subject.key)}: they are not posted inline again[/]")
    if review.dropped:
        by_stage: dict[str, int] = {}
        for d in review.dropped:
            by_stage[d.stage] = by_stage.get(d.stage, 0) + 1
        words = {"quote": "quote not found at the cited lines", "model": "rejected by the "
                 "verifier", "budget": "not verified (cap)"}
        console.print("[dim]dropped before reaching you: " + ", ".join(
            f"{n} {words.get(stage, stage)}" for stage, n in by_stage.items()) + "[/]")
    table = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
    for column in ("reviewer", "status", "findings", "time", "note"):
        table.add_column(column, overflow="fold")
    for r in grouped_runs(review):
        style = {"failed": "red", "skipped": "dim", "not-asked": "yellow"}.get(r.status, "")
        table.add_row(r.name, Text(r.status, style=style), str(r.findings), f"{r.seconds:.1f} s",
                      escape(r.note[:200]))
    console.print()
    console.print(Text(review.scale, style="dim"))
    console.print(table)
    for note in review.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    counts = ", ".join(f"[{STYLE[c]}]{review.count(c)} {c}[/]" for c in ("red", "yellow",
                                                                         "purple"))
    console.print(f"\n{counts}. [dim]{NEVER_APPROVES}[/]")
