"""progress.png: the dashboard's progress chart, drawn with matplotlib from the same series.

The figure is built on a bare `Figure` with the Agg canvas instead of pyplot, so drawing keeps no
global state and works in a thread, on a headless machine, and inside a test run.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from matplotlib import __version__ as MATPLOTLIB_VERSION
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from autoresearch.report.labels import place_labels
from autoresearch.report.writing import PNG_SOFTWARE
from autoresearch.views.chart import ChartData, ChartPoint
from autoresearch.views.format import fmt_value

# The dashboard's palette (style.css), so the PNG and the page look like the same chart.
KEEP = "#12a150"
DISCARD = "#98a2b3"
BASELINE = "#3b5bdb"
CRASH = "#d92d20"  # report.html's crash badge
INK = "#1d2330"
MUTED = "#667085"
GRID = "#e4e7ec"
SPREAD_BASELINE = "#1f3282"
SPREAD_KEEP = "#0a5c2d"
SPREAD_DISCARD = "#475467"
SPREAD_Z = 6.5  # above every marker (discarded 4, kept 5, baseline 6)
LABEL_SLANT = 25  # degrees
LABEL_SIZE = 8
LABEL_MIN_PX = 40  # a label cut shorter than this is left out
# The PNG's Software text chunk: what says report drew it (report.writing).
PNG_METADATA = {"Software": f"{PNG_SOFTWARE} (matplotlib {MATPLOTLIB_VERSION})"}


@contextmanager
def missing_glyphs_unsaid() -> Iterator[None]:
    """Text the font has no glyph for (an emoji in a metric name or a hypothesis) is drawn as a
    box, and matplotlib also warns on stderr, once per glyph, as each text is laid out and drawn:
    the chart is written all the same, so a user of `report` would see a Python warning about
    nothing they can act on. Only that warning is silenced, only while the chart is made."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font",
                                category=UserWarning)
        yield


def progress_figure(chart: ChartData, title: str = "") -> Figure:
    fig = Figure(figsize=(12, 5.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    better = "higher is better" if chart.direction == "maximize" else "lower is better"

    if chart.best_line:
        xs, ys = zip(*chart.best_line, strict=True)
        ax.step(xs, ys, where="post", color=KEEP, linewidth=2, label="running best", zorder=3)
    visible = [p for p in chart.points if not p.off_scale]
    discarded = [p for p in visible if p.role == "discarded"]
    kept = [p for p in visible if p.role == "kept"]
    base = [p for p in visible if p.role == "baseline"]
    if discarded:
        ax.scatter([p.seq for p in discarded], [p.objective for p in discarded], s=22,
                   color=DISCARD, alpha=0.5, label="discarded", zorder=4, linewidths=0)
    if kept:
        ax.scatter([p.seq for p in kept], [p.objective for p in kept], s=60, color=KEEP,
                   edgecolors="white", linewidths=1.2, label="kept", zorder=5)
    limits = y_limits(chart)
    if limits is not None:
        draw_off_scale(ax, chart, limits)
    if base:
        ax.scatter([p.seq for p in base], [p.objective for p in base], s=90, marker="D",
                   color=BASELINE, edgecolors="white", linewidths=1.2, label="baseline", zorder=6)
    # The spread of repeated runs goes over the markers (a marker is often taller than the
    # spread), in a darker shade of their hue, with caps wider than the markers. One errorbar
    # call per hue: one per point cost ~2.5 ms each (12 s for a session of 5,000 experiments).
    spreads: dict[str, list[ChartPoint]] = {}
    for p in visible:
        if p.runs >= 2 and p.high > p.low:
            colour = {"kept": SPREAD_KEEP, "baseline": SPREAD_BASELINE}.get(p.role, SPREAD_DISCARD)
            spreads.setdefault(colour, []).append(p)
    for colour, points in spreads.items():
        ax.errorbar([p.seq for p in points], [p.objective for p in points],
                    # Clamped: an objective outside its runs' range (a ledger edited by hand,
                    # or damaged) would make matplotlib raise on a negative length.
                    yerr=[[max(0.0, p.objective - p.low) for p in points],
                          [max(0.0, p.high - p.objective) for p in points]],
                    fmt="none", ecolor=colour, elinewidth=1.5, capsize=7, capthick=1.5,
                    zorder=SPREAD_Z)

    values = [v for p in visible for v in (p.low, p.high)]
    if limits is not None:
        ax.set_ylim(*limits)
    elif values and min(values) >= 0 and ax.get_ylim()[0] < 0:
        # A metric that never goes below zero gets no invented negative range, only enough
        # room for the markers sitting at zero.
        ax.set_ylim(bottom=-0.02 * (max(values) - min(values) or 1.0))
    ax.set_xlabel("experiment #", color=MUTED)
    # parse_math=False wherever the text is not ours: a `$` pair in a metric's name or a
    # hypothesis is mathtext to matplotlib, and `$\foo$` makes savefig raise.
    ax.set_ylabel(f"{chart.metric} ({better})", color=MUTED, parse_math=False)
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
    draw_crashes(ax, chart)
    if chart.points or chart.crashed_seqs:
        # Above the plot, right-aligned (as on the dashboard): never on top of a point or label.
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=6, frameon=False,
                  fontsize=9, borderaxespad=0.2)
    if not chart.points:
        ax.text(0.5, 0.5, "no measured experiment yet", transform=ax.transAxes, ha="center",
                color=MUTED)
    if title:
        # Above the legend's row, not beside it: a long title ran under the legend's entries.
        ax.set_title(title, loc="left", color=INK, fontsize=12, fontweight="bold",
                     parse_math=False, pad=24 if ax.get_legend() else 6)
    fig.tight_layout()
    # Labels last: their room depends on where the layout put the axes.
    label_kept(fig, ax, [p for p in kept if p.label])
    return fig


def y_limits(chart: ChartData) -> tuple[float, float] | None:
    """The fixed y-range when far outliers are cut off (None: let matplotlib fit everything)."""
    if chart.y_min is None or chart.y_max is None:
        return None
    pad = (chart.y_max - chart.y_min) * 0.1 or abs(chart.y_max) * 0.05 or 1.0
    bottom = chart.y_min - pad
    if chart.y_min >= 0:
        bottom = max(0.0, bottom)
    return bottom, chart.y_max + pad


def draw_off_scale(ax: Axes, chart: ChartData, limits: tuple[float, float]) -> None:
    """Points beyond the range: a triangle at its edge pointing their way, their value beside."""
    assert chart.y_min is not None and chart.y_max is not None
    for i, p in enumerate(q for q in chart.points if q.off_scale):
        high = p.off_scale == "high"
        y = (chart.y_max + limits[1]) / 2 if high else (chart.y_min + limits[0]) / 2
        ax.scatter([p.seq], [y], s=36, marker="^" if high else "v", color=DISCARD, zorder=4,
                   linewidths=0, label="off the scale" if i == 0 else None)
        ax.annotate(f"{fmt_value(p.objective)} {'↑' if high else '↓'}", (p.seq, y),
                    xytext=(7, 0), textcoords="offset points", fontsize=8, color=MUTED,
                    va="center", zorder=7)


def draw_crashes(ax: Axes, chart: ChartData) -> None:
    """Experiments that crashed or timed out have no value to plot, but leaving their numbers
    blank would read as experiments that never ran: each is a red cross on the bottom edge,
    in the x of its number (y in axes units, so the crosses never move the value range)."""
    if not chart.crashed_seqs:
        return
    limits = ax.get_ylim()  # as the values set them: a scatter's y counts as data all the same
    ax.scatter(chart.crashed_seqs, [0.0] * len(chart.crashed_seqs), s=40, marker="x",
               color=CRASH, linewidths=1.8, transform=ax.get_xaxis_transform(), clip_on=False,
               zorder=7, label="crashed / timed out")
    ax.set_ylim(*limits)


def label_kept(fig: Figure, ax: Axes, kept: list[ChartPoint]) -> None:
    """Label kept points with their hypotheses, slanted, never two overlapping (`labels`)."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    font = FontProperties(size=LABEL_SIZE)
    offset = 6 * fig.dpi / 72

    def width(text: str) -> float:
        return float(renderer.get_text_width_height_descent(text, font, ismath=False)[0])

    height = renderer.get_text_width_height_descent("Ag", font, ismath=False)[1] + 2
    anchors = [(p.label, *ax.transData.transform((p.seq, p.objective))) for p in kept]
    # Inside the plot, but free to run into the right margin of the figure.
    bounds = (ax.bbox.x0, ax.bbox.y0, fig.bbox.width - 4, ax.bbox.y1)
    chosen = place_labels(anchors, width, height, bounds, math.radians(LABEL_SLANT), offset,
                          LABEL_MIN_PX)
    for p, label in zip(kept, chosen, strict=True):
        if label is None:
            continue
        sign = 1 if label.up else -1
        ax.annotate(label.text, (p.seq, p.objective), xytext=(6, 6 * sign),
                    textcoords="offset points", rotation=LABEL_SLANT * sign,
                    rotation_mode="anchor", fontsize=LABEL_SIZE, color=KEEP, ha="left",
                    va="center", zorder=7, annotation_clip=False, parse_math=False)


def write_progress_png(chart: ChartData, path: Path, title: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(progress_png_bytes(chart, title))
    return path


def progress_png_bytes(chart: ChartData, title: str = "") -> bytes:
    buf = io.BytesIO()
    with missing_glyphs_unsaid():  # laid out as the figure is made, and again as it is drawn
        progress_figure(chart, title).savefig(buf, format="png", metadata=PNG_METADATA)
    return buf.getvalue()
