"""report.md: the same report as text, for a pull request description or a notebook."""

from __future__ import annotations

import time

from autoresearch.report.content import ReportData, elapsed_note, flatten, noise_sentence
from autoresearch.report.reviews import blocked_markdown, review_markdown, summary_line
from autoresearch.views.format import (
    fmt_counts,
    fmt_duration,
    fmt_experiments,
    fmt_improvement,
    fmt_signed,
    fmt_value,
)
from autoresearch.views.safe_console import terminal_safe

# Untrusted text (a hypothesis, a decision reason, a metric's or session's name) is shown as
# text: Markdown renders inline HTML (`<img onerror=…>`) and links (`[x](javascript:…)`), a
# backtick opens code, a pipe ends a table cell and a newline ends a line. Each of these
# characters gets CommonMark's backslash escape, which renders as the character itself; `*` and
# `_` are left alone (at worst they change emphasis, and `val_bpb` stays readable).
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`<>[]|"})


def _md(text: object) -> str:
    """Untrusted text as literal Markdown on one line (and without control characters: the
    file is read with `cat` too)."""
    return " ".join(terminal_safe(str(text)).translate(_MARKDOWN_SPECIAL).split())


def _cell(text: object) -> str:
    """Untrusted text as a table cell (`_md`: its pipes are escaped, its newlines spaces)."""
    return _md(text)


def _code(text: object) -> str:
    """Untrusted text as inline code: a backtick run longer than any inside it, so it cannot be
    closed early (a code span shows every other character literally)."""
    flat = " ".join(terminal_safe(str(text)).split())
    ticks = "`" * (_longest_run(flat) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def _longest_run(text: str) -> int:
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return longest


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside the diff, so it cannot be closed early."""
    return "`" * max(3, _longest_run(text) + 1)


def render_markdown(data: ReportData, png_name: str = "progress.png") -> str:
    s, conf = data.view.summary, data.view.confidence
    c = s.counts
    arrow = "↑" if s.direction == "maximize" else "↓"
    out = [
        f"# autoresearch · {_md(s.tag)}",
        "",
        f"Branch {_code(s.branch)} from base `{s.base_commit[:12]}` · status **{s.status}** · "
        f"metric {_code(s.metric)} ({s.direction}) · proposer {_md(s.proposer or '—')}",
        "",
        "## Summary",
        "",
        f"- **Best:** {fmt_value(s.best)} {arrow} (baseline {fmt_value(s.baseline)} over "
        f"{s.baseline_runs} runs)",
        f"- **Improvement:** "
        f"{_md(fmt_improvement(s.improvement, s.improvement_pct, s.best_delta, s.metric))}",
        f"- **Confidence:** {conf.label} ({conf.level}) — improvement "
        f"{fmt_signed(conf.improvement)} ÷ σ {fmt_value(conf.noise, 3)}"
        + (f" ({_md(conf.noise_basis)})" if conf.noise_basis else "") + ", the noise floor",
        f"- **Verified:** "
        f"{_md(s.verified or 'not re-measured (nothing kept, or not since the best changed)')}",
        f"- **Experiments:** {fmt_experiments(c)} — {', '.join(fmt_counts(c))}",
        f"- **Elapsed:** {fmt_duration(s.elapsed_s)}"
        + (f" ({elapsed_note(s)})" if elapsed_note(s) else ""),
        f"- **Cost:** ${s.cost_usd:.4f}" + (f" of ${s.max_usd:.2f}" if s.max_usd else ""),
        *([f"- **Review gate:** {summary_line(data)}"] if summary_line(data) else []),
        "",
        f"![progress]({png_name})",
        "",
        "## Kept improvements, in order",
        "",
    ]
    if not data.kept:
        out += ["No change was kept.", ""]
    for k in data.kept:
        title = k.hypothesis.splitlines()[0] if k.hypothesis else k.exp_id
        fence = _fence(k.diff)
        out += [
            f"### {k.exp_id} · {_md(title)}",
            "",
            f"{_md(s.metric)} {fmt_value(k.objective)} · Δ vs incumbent {fmt_signed(k.delta)} · "
            f"improvement over baseline so far {fmt_signed(k.vs_baseline)} · commit "
            f"`{(k.commit_sha or '')[:12]}`",
            "",
            f"> {_md(k.decision_reason)}" if k.decision_reason else "",
            "",
            *(review_markdown(k.review) if k.review else []),
            f"{fence}diff",
            k.diff.rstrip("\n"),
            fence,
            "",
        ]
    out += blocked_markdown(data, s.metric)
    noise = noise_sentence(conf)
    out += [
        "## Noise floor",
        "",
        f"Noise floor: {_md(noise)}.",
        "",
        _md(conf.explanation),
        "",
        "## All experiments",
        "",
        "| id | status | objective | improvement | Δ vs incumbent | runs | duration | cost "
        "| hypothesis |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for e in data.view.experiments:
        hyp = e.hypothesis.splitlines()[0] if e.hypothesis else ""
        out.append(
            f"| {e.id} | {e.shown_status}"
            f"{' (blocked by review)' if e.review and e.review.blocked else ''} | "
            f"{fmt_value(e.objective)} | {fmt_signed(e.improvement)} "
            f"| {fmt_signed(e.delta)} | {e.runs} | "
            f"{fmt_duration(e.duration_s)} | {f'${e.cost_usd:.3f}' if e.cost_usd else '—'} | "
            f"{_cell(hyp)} |"
        )
    out += ["", "## Environment", ""]
    if data.environment:
        out += ["| key | value |", "|---|---|"]
        # GFM splits a table row at a pipe even inside code, unless it is escaped.
        out += ["| " + _cell(k) + " | " + _code(v).replace("|", "\\|") + " |"
                for k, v in flatten(data.environment)]
    else:
        out.append("No environment fingerprint recorded.")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(data.generated_at))
    out += ["", f"_Generated {stamp} by `autoresearch report`; `autoresearch results --json` is "
            "the machine-readable form._", ""]
    return "\n".join(out)
