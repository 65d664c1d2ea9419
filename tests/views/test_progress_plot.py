"""progress.png: far outliers drawn at the edge, labels of crowded kept points never overlapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.text import Annotation

from autoresearch.report.plot import KEEP, progress_figure
from autoresearch.views.chart import ChartData, ChartPoint
from autoresearch.views.summary import build_view, open_ledger, resolve_session


def kept_labels(fig: object) -> list[Annotation]:
    ax = fig.axes[0]  # type: ignore[attr-defined]
    return [t for t in ax.texts if isinstance(t, Annotation) and t.get_color() == KEEP]


def test_a_far_outlier_is_drawn_at_the_edge_with_its_value(crowded_repo: Path) -> None:
    ledger = open_ledger(crowded_repo)
    chart = build_view(ledger, resolve_session(ledger, "n")).chart
    wild = [p for p in chart.points if p.off_scale]
    assert [round(p.objective) for p in wild] == [50] and wild[0].off_scale == "high"
    ax = progress_figure(chart).axes[0]
    bottom, top = ax.get_ylim()
    assert top < 20 and bottom > 5  # the other results (8-14) fill the plot
    values = [t for t in ax.texts if t.get_text().startswith("50.")]
    assert len(values) == 1 and values[0].get_text().endswith("↑")
    x, y = values[0].xy
    assert x == wild[0].seq and chart.y_max is not None and chart.y_max < y < top
    # Every kept step is still labelled: the outlier did not squash them together.
    assert len(kept_labels(ax.figure)) == sum(1 for p in chart.points if p.role == "kept")


def crowded_chart(n: int) -> ChartData:
    """Kept points one after another, each higher (better) than the last, with long labels.

    Labels slant upwards, so a rising series puts each label across the next one's path.
    """
    points = [ChartPoint(seq=1, exp_id="c-0001", status="keep", role="baseline", objective=10.0,
                         low=10.0, high=10.0, runs=1, label="baseline")]
    for i in range(2, n + 1):
        y = 10.0 + 0.1 * i
        points.append(ChartPoint(seq=i, exp_id=f"c-{i:04d}", status="keep", role="kept",
                                 objective=y, low=y, high=y, runs=1,
                                 label=f"change number {i} of a long series of small steps"))
    best = [(p.seq, p.objective) for p in points]
    return ChartData("accuracy", "maximize", points, best, 10.0, [], n)


def rendered(fig: object) -> np.ndarray:
    fig.canvas.draw()  # type: ignore[attr-defined]
    return np.asarray(fig.canvas.buffer_rgba()).copy()  # type: ignore[attr-defined]


def test_labels_of_crowded_kept_points_do_not_overlap() -> None:
    chart = crowded_chart(12)
    fig = progress_figure(chart)
    labels = kept_labels(fig)
    full = {p.label for p in chart.points if p.role == "kept"}
    assert labels, "at least the rightmost label is drawn"
    # Crowded: some labels were cut short or left out, and each drawn one is a label's prefix.
    assert len(labels) < len(full) or any(t.get_text().endswith("…") for t in labels)
    for t in labels:
        text = t.get_text()
        assert text in full or any(f.startswith(text.rstrip("…").rstrip()) for f in full)
    # Pixels: each label alone against none at all; no pixel may belong to two labels.
    for t in labels:
        t.set_visible(False)
    blank = rendered(fig)
    masks = []
    for t in labels:
        t.set_visible(True)
        masks.append(np.any(rendered(fig) != blank, axis=2))
        t.set_visible(False)
    for i in range(len(masks)):
        assert masks[i].any()
        for j in range(i + 1, len(masks)):
            shared = int(np.sum(masks[i] & masks[j]))
            assert shared == 0, (labels[i].get_text(), labels[j].get_text(), shared)


def test_spread_out_kept_points_keep_their_whole_labels() -> None:
    chart = crowded_chart(4)
    drawn = {t.xy[0]: t.get_text() for t in kept_labels(progress_figure(chart))}
    kept = [p for p in chart.points if p.role == "kept"]
    assert sorted(drawn) == [p.seq for p in kept]
    # Only the rightmost one meets the figure's edge, and is cut there.
    assert all(drawn[p.seq] == p.label for p in kept[:-1])
    assert drawn[kept[-1].seq].endswith("…")
    assert kept[-1].label.startswith(drawn[kept[-1].seq][:-1].rstrip())


def spread_bars(fig: object) -> dict[tuple[float, float, float], str]:
    """Every spread bar drawn: (x, low, high) -> its colour."""
    from matplotlib.colors import to_hex
    from matplotlib.container import ErrorbarContainer

    bars: dict[tuple[float, float, float], str] = {}
    for container in fig.axes[0].containers:  # type: ignore[attr-defined]
        if isinstance(container, ErrorbarContainer):
            _, _, columns = container.lines
            for column in columns:
                colours = [to_hex(c) for c in column.get_colors()]
                for i, seg in enumerate(column.get_segments()):
                    (x, y0), (_, y1) = seg
                    key = (round(float(x), 6), round(float(y0), 6), round(float(y1), 6))
                    assert key not in bars  # one bar per point
                    bars[key] = colours[i % len(colours)]
    return bars


def test_every_repeated_point_gets_its_spread_bar_in_its_own_hue() -> None:
    """The spread of each point measured more than once is one bar from its lowest to its
    highest run, in a darker shade of its role's hue; a single run, or runs that agree, none.
    (The bars of a hue are drawn by one errorbar call, not one per point: see plot.py.)"""
    from autoresearch.report.plot import SPREAD_BASELINE, SPREAD_DISCARD, SPREAD_KEEP

    points = [ChartPoint(seq=1, exp_id="s-0001", status="keep", role="baseline", objective=10.0,
                         low=9.8, high=10.3, runs=3, label="baseline")]
    for i in range(2, 41):
        role = "kept" if i % 7 == 0 else "discarded"
        y = 10.0 - 0.01 * i
        runs = 1 if i % 5 == 0 else 2
        low, high = (y, y) if i % 11 == 0 else (y - 0.02 * (i % 3 + 1), y + 0.01 * (i % 4 + 1))
        points.append(ChartPoint(seq=i, exp_id=f"s-{i:04d}", status="keep" if role == "kept"
                                 else "discard", role=role, objective=y, low=low, high=high,
                                 runs=runs, label=f"step {i}"))
    best = [(p.seq, p.objective) for p in points if p.role != "discarded"]
    chart = ChartData("loss", "minimize", points, best, 10.0, [], len(points))
    hue = {"baseline": SPREAD_BASELINE, "kept": SPREAD_KEEP, "discarded": SPREAD_DISCARD}
    expected = {(float(p.seq), round(p.low, 6), round(p.high, 6)): hue[p.role]
                for p in points if p.runs >= 2 and p.high > p.low}
    assert len(expected) > 20 and set(expected.values()) == set(hue.values())
    assert spread_bars(progress_figure(chart)) == expected


def test_an_objective_outside_its_runs_range_does_not_break_the_plot() -> None:
    """A hand-edited or damaged ledger can hold an experiment whose objective lies outside the
    range of its runs: the chart is still drawn (matplotlib refuses a negative error bar)."""
    points = [ChartPoint(seq=1, exp_id="s-0001", status="keep", role="baseline", objective=10.0,
                         low=9.8, high=10.3, runs=3, label="baseline"),
              ChartPoint(seq=2, exp_id="s-0002", status="discard", role="discarded",
                         objective=11.0, low=9.9, high=10.2, runs=2, label="beyond its runs"),
              ChartPoint(seq=3, exp_id="s-0003", status="discard", role="discarded",
                         objective=9.0, low=9.9, high=10.2, runs=2, label="below its runs")]
    chart = ChartData("loss", "minimize", points, [(1, 10.0)], 10.0, [], len(points))
    bars = spread_bars(progress_figure(chart))
    assert (2.0, 9.9, 11.0) in bars and (3.0, 9.0, 10.2) in bars
