"""report.html: one self-contained file (inline style, the chart as a data: URI, no script).

It has to open from an e-mail attachment or an archived CI artifact years later, so it loads
nothing: no fonts, no scripts, no stylesheet, no image from anywhere else.
"""

from __future__ import annotations

import base64
import re
import time
from html import escape

from autoresearch.report.content import (
    NOTHING_KEPT,
    ReportData,
    elapsed_note,
    flatten,
    noise_sentence,
)
from autoresearch.report.reviews import STYLE as REVIEW_STYLE
from autoresearch.report.reviews import blocked_html, review_html, summary_line
from autoresearch.report.writing import HTML_HEAD
from autoresearch.unicode_controls import BIDI_CONTROLS
from autoresearch.views.bounded_text import bounded
from autoresearch.views.format import (
    fmt_composition,
    fmt_counts,
    fmt_duration,
    fmt_signed,
    fmt_usd,
    fmt_value,
)

_STYLE = """
body{margin:0;background:#f5f6f8;color:#1d2330;font:14px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,Arial,sans-serif}main{max-width:1100px;margin:0 auto;padding:28px 24px 60px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:16px;margin:30px 0 10px}h3{font-size:14px;margin:0}
.sub{color:#667085}.mono,code,pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:10px;margin-top:18px}
.card{background:#fff;border:1px solid #e4e7ec;border-radius:10px;padding:12px 14px}
.label{color:#667085;font-size:11.5px;text-transform:uppercase;letter-spacing:.5px}
.value{font-size:21px;font-weight:650}.green{color:#12a150}.yellow{color:#b58900}.red{color:#d92d20}
.unknown{color:#667085}img{max-width:100%;background:#fff;border:1px solid #e4e7ec;border-radius:10px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e4e7ec;font-size:13px}
th,td{padding:5px 10px;border-bottom:1px solid #e4e7ec;text-align:left;vertical-align:top}
th{color:#667085;font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}
.better{color:#12a150}.worse{color:#d92d20}
.change{background:#fff;border:1px solid #e4e7ec;border-radius:10px;padding:12px 14px;margin:10px 0}
pre{background:#f8f9fb;border:1px solid #e4e7ec;border-radius:8px;padding:8px 10px;overflow:auto;
font-size:12px;line-height:1.45;max-height:520px}pre span{display:block}.add{background:#e6f6ea}
.del{background:#fdecea}.hunk{color:#3b5bdb}.meta{color:#667085}
pre b.bidi{font-weight:400;color:#d92d20;background:#fdecea;border-radius:3px}.bidi-warning{color:#d92d20}
.badge{font-size:11.5px;font-weight:600;padding:1px 7px;border-radius:999px;background:#eef0f3}
.badge.keep{color:#12a150}.badge.crash,.badge.timeout{color:#d92d20}.badge.rejected{color:#7a5af8}
details summary{cursor:pointer;color:#3b5bdb}footer{color:#667085;font-size:12px;margin-top:36px}
/* Untrusted text may be one unbroken 300 KB word: it wraps rather than widen the page. */
h1,h3,.sub,td.hyp{overflow-wrap:anywhere}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


# A control character's marker (⟨U+202E⟩, ⟨U+001B⟩: put in the diff by `shown_diff`), escaped.
_MARKER = re.compile(r"\u27e8U\+([0-9A-F]{4})\u27e9")


def _marker_html(m: re.Match[str]) -> str:
    kind = "bidirectional" if chr(int(m.group(1), 16)) in BIDI_CONTROLS else "terminal"
    return f"<b class='bidi' title='a {kind} control character, shown instead of obeyed'>{m.group()}</b>"


def code_line_html(line: str) -> str:
    """A line of code, escaped, its control-character markers standing out."""
    return _MARKER.sub(_marker_html, _e(line))


def _diff_html(text: str, warning: str = "") -> str:
    lines = []
    for line in text.splitlines():
        cls = ("meta" if line.startswith(("+++", "---", "diff ", "index ")) else
               "add" if line.startswith("+") else "del" if line.startswith("-") else
               "hunk" if line.startswith("@@") else "")
        lines.append(f'<span class="{cls}">{code_line_html(line) or "&#8203;"}</span>')
    head = f"<p class='bidi-warning'>⚠ {_e(warning)}</p>" if warning else ""
    return head + "<pre>" + "".join(lines) + "</pre>"


def _headline_of(hypothesis: str, exp_id: str) -> str:
    """A hypothesis's first line, bounded: a 300 KB line without a space kept Chromium busy
    laying out the page for 30 s after it loaded (`autoresearch show ID --full` prints it)."""
    return bounded(hypothesis.splitlines()[0], exp_id) if hypothesis.strip() else ""


def _delta_class(delta: float | None, direction: str) -> str:
    if delta is None or delta == 0:
        return ""
    good = delta > 0 if direction == "maximize" else delta < 0
    return "better" if good else "worse"


def _card(label: str, value: str, sub: str = "", cls: str = "") -> str:
    return (f'<div class="card"><div class="label">{_e(label)}</div>'
            f'<div class="value {cls}">{_e(value)}</div><div class="sub">{_e(sub)}</div></div>')


def render_html(data: ReportData, png: bytes) -> str:
    s, conf, chart = data.view.summary, data.view.confidence, data.view.chart
    c = s.counts
    arrow = "↑" if s.direction == "maximize" else "↓"
    spend = fmt_usd(s.cost_usd)
    spend_sub = f"of {fmt_usd(s.max_usd)} budget" if s.max_usd is not None else "no spending limit"
    if s.compute_usd is not None:
        spend_sub += f" · {s.spend}"
    # A verified headline that did not bear the gain out takes back the "% better" (as the
    # dashboard does).
    pct = "" if s.improvement_pct is None or s.doubt is not None else (
        f" · {abs(s.improvement_pct):.3g}% {'better' if s.improvement_pct >= 0 else 'worse'}")
    parts = [
        HTML_HEAD,  # what says report wrote it (report.writing)
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>autoresearch report · {_e(s.tag)}</title><style>{_STYLE}{REVIEW_STYLE}</style>"
        "</head><body><main>",
        f"<h1>autoresearch · {_e(s.tag)}</h1>",
        f"<div class='sub'>branch <span class='mono'>{_e(s.branch)}</span> · base "
        f"<span class='mono'>{_e(s.base_commit[:12])}</span> · {_e(s.status)} · metric "
        f"{_e(s.metric)} ({_e(s.direction)}) · proposer {_e(s.proposer or '—')}</div>",
        "<div class='cards'>",
        _card("best vs baseline", f"{fmt_value(s.best)} {arrow}",
              f"baseline {fmt_value(s.baseline)}{pct}"),
        _card("confidence", conf.label,
              NOTHING_KEPT if not conf.compared else
              f"improvement {fmt_signed(conf.improvement)} ÷ σ {fmt_value(conf.noise, 3)}"
              + (f" ({conf.noise_basis})" if conf.noise_basis else ""),
              conf.level),
        _card("experiments", str(c["total"]),
              f"{fmt_composition(c)}: " + " · ".join(fmt_counts(c, s.process_gone))),
        _card("elapsed", fmt_duration(s.elapsed_s), elapsed_note(s)),
        _card("spend", spend, spend_sub),
        *([_card("review gate", f"{len(data.blocked)} blocked", summary_line(data),
                 "red" if data.blocked else "")] if summary_line(data) else []),
        "</div>",
        "<h2>Progress</h2>",
        f"<img alt='{_e(chart.metric)} per experiment' src='data:image/png;base64,"
        f"{base64.b64encode(png).decode('ascii')}'>",
        "<h2>Kept improvements, in order</h2>",
    ]
    if not data.kept:
        parts.append("<p class='sub'>No change was kept: nothing beat the baseline by more than "
                     "the noise threshold.</p>")
    for k in data.kept:
        parts.append(
            f"<div class='change'><h3><span class='mono'>{_e(k.exp_id)}</span> · "
            f"{_e(_headline_of(k.hypothesis, k.exp_id))}</h3>"
            f"<div class='sub'>{_e(s.metric)} {fmt_value(k.objective)} · Δ vs incumbent "
            f"<span class='{_delta_class(k.delta, s.direction)}'>{fmt_signed(k.delta)}</span> · "
            f"improvement over baseline so far {fmt_signed(k.vs_baseline)} · "
            f"{_e(', '.join(k.files) or 'no files')} (+{k.lines_added} −{k.lines_removed}) · "
            f"commit <span class='mono'>{_e((k.commit_sha or '')[:12])}</span></div>"
            f"<div class='sub'>{_e(k.decision_reason)}</div>"
            + (review_html(k.review) if k.review else "")
            + f"<details{' open' if len(k.diff) < 6000 or k.diff_warning else ''}>"
            "<summary>diff</summary>"
            f"{_diff_html(k.diff, k.diff_warning)}</details></div>"
        )
    parts += blocked_html(data, s.metric)
    parts += _noise_and_cost(data)
    parts += _experiments_table(data)
    parts += _environment(data)
    parts.append(f"<footer>Generated {_e(time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(data.generated_at)))}"
                 " by autoresearch report. `autoresearch results --json` has the machine-readable "
                 "form.</footer></main></body></html>")
    return "\n".join(parts)


def _noise_and_cost(data: ReportData) -> list[str]:
    s, conf, u = data.view.summary, data.view.confidence, data.usage
    noise = noise_sentence(conf)
    return [
        "<h2>Noise floor and confidence</h2>",
        f"<p>Noise floor: {_e(noise)}. "
        + (f"Confidence: <b class='{conf.level}'>{_e(conf.label)}</b>, {_e(NOTHING_KEPT)}.</p>"
           if not conf.compared else "Improvement of the best kept result over the baseline: "
           f"{_e(fmt_signed(s.improvement))} → <b class='{conf.level}'>{_e(conf.label)}</b>.</p>"),
        f"<p class='sub'>{_e(conf.explanation)}</p>",
        f"<p><b>Verified:</b> {_e(s.verified)}</p>" if s.verified else
        "<p class='sub'>The headline was not re-measured (nothing kept, or the session did not "
        "end normally since its best changed).</p>",
        "<h2>Cost</h2>",
        f"<p>${s.model_usd:.4f} over {int(u.get('calls', 0))} model calls "
        f"({int(u.get('input_tokens', 0)):,} input and {int(u.get('output_tokens', 0)):,} output "
        "tokens)" + (f"; machine time ${s.compute_usd:.4f} ({_e(s.spend)})"
                     if s.compute_usd is not None else "")
        + (f"; budget {fmt_usd(s.max_usd)}" if s.max_usd is not None else "") + ".</p>",
    ]


def _experiments_table(data: ReportData) -> list[str]:
    direction = data.view.summary.direction
    rows = ["<h2>All experiments</h2><table><tr><th>id</th><th>status</th>"
            "<th class='num'>objective</th><th class='num'>improvement</th>"
            "<th class='num'>Δ vs incumbent</th>"
            "<th class='num'>runs</th><th class='num'>duration</th><th class='num'>cost</th>"
            "<th>hypothesis</th></tr>"]
    for e in data.view.experiments:
        status = e.shown_status
        rows.append(
            f"<tr><td class='mono'>{_e(e.id)}</td><td><span class='badge {_e(status)}'>"
            f"{_e(status)}</span>"
            + ("<span class='badge review-blocked'>blocked by review</span>"
               if e.review and e.review.blocked else "")
            + f"</td><td class='num'>{fmt_value(e.objective)}</td>"
            f"<td class='num {_delta_class(e.delta, direction)}'>{fmt_signed(e.improvement)}</td>"
            f"<td class='num {_delta_class(e.delta, direction)}'>{fmt_signed(e.delta)}</td>"
            f"<td class='num'>{e.runs}</td><td class='num'>{fmt_duration(e.duration_s)}</td>"
            f"<td class='num'>{f'${e.cost_usd:.3f}' if e.cost_usd else '—'}</td>"
            f"<td class='hyp'>{_e(_headline_of(e.hypothesis, e.id))}</td></tr>"
        )
    rows.append("</table>")
    return rows


def _environment(data: ReportData) -> list[str]:
    if not data.environment:
        return ["<h2>Environment</h2><p class='sub'>No environment fingerprint recorded.</p>"]
    body = "".join(f"<tr><th>{_e(k)}</th><td class='mono'>{_e(v)}</td></tr>"
                   for k, v in flatten(data.environment))
    return [f"<h2>Environment</h2><table>{body}</table>"]
