"""The review gate's reviews in the report, as Markdown and as HTML.

A kept change shows its review under its numbers (a yellow or purple finding on a kept change is
still worth a look before merging it); the keeps the review blocked get a section of their own,
each with the finding that blocked it, so the reader sees what the session would have kept and
why it did not.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from autoresearch.report.content import BlockedKeep, ReportData
from autoresearch.report.md_text import code_span, literal
from autoresearch.review.outputs.markdown import MARK, fence, language_of
from autoresearch.views.format import fmt_signed, fmt_value
from autoresearch.views.review import COLOURS, FindingView, ReviewView, finding_meta, gate_tally

BLOCKED_TITLE = "Blocked by the review"


def blocked_intro(tag: str, code: Callable[[str], str]) -> str:
    return ("The review gate turned these would-be keeps into discards: each beat the incumbent "
            "by the decision rule, but a finding on a line it changed blocked it. Their commits "
            f"are parked, not lost: {code(f'git show refs/autoresearch/{tag}/discarded/<id>')}.")


NONE_BLOCKED = "The review gate blocked no keep."
_MARK: dict[str, str] = {str(c): m for c, m in MARK.items()}  # as `autoresearch review` marks it


def summary_line(data: ReportData) -> str:
    """The session's gate reviews in one sentence ("" when the gate reviewed nothing)."""
    return gate_tally(data.view.experiments)


# --- Markdown -----------------------------------------------------------------------------------


def _finding_md(f: FindingView) -> list[str]:
    # A finding's title and body are a model's words: text, not Markdown (md_text).
    out = [f"{_MARK.get(f.colour, '')} **{f.colour}** {code_span(f.location)} {literal(f.title)}  ",
           f"_{literal(finding_meta(f))}_", ""]
    if f.body and f.body != f.title:
        out += [literal(f.body), ""]
    if f.evidence.strip():
        out += [fence(f.evidence.rstrip("\n"), language_of(f.path)), ""]
    return out


def review_markdown(review: ReviewView, *, colours: tuple[str, ...] = COLOURS) -> list[str]:
    """The review's headline and its findings of these colours, grouped by colour."""
    out = [f"**{review.headline}** · {review.cost_line}", ""]
    for r in review.failed:
        out += [f"_{literal(r.name)} failed: {literal(r.note or 'no detail')} (a failed reviewer "
                "never blocks)_",
                ""]
    for colour in colours:
        for f in review.by_colour(colour):
            out += _finding_md(f)
    return out


def blocked_markdown(data: ReportData, metric: str) -> list[str]:
    if not data.reviewed:
        return []
    out = [f"## {BLOCKED_TITLE}", ""]
    if not data.blocked:
        return out + [NONE_BLOCKED, ""]
    out += [blocked_intro(data.view.summary.tag, lambda c: f"`{c}`"), ""]
    for b in data.blocked:
        e, review = b.experiment, b.review
        title = e.hypothesis.splitlines()[0] if e.hypothesis else e.id
        out += [f"### {e.id} · {literal(title)}", "",
                f"{literal(metric)} {fmt_value(e.objective)} · improvement over the incumbent "
                f"{fmt_signed(e.improvement)} (Δ {fmt_signed(e.delta)}) · commit "
                f"`{(e.commit_sha or '')[:12]}`", "",
                f"**{review.headline}** · {review.cost_line}", "",
                "Blocked by:", ""]
        for f in review.blockers:
            out += _finding_md(f)
        others = [f for f in review.findings if not f.blocking]
        if others:
            out += ["Its other findings:", ""]
            for f in others:
                out += _finding_md(f)
    return out


# --- HTML ---------------------------------------------------------------------------------------

STYLE = """
.review{border-top:1px solid #e4e7ec;margin-top:8px;padding-top:6px}
.review-head{font-weight:600}.review.blocked .review-head{color:#d92d20}
.finding{border-left:3px solid #e4e7ec;padding:2px 0 2px 10px;margin:8px 0}
.finding.red{border-left-color:#d92d20}.finding.yellow{border-left-color:#d4a106}
.finding.purple{border-left-color:#7a5af8}.finding .colour{font-weight:650}
.finding.red .colour{color:#d92d20}.finding.yellow .colour{color:#b58900}
.finding.purple .colour{color:#7a5af8}.finding pre{margin:4px 0;max-height:240px}
.badge.review-blocked{color:#d92d20;margin-left:4px}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _finding_html(f: FindingView) -> str:
    parts = [f"<div class='finding {_e(f.colour)}'><div><span class='colour'>{_e(f.colour)}</span>"
             f" <span class='mono'>{_e(f.location)}</span> {_e(f.title)}"
             f"</div><div class='sub'>{_e(finding_meta(f))}</div>"]
    if f.body and f.body != f.title:
        parts.append(f"<div>{_e(f.body)}</div>")
    if f.evidence.strip():
        lines = f.evidence.rstrip("\n").split("\n")
        width = len(str(f.start_line + len(lines)))
        parts.append("<pre>" + "".join(
            f"<span>{f.start_line + i:>{width}}  {_e(line)}</span>"
            for i, line in enumerate(lines)) + "</pre>")
    return "".join(parts) + "</div>"


def _review_head_html(review: ReviewView) -> str:
    failed = "".join(f"<div class='sub'>{_e(r.name)} failed: {_e(r.note or 'no detail')} (a "
                     "failed reviewer never blocks)</div>" for r in review.failed)
    return (f"<div class='review-head'>{_e(review.headline)}</div>"
            f"<div class='sub'>{_e(review.cost_line)}</div>{failed}")


def review_html(review: ReviewView) -> str:
    findings = "".join(_finding_html(f) for c in COLOURS for f in review.by_colour(c))
    cls = "review blocked" if review.blocked else "review"
    return f"<div class='{cls}'>{_review_head_html(review)}{findings}</div>"


def _blocked_html(b: BlockedKeep, metric: str) -> str:
    e, review = b.experiment, b.review
    title = e.hypothesis.splitlines()[0] if e.hypothesis else ""
    others = [f for f in review.findings if not f.blocking]
    return (
        f"<div class='change'><h3><span class='mono'>{_e(e.id)}</span> · {_e(title)}</h3>"
        f"<div class='sub'>{_e(metric)} {fmt_value(e.objective)} · improvement over the "
        f"incumbent {fmt_signed(e.improvement)} (Δ {fmt_signed(e.delta)}) · commit "
        f"<span class='mono'>{_e((e.commit_sha or '')[:12])}</span></div>"
        f"<div class='review blocked'>{_review_head_html(review)}"
        "<div class='sub'>Blocked by:</div>"
        + "".join(_finding_html(f) for f in review.blockers)
        + ("<details><summary>its other findings "
           f"({len(others)})</summary>" + "".join(_finding_html(f) for f in others)
           + "</details>" if others else "")
        + "</div></div>"
    )


def blocked_html(data: ReportData, metric: str) -> list[str]:
    if not data.reviewed:
        return []
    out = [f"<h2>{_e(BLOCKED_TITLE)}</h2>"]
    if not data.blocked:
        return out + [f"<p class='sub'>{_e(NONE_BLOCKED)}</p>"]
    # The intro is plain text but for the command, which `code` escapes.
    out.append("<p class='sub'>" + blocked_intro(
        data.view.summary.tag, lambda c: f"<code>{_e(c)}</code>") + "</p>")
    out += [_blocked_html(b, metric) for b in data.blocked]
    return out
