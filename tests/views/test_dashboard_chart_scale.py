"""The dashboard's chart at 10,000 experiments, in Debian's headless Chromium: a live update
redraws it in well under a second (it took ~12 s on this machine when every point recomputed
the axis range, which goes over every point)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from tests.views.conftest import CHROMIUM, serve
from tests.views.ledger_factory import BuiltSession

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                       "/usr/bin/chromium (apt-get install -y chromium)"),
]

# The page's chart read model grown to `n` points: the served session's points repeated with
# new experiment numbers (unlabelled, so the time is the points', not the kept labels'). No
# outlier is cut off, so the axis range is the one computed over every point.
GROW_CHART = """(n) => {
  const c = state.view.chart;
  const points = Array.from({ length: n }, (_, i) => {
    const p = c.points[i % c.points.length];
    return { ...p, seq: i + 1, exp_id: `big-${i}`, label: null, off_scale: null,
             role: i === 0 ? "baseline" : p.role === "baseline" ? "discarded" : p.role };
  });
  return { ...c, points, max_seq: n, y_min: null, y_max: null };
}"""

REDRAW_MS = """(big) => {
  const times = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    renderChart(big);
    times.push(performance.now() - t);
  }
  return times;
}"""



def test_a_live_update_at_10000_experiments_redraws_the_chart_quickly(
        browser: Any, demo_ro: BuiltSession) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with serve(demo_ro.repo) as url:
        page.goto(url)
        deadline = time.monotonic() + 10
        while not page.evaluate("document.body.dataset.experiments === '11'"):
            assert time.monotonic() < deadline, "the page did not show the session"
            time.sleep(0.05)
        big = page.evaluate_handle(GROW_CHART, 10_000)
        # The first call makes the chart's datasets large; the next ones are live updates.
        times = page.evaluate(REDRAW_MS, big)
        drawn = page.evaluate("""() => Chart.getChart('progress').data.datasets
            .reduce((n, d) => n + (d.label === 'running best' ? 0 : d.data.length), 0)""")
    page.close()
    assert errors == []
    assert drawn == 10_000
    assert statistics.median(times) < 2000, times
