"""report.md: the same report as text, for a pull request description or a notebook."""

from __future__ import annotations

import time

from autoresearch.report.content import (
    NOTHING_KEPT,
    ReportData,
    elapsed_note,
    flatten,
    noise_sentence,
)
from autoresearch.report.md_text import code_span, fence, literal
from autoresearch.report.reviews import blocked_markdown, review_markdown, summary_line
from autoresearch.report.writing import MD_MARK
from autoresearch.views.format import (
    fmt_counts,
    fmt_duration,
    fmt_experiments,
    fmt_improvement,
    fmt_signed,
    fmt_usd,
    fmt_value,
)


def render_markdown(data: ReportData, png_name: str = "progress.png") -> str:
    s, conf = data.view.summary, data.view.confidence
    c = s.counts
    arrow = "↑" if s.direction == "maximize" else "↓"
    out = [
        MD_MARK,  # what says report wrote it (report.writing)
        f"# autoresearch · {literal(s.tag)}",
        "",
        f"Branch {code_span(s.branch)} from base `{s.base_commit[:12]}` · status **{s.status}** · "
        f"metric {code_span(s.metric)} ({s.direction}) · proposer {literal(s.proposer or '—')}",
        "",
        "## Summary",
        "",
        f"- **Best:** {fmt_value(s.best)} {arrow} (baseline {fmt_value(s.baseline)} over "
        f"{s.baseline_runs} runs)",
        f"- **Improvement:** "
        f"{literal(fmt_improvement(s.improvement, s.improvement_pct, s.best_delta, s.metric, s.doubt))}",
        f"- **Confidence:** {conf.label} — {NOTHING_KEPT}" if not conf.compared else
        f"- **Confidence:** {conf.label} ({conf.level}) — improvement "
        f"{fmt_signed(conf.improvement)} ÷ σ {fmt_value(conf.noise, 3)}"
        + (f" ({literal(conf.noise_basis)})" if conf.noise_basis else "") + ", the noise floor",
        f"- **Verified:** "
        f"{literal(s.verified or 'not re-measured (nothing kept, or not since the best changed)')}",
        f"- **Experiments:** {fmt_experiments(c)} — {', '.join(fmt_counts(c, s.process_gone))}",
        f"- **Elapsed:** {fmt_duration(s.elapsed_s)}"
        + (f" ({elapsed_note(s)})" if elapsed_note(s) else ""),
        f"- **Cost:** {fmt_usd(s.cost_usd)}" + (f" of {fmt_usd(s.max_usd)}" if s.max_usd is not None else "")
        + (f" ({literal(s.spend)})" if s.compute_usd is not None else ""),
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
        ticks = fence(k.diff)
        out += [
            f"### {k.exp_id} · {literal(title)}",
            "",
            f"{literal(s.metric)} {fmt_value(k.objective)} · Δ vs incumbent {fmt_signed(k.delta)} · "
            f"improvement over baseline so far {fmt_signed(k.vs_baseline)} · commit "
            f"`{(k.commit_sha or '')[:12]}`",
            "",
            f"> {literal(k.decision_reason)}" if k.decision_reason else "",
            "",
            *(review_markdown(k.review) if k.review else []),
            *([f"> ⚠ {literal(k.diff_warning)}", ""] if k.diff_warning else []),
            f"{ticks}diff",
            k.diff.rstrip("\n"),
            ticks,
            "",
        ]
    out += blocked_markdown(data, s.metric)
    noise = noise_sentence(conf)
    out += [
        "## Noise floor",
        "",
        f"Noise floor: {literal(noise)}.",
        "",
        literal(conf.explanation),
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
            f"{literal(hyp)} |"
        )
    out += ["", "## Environment", ""]
    if data.environment:
        out += ["| key | value |", "|---|---|"]
        # GFM splits a table row at a pipe even inside code, unless it is escaped.
        out += ["| " + literal(k) + " | " + code_span(v).replace("|", "\\|") + " |"
                for k, v in flatten(data.environment)]
    else:
        out.append("No environment fingerprint recorded.")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(data.generated_at))
    out += ["", f"_Generated {stamp} by `autoresearch report`; `autoresearch results --json` is "
            "the machine-readable form._", ""]
    return "\n".join(out)
