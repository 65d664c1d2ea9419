"""report.md: the same report as text, for a pull request description or a notebook."""

from __future__ import annotations

import time

from autoresearch.report.content import ReportData, elapsed_note, flatten, noise_sentence
from autoresearch.views.format import (
    fmt_counts,
    fmt_duration,
    fmt_experiments,
    fmt_improvement,
    fmt_signed,
    fmt_value,
)


def _cell(text: str) -> str:
    # A pipe would end the table cell; a newline would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside the diff, so it cannot be closed early."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def render_markdown(data: ReportData, png_name: str = "progress.png") -> str:
    s, conf = data.view.summary, data.view.confidence
    c = s.counts
    arrow = "↑" if s.direction == "maximize" else "↓"
    out = [
        f"# autoresearch · {s.tag}",
        "",
        f"Branch `{s.branch}` from base `{s.base_commit[:12]}` · status **{s.status}** · "
        f"metric `{s.metric}` ({s.direction}) · proposer {s.proposer or '—'}",
        "",
        "## Summary",
        "",
        f"- **Best:** {fmt_value(s.best)} {arrow} (baseline {fmt_value(s.baseline)} over "
        f"{s.baseline_runs} runs)",
        f"- **Improvement:** {fmt_improvement(s.improvement, s.improvement_pct, s.best_delta, s.metric)}",
        f"- **Confidence:** {conf.label} ({conf.level}) — improvement "
        f"{fmt_signed(conf.improvement)} ÷ σ {fmt_value(conf.noise, 3)}"
        + (f" ({conf.noise_basis})" if conf.noise_basis else "") + ", the noise floor",
        f"- **Verified:** {s.verified or 'not re-measured (nothing kept, or not since the best changed)'}",
        f"- **Experiments:** {fmt_experiments(c)} — {', '.join(fmt_counts(c))}",
        f"- **Elapsed:** {fmt_duration(s.elapsed_s)}"
        + (f" ({elapsed_note(s)})" if elapsed_note(s) else ""),
        f"- **Cost:** ${s.cost_usd:.4f}" + (f" of ${s.max_usd:.2f}" if s.max_usd else ""),
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
            f"### {k.exp_id} · {title}",
            "",
            f"{s.metric} {fmt_value(k.objective)} · Δ vs incumbent {fmt_signed(k.delta)} · "
            f"improvement over baseline so far {fmt_signed(k.vs_baseline)} · commit "
            f"`{(k.commit_sha or '')[:12]}`",
            "",
            f"> {k.decision_reason}" if k.decision_reason else "",
            "",
            f"{fence}diff",
            k.diff.rstrip("\n"),
            fence,
            "",
        ]
    noise = noise_sentence(conf)
    out += [
        "## Noise floor",
        "",
        f"Noise floor: {noise}.",
        "",
        conf.explanation,
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
            f"| {e.id} | {e.shown_status} | {fmt_value(e.objective)} | {fmt_signed(e.improvement)} "
            f"| {fmt_signed(e.delta)} | {e.runs} | "
            f"{fmt_duration(e.duration_s)} | {f'${e.cost_usd:.3f}' if e.cost_usd else '—'} | "
            f"{_cell(hyp)} |"
        )
    out += ["", "## Environment", ""]
    if data.environment:
        out += ["| key | value |", "|---|---|"]
        out += [f"| {_cell(k)} | `{_cell(v)}` |" for k, v in flatten(data.environment)]
    else:
        out.append("No environment fingerprint recorded.")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(data.generated_at))
    out += ["", f"_Generated {stamp} by `autoresearch report`; `autoresearch results --json` is "
            "the machine-readable form._", ""]
    return "\n".join(out)
