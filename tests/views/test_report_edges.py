"""`report` and `status` at the edges of a session: a metric named with an emoji, a baseline that
failed, crashed experiments on the chart, a session that has measured only its baseline."""

from __future__ import annotations

import html
import textwrap
from dataclasses import replace
from pathlib import Path

from matplotlib.collections import PathCollection

from autoresearch.report import progress_title
from autoresearch.report.plot import CRASH, progress_figure
from autoresearch.views.summary import build_view, open_ledger, resolve_session
from tests.conftest import make_repo, run_cli, use_script
from tests.views.ledger_factory import BuiltSession

# A seeded, noisy target (each run's noise drawn from its own seed): its baseline's σ is > 0.
SEEDED_SCORE = textwrap.dedent(
    """
    import json, os, random, sys
    import target
    if getattr(target, "CRASH", False):
        sys.exit("the model diverged")
    noise = random.Random(int(os.environ["AUTORESEARCH_SEED"])).gauss(0, 0.05)
    value = (target.X - 7) ** 2 + noise
    print(json.dumps({os.environ["METRIC"]: value}) if os.environ.get("METRIC")
          else f"score: {value}")
    """
)
CONFIG = textwrap.dedent(
    """
    scope = ["target.py"]
    protected = ["score.py"]
    [verify]
    command = "{python} score.py"
    budget_seconds = 5
    timeout_seconds = 60
    [metric]
    name = "score"
    direction = "minimize"
    [decision]
    repeats = 3
    """
)
EMOJI = "💥 loss"
KNOB = "X = 3.0  # knob: float(0, 10)\n"  # what the default proposer (tune) tunes


def seeded_repo(tmp_path: Path, target: str = KNOB, config: str = CONFIG) -> Path:
    return make_repo(tmp_path / "repo", {"target.py": target, "score.py": SEEDED_SCORE,
                                         "autoresearch.toml": config})


def crash_collections(fig: object) -> list[PathCollection]:
    ax = fig.axes[0]  # type: ignore[attr-defined]
    return [c for c in ax.collections if isinstance(c, PathCollection)
            and c.get_label() == "crashed / timed out"]


def legend_texts(fig: object) -> list[str]:
    legend = fig.axes[0].get_legend()  # type: ignore[attr-defined]
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_a_metric_named_with_an_emoji_is_drawn_without_a_python_warning(tmp_path: Path) -> None:
    """The font has no glyph for 💥: matplotlib draws a box and warned on stderr, once per text
    it laid out. The chart is written; the user sees no Python warning."""
    config = CONFIG.replace('name = "score"', f'name = "{EMOJI}"\nformat = "json"')
    repo = seeded_repo(tmp_path, config=config + f'[verify.env]\nMETRIC = "{EMOJI}"\n')
    use_script(repo, [{"hypothesis": "💥 move X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    session = run_cli(repo, "run", "--tag", "e", "-n", "2")
    assert session.returncode == 0, session.stdout + session.stderr
    proc = run_cli(repo, "report", "--tag", "e")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == "", proc.stderr
    png = repo / ".autoresearch" / "sessions" / "e" / "report" / "progress.png"
    assert png.stat().st_size > 10_000


def test_a_failed_baseline_is_counted_as_status_counts_it_and_marked_on_the_chart(
        tmp_path: Path) -> None:
    """The title said "1 experiments (baseline + 0)" of a baseline that never passed, and the
    chart showed nothing where it crashed."""
    repo = seeded_repo(tmp_path, target=KNOB + "CRASH = True\n")
    session = run_cli(repo, "run", "--tag", "b", "-n", "1")
    assert session.returncode == 5, session.stdout + session.stderr  # paused: baseline failed
    proc = run_cli(repo, "report", "--tag", "b")
    assert proc.returncode == 0 and proc.stderr == "", proc.stdout + proc.stderr
    ledger = open_ledger(repo)
    try:
        view = build_view(ledger, resolve_session(ledger, "b"))
    finally:
        ledger.close()
    title = progress_title(view.summary)
    assert title == "autoresearch · b · 1 experiment (1 failed baseline attempt), 0 kept"
    fig = progress_figure(view.chart, title)
    assert fig.axes[0].get_title(loc="left") == title
    [crashes] = crash_collections(fig)
    assert [x for x, _ in crashes.get_offsets()] == [1]
    assert legend_texts(fig) == ["crashed / timed out"]
    assert "no measured experiment yet" in [t.get_text() for t in fig.axes[0].texts]
    # The cross is placed in axes units: it does not make a range of its own (this chart has
    # no value to fix one, so matplotlib would fit it to the cross's y).
    assert fig.axes[0].get_ylim() == progress_figure(
        replace(view.chart, crashed_seqs=[])).axes[0].get_ylim()


def test_crashed_experiments_are_marked_on_the_bottom_edge_without_moving_the_range(
        demo_ro: BuiltSession) -> None:
    ledger = open_ledger(demo_ro.repo)
    try:
        view = build_view(ledger, resolve_session(ledger, "demo"))
    finally:
        ledger.close()
    chart = view.chart
    assert len(chart.crashed_seqs) >= 2  # a crash and a timeout
    fig = progress_figure(chart, progress_title(view.summary))
    [crashes] = crash_collections(fig)
    assert sorted(int(x) for x, _ in crashes.get_offsets()) == sorted(chart.crashed_seqs)
    assert all(y == 0.0 for _, y in crashes.get_offsets())  # the axes' bottom edge
    assert _hex(crashes.get_facecolor()[0]) == CRASH and crashes.get_zorder() > 6
    assert "crashed / timed out" in legend_texts(fig)
    # The legend's longer row and the title do not run into each other.
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig.axes[0]._left_title  # the loc="left" title: matplotlib has no getter for it
    assert not title.get_window_extent(renderer).overlaps(
        fig.axes[0].get_legend().get_window_extent(renderer))
    unmarked = progress_figure(replace(chart, crashed_seqs=[]), progress_title(view.summary))
    assert fig.axes[0].get_ylim() == unmarked.axes[0].get_ylim()
    assert crash_collections(unmarked) == []


def _hex(rgba: object) -> str:
    r, g, b = (round(float(v) * 255) for v in list(rgba)[:3])  # type: ignore[call-overload]
    return f"#{r:02x}{g:02x}{b:02x}"


def test_a_session_of_only_its_baseline_has_nothing_to_compare(tmp_path: Path) -> None:
    """Nothing kept: the best is the baseline, and "0.0σ (red)" would read as a result within
    the noise. `run`, `status` and `report` (its line, report.md, report.html) say instead that
    there is nothing to compare yet."""
    repo = seeded_repo(tmp_path)
    session = run_cli(repo, "run", "--tag", "o", "-n", "1", env={"COLUMNS": "200"})
    assert session.returncode == 0, session.stdout + session.stderr
    status = run_cli(repo, "status", "--tag", "o", env={"COLUMNS": "200"})
    report = run_cli(repo, "report", "--tag", "o", env={"COLUMNS": "200"})
    assert status.returncode == report.returncode == 0, status.stderr + report.stderr
    out = repo / ".autoresearch" / "sessions" / "o" / "report"
    md, page = (out / "report.md").read_text(), html.unescape((out / "report.html").read_text())
    for said in (session.stdout, status.stdout, report.stdout, md, page):
        assert "nothing to compare yet" in said, said
        assert "0.0σ" not in said and "(red)" not in said, said
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1].strip()
            for line in status.stdout.splitlines() if line.strip() and " " in line.strip()}
    assert rows["confidence"] == "nothing to compare yet", status.stdout
    assert "the only experiment (all:" in status.stdout, status.stdout  # not "latest 1 experiments"
    assert "vs baseline" in report.stdout and "(nothing to compare yet)" in report.stdout
    assert "- **Confidence:** nothing to compare yet — nothing was kept" in md
    # No "improvement — ÷ σ 0.04" beside it: there is no improvement to divide.
    assert "÷ σ" not in md and "÷ σ" not in page
    assert page.count("nothing was kept, so the best is the baseline") == 2  # card, noise floor
    ledger = open_ledger(repo)
    try:
        view = build_view(ledger, resolve_session(ledger, "o"))
    finally:
        ledger.close()
    conf = view.confidence
    assert (conf.compared, conf.level, conf.ratio, conf.improvement) == (False, "unknown", None,
                                                                         None)
    assert conf.noise is not None and conf.noise > 0  # the baseline's runs did vary
