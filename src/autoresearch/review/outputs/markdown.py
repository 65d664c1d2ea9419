"""The review as Markdown: a file, a pull-request comment, or the body of a GitHub review.

Every text that did not come from this module (a model's title and explanation, file names,
reviewers' notes, a server's error message) goes through `mdtext`, so that none of it can add a
heading, a link, HTML or the end of a `<details>` block to the review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from autoresearch.review.model import Colour, Finding, Review, ReviewerRun
from autoresearch.review.outputs.mdtext import in_html, inline, quoted
from autoresearch.unicode_controls import reveal_bidi
from autoresearch.views.format import fmt_usd

HEADINGS: dict[Colour, str] = {
    "red": "🔴 Red: fix before merge",
    "yellow": "🟡 Yellow: worth a look",
    "purple": "🟣 Purple: about existing code or past bugs",
}
MARK: dict[Colour, str] = {"red": "🔴", "yellow": "🟡", "purple": "🟣"}
NEVER_APPROVES = ("This review never approves or blocks a change: it points at code for the "
                  "person who decides.")


def fence(text: str, language: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside the text."""
    run = 3
    while "`" * run in text:
        run += 1
    return f"{'`' * run}{language}\n{text}\n{'`' * run}"


def code_span(text: str) -> str:
    """An inline code span whose backtick run is longer than any inside the text (a file name
    with a backtick would otherwise end the span and have the rest read as Markdown or HTML),
    padded so that a text starting or ending with a backtick stays inside it."""
    text = " ".join(text.splitlines())
    run = 1
    while "`" * run in text:
        run += 1
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{'`' * run}{pad}{text}{pad}{'`' * run}"


def language_of(path: str) -> str:
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {"py": "python", "pyi": "python", "js": "javascript", "ts": "typescript",
            "sh": "bash", "rb": "ruby", "rs": "rust", "go": "go", "toml": "toml",
            "yml": "yaml", "yaml": "yaml", "json": "json", "sql": "sql"}.get(suffix, "")


def headline(review: Review) -> str:
    counts = ", ".join(f"{review.count(c)} {c}" for c in ("red", "yellow", "purple"))
    return f"autoresearch review: {counts}"


def cost_line(review: Review) -> str:
    c = review.cost
    if not c.calls:
        spend = "no model calls"
    else:
        tokens = c.input_tokens + c.output_tokens + c.cache_read_tokens + c.cache_write_tokens
        spend = f"{c.calls} model calls, {tokens:,} tokens, ${c.usd:.4f}"
        if c.max_usd is not None:
            spend += f" (cap {fmt_usd(c.max_usd)}{', reached' if c.capped else ''})"
    return (f"{review.subject.label} · {review.files} file(s), +{review.lines_added} "
            f"−{review.lines_removed} · {review.duration_s:.1f} s · {spend}")


def finding_md(f: Finding, *, with_location: bool = True) -> str:
    where = f"**{code_span(f.location)}** " if with_location else ""
    meta = f"{', '.join(f.sources)} · {f.category} · confidence {f.confidence:.2f}"
    if f.known:
        meta += " · reported before"
    parts = [f"{MARK[f.colour]} {where}{inline(f.title)}", f"_{inline(meta)}_"]
    if f.body and f.body != f.title:
        parts.append(quoted(f.body))
    if f.evidence.strip():
        # Code quoted from the repository: its bidi overrides shown as ⟨U+202E⟩, not obeyed.
        parts.append(fence(reveal_bidi(f.evidence), language_of(f.path)))
    return "\n\n".join(parts)


def grouped_runs(review: Review) -> list[ReviewerRun]:
    """The reviewer runs, with reviewers skipped for one same reason shown as one row."""
    out: list[ReviewerRun] = []
    for run in review.reviewers:
        if out and run.status == "skipped" and out[-1].status == "skipped" \
                and out[-1].note == run.note:
            out[-1] = replace(out[-1], name=f"{out[-1].name}, {run.name}")
        else:
            out.append(run)
    return out


def _list(findings: Sequence[Finding]) -> str:
    return "\n\n".join(f"- {finding_md(f)}".replace("\n", "\n  ") for f in findings)


def render_markdown(review: Review, *, github_body: bool = False) -> str:
    """The whole review; for a GitHub review's body, the inline findings are left to the
    inline comments and only the rest is listed."""
    out = [f"## {headline(review)}", inline(cost_line(review))]
    for colour in ("red", "yellow", "purple"):
        shown = [f for f in review.findings if f.colour == colour
                 and not (github_body and (f.inline or f.known))]
        if shown:
            out.append(f"### {HEADINGS[colour]}")
            out.append(_list(shown))
    inline_count = sum(1 for f in review.findings if f.inline)
    if github_body and inline_count:
        out.append(f"{inline_count} finding(s) are inline comments on the diff.")
    over = [f for f in review.findings if f.colour != "purple" and not f.inline and not f.known]
    if over and github_body:
        out.append(f"{len(over)} red or yellow finding(s) over the inline cap are listed here "
                   "only.")
    known = [f for f in review.findings if f.known]
    if known and github_body:
        out.append(_details(f"Still present, reported by an earlier review: {len(known)}",
                            "\n".join(f"- {code_span(f.location)} {inline(f.title)}"
                                      for f in known)))
    if review.dropped:
        out.append(_details(f"Dropped before reaching you: {len(review.dropped)}", "\n".join(
            f"- {inline(d.finding.reviewer)} "
            f"{code_span(f'{d.finding.path}:{d.finding.start_line}')} "
            f"{inline(d.finding.title)}: {inline(d.reason)}" for d in review.dropped)))
    rows = ["| reviewer | status | findings | time | note |", "|---|---|---|---|---|"]
    rows += [f"| {inline(r.name)} | {r.status} | {r.findings} | {r.seconds:.1f} s | "
             f"{inline(r.note)} |" for r in grouped_runs(review)]
    out.append(_details(f"Reviewers ({in_html(review.scale)})", "\n".join(rows)))
    if review.notes:
        out.append("\n".join(f"> {inline(n)}" for n in review.notes))
    out.append(f"_{NEVER_APPROVES}_")
    return "\n\n".join(out) + "\n"


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"
