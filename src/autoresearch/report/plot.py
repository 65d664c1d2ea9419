"""progress.png: the dashboard's progress chart, drawn with matplotlib from the same series.

The figure is built on a bare `Figure` with the Agg canvas instead of pyplot, so drawing keeps no
global state and works in a thread, on a headless machine, and inside a test run.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autoresearch.views.summary import ChartData

# The dashboard's palette (style.css), so the PNG and the page look like the same chart.
KEEP = "#12a150"
DISCARD = "#98a2b3"
BASELINE = "#3b5bdb"
INK = "#1d2330"
MUTED = "#667085"
GRID = "#e4e7ec"
SPREAD_BASELINE = "#1f3282"
SPREAD_KEEP = "#0a5c2d"
SPREAD_DISCARD = "#475467"
SPREAD_Z = 6.5  # above every marker (discarded 4, kept 5, baseline 6)


def progress_figure(chart: ChartData, title: str = "") -> Figure:
    fig = Figure(figsize=(12, 5.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    better = "higher is better" if chart.direction == "maximize" else "lower is better"

    if chart.best_line:
        xs, ys = zip(*chart.best_line, strict=True)
        ax.step(xs, ys, where="post", color=KEEP, linewidth=2, label="running best", zorder=3)
    discarded = [p for p in chart.points if p.role == "discarded"]
    kept = [p for p in chart.points if p.role == "kept"]
    base = [p for p in chart.points if p.role == "baseline"]
    if discarded:
        ax.scatter([p.seq for p in discarded], [p.objective for p in discarded], s=22,
                   color=DISCARD, alpha=0.5, label="discarded", zorder=4, linewidths=0)
    if kept:
        ax.scatter([p.seq for p in kept], [p.objective for p in kept], s=60, color=KEEP,
                   edgecolors="white", linewidths=1.2, label="kept", zorder=5)
    if base:
        ax.scatter([p.seq for p in base], [p.objective for p in base], s=90, marker="D",
                   color=BASELINE, edgecolors="white", linewidths=1.2, label="baseline", zorder=6)
    # The spread of repeated runs goes over the markers (a marker is often taller than the
    # spread), in a darker shade of their hue, with caps wider than the markers.
    for p in chart.points:
        if p.runs >= 2 and p.high > p.low:
            colour = {"kept": SPREAD_KEEP, "baseline": SPREAD_BASELINE}.get(p.role, SPREAD_DISCARD)
            ax.errorbar([p.seq], [p.objective], yerr=[[p.objective - p.low], [p.high - p.objective]],
                        fmt="none", ecolor=colour, elinewidth=1.5, capsize=7, capthick=1.5,
                        zorder=SPREAD_Z)
    for p in kept:
        if p.label:
            ax.annotate(p.label, (p.seq, p.objective), xytext=(6, 6), textcoords="offset points",
                        rotation=25, fontsize=8, color=KEEP, ha="left", va="bottom", zorder=7)

    values = [v for p in chart.points for v in (p.low, p.high)]
    if values and min(values) >= 0 and ax.get_ylim()[0] < 0:
        # A metric that never goes below zero gets no invented negative range, only enough
        # room for the markers sitting at zero.
        ax.set_ylim(bottom=-0.02 * (max(values) - min(values) or 1.0))
    ax.set_xlabel("experiment #", color=MUTED)
    ax.set_ylabel(f"{chart.metric} ({better})", color=MUTED)
    ax.set_xlim(0.5, max(2, chart.max_seq) + 0.5)
    if chart.max_seq <= 40:
        ax.set_xticks(range(1, max(2, chart.max_seq) + 1))
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(GRID)
    ax.tick_params(colors=MUTED)
    if chart.points:
        ax.legend(loc="best", frameon=False, fontsize=9)
    else:
        ax.text(0.5, 0.5, "no measured experiment yet", transform=ax.transAxes, ha="center",
                color=MUTED)
    if title:
        ax.set_title(title, loc="left", color=INK, fontsize=12, fontweight="bold")
    fig.tight_layout()
    return fig


def write_progress_png(chart: ChartData, path: Path, title: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    progress_figure(chart, title).savefig(path, format="png")
    return path


def progress_png_bytes(chart: ChartData, title: str = "") -> bytes:
    buf = io.BytesIO()
    progress_figure(chart, title).savefig(buf, format="png")
    return buf.getvalue()
