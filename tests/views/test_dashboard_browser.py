"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

The ledgers come from real sessions (`autoresearch run` in a temporary repository); the live test
resumes that session while the page is open and waits for the new experiments to appear.
Screenshots are written to the test's tmp dir and copied to test-artifacts/ at the repo root.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from autoresearch.config import ReviewConfig
from autoresearch.ledger import Ledger
from autoresearch.report.labels import corners, overlap
from autoresearch.review.gate import record_gate, review_candidate
from autoresearch.views.summary import build_view, open_ledger, resolve_session
from tests.views.conftest import (
    ARTIFACTS,
    CHROMIUM,
    NOISY_BASELINE,
    autoresearch,
    run_toy_session,
    serve,
)
from tests.views.ledger_factory import build_session
from tests.views.review_session import (
    BLOCKED,
    KEPT_CLEAN,
    KEPT_YELLOW,
    NOT_REVIEWED,
    PLAN,
    Reviewed,
)

TOKEN = "browser-test-token-123"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                       "/usr/bin/chromium (apt-get install -y chromium)"),
]

POINT_DATASETS = ("baseline", "kept", "discarded")



@pytest.fixture(scope="module")
def live_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own real session: the live test resumes it."""
    return run_toy_session(tmp_path_factory.mktemp("browser") / "repo", iterations=8)


def ledger_counts(repo: Path, tag: str = "t") -> tuple[int, int, int]:
    """(experiments, measured ones, kept candidates) straight from the ledger."""
    ledger = Ledger(repo / ".autoresearch" / "ledger.db", readonly=True)
    try:
        session = ledger.session(tag)
        assert session is not None
        exps = ledger.experiments(session.id)
    finally:
        ledger.close()
    measured = sum(1 for e in exps if e.objective is not None)
    kept = sum(1 for e in exps if e.status == "keep" and e.kind != "baseline")
    return len(exps), measured, kept


def drawn_points(pg: Any) -> dict[str, int]:
    """Point elements Chart.js actually laid out, per dataset."""
    result: dict[str, int] = pg.evaluate("""() => {
        const chart = Chart.getChart('progress');
        return Object.fromEntries(chart.data.datasets.map(
            (d, i) => [d.label, chart.getDatasetMeta(i).data.length]));
    }""")
    return result


def wait_until(pg: Any, expression: str, timeout_s: float = 60.0) -> None:
    """Poll a JS expression from Python (for up to a minute: headless Chromium beside a busy
    test run can take seconds to load, connect and render).

    Playwright's wait_for_function evaluates its predicate with eval inside the page, which the
    dashboard's Content-Security-Policy forbids (on purpose); page.evaluate is not subject to it.
    """
    deadline = time.monotonic() + timeout_s
    while not pg.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for: {expression}"
        time.sleep(0.05)


def shows_experiments(pg: Any, n: int, timeout_s: float = 60.0) -> None:
    """Wait until the page has rendered `n` experiments (its table and chart are current)."""
    wait_until(pg, f"document.body.dataset.experiments === '{n}'", timeout_s)


def shoot(pg: Any, tmp_path: Path, name: str, full_page: bool = True) -> Path:
    path = tmp_path / name
    pg.screenshot(path=str(path), full_page=full_page)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return path


def test_chart_table_and_diff(page: Any, live_repo: Path, tmp_path: Path) -> None:
    n, measured, kept = ledger_counts(live_repo)
    with serve(live_repo) as url:
        page.goto(url + "/")
        shows_experiments(page, n)
        drawn = drawn_points(page)
        assert sum(drawn[k] for k in POINT_DATASETS) == measured
        assert drawn["kept"] == kept and drawn["baseline"] == 1
        assert page.locator("#experiments tbody tr").count() == n
        assert page.locator("#live.on").count() == 1  # the event stream is connected

        # Filtering by status.
        discarded = page.locator("#experiments .badge.discard").count()
        page.click("button.chip[data-status='discard']")
        assert page.locator("#experiments tbody tr").count() == discarded
        # The baseline (recorded as `keep`) is counted and filtered on its own, so the keep
        # chip, the keep filter and the header's "kept" all say the same number.
        chip = lambda s: page.inner_text(f"button.chip[data-status='{s}'] .n")  # noqa: E731
        assert chip("keep") == page.inner_text("#counts [data-count='keep'] b") == str(kept)
        page.click("button.chip[data-status='keep']")
        assert page.locator("#experiments tbody tr").count() == kept
        assert page.locator("#experiments tbody .badge.baseline").count() == 0
        assert chip("baseline") == "1"
        page.click("button.chip[data-status='baseline']")
        assert page.locator("#experiments tbody tr .badge.baseline").count() == 1
        assert page.locator("#experiments tbody tr").count() == 1
        page.click("button.chip[data-status='all']")

        # Sorting by objective puts the best (smallest) first, then reverses.
        page.click("#experiments th[data-key='objective']")
        first = page.locator("#experiments tbody tr").first.get_attribute("data-id")
        page.click("#experiments th[data-key='objective']")
        assert page.locator("#experiments tbody tr").first.get_attribute("data-id") != first
        page.click("#experiments th[data-key='seq']")

        shoot(page, tmp_path, "dashboard-real-session.png")

        # A discarded experiment's diff comes from refs/autoresearch/<tag>/discarded/<id>.
        row = page.locator("#experiments tbody tr", has=page.locator(".badge.discard")).first
        exp_id = row.get_attribute("data-id")
        row.click()
        page.wait_for_selector("#detail pre.diff")
        assert page.locator("#detail-id").inner_text() == exp_id
        diff = page.locator("#detail pre.diff").inner_text()
        assert "diff --git a/target.py b/target.py" in diff and "+X = " in diff
        assert "score:" in page.locator("#detail pre.log").inner_text()
        assert "python_version" in page.locator("#detail pre.fingerprint").inner_text()
        shoot(page, tmp_path, "dashboard-diff.png", full_page=False)
        page.keyboard.press("Escape")
        assert page.locator("#detail").is_hidden()
    assert page.errors == []


# Notes the id of every table row that gets the `fresh` class (the flash of a new row).
FLASH_WATCH = """() => {
    window.__flashed = [];
    const note = (n) => {
        if (n.nodeType === 1 && n.matches('tr.fresh') && !window.__flashed.includes(n.dataset.id))
            window.__flashed.push(n.dataset.id);
    };
    new MutationObserver((changes) => changes.forEach((c) => {
        c.addedNodes.forEach(note);
        if (c.type === 'attributes') note(c.target);
    })).observe(document.querySelector('#experiments tbody'),
                { childList: true, subtree: true, attributes: true, attributeFilter: ['class'] });
}"""


def test_new_experiments_appear_without_reload(page: Any, live_repo: Path, tmp_path: Path) -> None:
    n, _, _ = ledger_counts(live_repo)
    answers: list[dict[str, Any]] = []
    page.on("response", lambda r: answers.append({"url": r.url, "body": r.json()})
            if "/api/session" in r.url else None)
    with serve(live_repo) as url:
        page.goto(url + "/")
        shows_experiments(page, n)
        page.evaluate("window.__sameDocument = true")
        # Rows that flash are noted as they do: the flash lasts 2.5 s and ends at the next
        # render, which on a loaded machine can come (the session's end) before it is looked at.
        page.evaluate(FLASH_WATCH)
        before = page.locator("#experiments tbody tr").evaluate_all(
            "(rows) => rows.map((r) => r.dataset.id)")
        # Resume the real session for two more experiments while the page is open.
        proc = autoresearch(live_repo, "run", "--iterations", str(n + 2), "--tag", "t")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        shows_experiments(page, n + 2)
        assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
        _, measured, kept = ledger_counts(live_repo)
        wait_until(page,
            "Chart.getChart('progress').data.datasets.slice(1)"
            f".reduce((s, d) => s + d.data.length, 0) === {measured}")
        drawn = drawn_points(page)
        assert sum(drawn[k] for k in POINT_DATASETS) == measured and drawn["kept"] == kept
        flashed = page.evaluate("window.__flashed")
        new_ids = set(page.locator("#experiments tbody tr").evaluate_all(
            "(rows) => rows.map((r) => r.dataset.id)")) - set(before)
        assert flashed and set(flashed) <= new_ids, (flashed, new_ids)  # the new rows flash
        # After the first answer the page asked only for what changed, and got only that.
        updates = [a["body"] for a in answers if "since=" in a["url"]]
        assert updates and all(not u["full"] for u in updates)
        assert sum(len(u["experiments"]) for u in updates) < 2 * (n + 2)
        assert max(len(u["experiments"]) for u in updates) <= 2
        shoot(page, tmp_path, "dashboard-live.png")
    assert page.errors == []


def test_token_is_required(browser: Any, page: Any, live_repo: Path, tmp_path: Path) -> None:
    """Over the real session's ledger: refused without the token, everything works with it."""
    n, measured, kept = ledger_counts(live_repo)
    ledger = open_ledger(live_repo)
    try:
        conf = build_view(ledger, resolve_session(ledger, "t")).confidence
    finally:
        ledger.close()
    with serve(live_repo, token=TOKEN) as url:
        refused = page.goto(url + "/")
        assert refused is not None and refused.status == 401
        assert "access token" in page.content()
        ok = page.goto(url + f"/?token={TOKEN}")
        assert ok is not None and ok.status == 200
        shows_experiments(page, n)
        assert "token" not in page.url  # dropped from the address bar once the cookie is set
        page.wait_for_selector("#live.on")  # the event stream got through with the cookie
        drawn = drawn_points(page)
        assert sum(drawn[k] for k in POINT_DATASETS) == measured and drawn["kept"] == kept
        assert page.locator(f"#confidence.{conf.level}").count() == 1
        assert page.locator("#conf-value").inner_text() == conf.label
        tip = page.locator("#conf-tip")
        page.hover("#confidence")
        assert tip.is_visible() and "noise floor" in tip.inner_text()
        shoot(page, tmp_path, "dashboard-token.png")
        # Another browser context has no cookie: refused again.
        other = browser.new_context()
        try:
            assert other.request.get(url + "/api/session").status == 401
            assert other.request.get(url + "/api/stream").status == 401
        finally:
            other.close()
    assert page.errors == [] or all("401" in e for e in page.errors)


# For each point with repeated runs: the pixels of its spread bar where a marker would hide it
# (on the marker, just above or below its centre) and where a narrow cap would not reach (just
# outside the marker, at the low and high ends), with the colour the bar should have.
SPREAD_PROBES = """() => {
    const chart = Chart.getChart('progress');
    const { x, y } = chart.scales;
    const ctx = chart.canvas.getContext('2d');
    const dpr = chart.currentDevicePixelRatio || 1;
    const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.trim().slice(i, i + 2), 16));
    const pixel = (px, py) => Array.from(ctx.getImageData(Math.round(px * dpr), Math.round(py * dpr), 1, 1).data.slice(0, 3));
    const vars = { kept: '--spread-keep', baseline: '--spread-baseline', discarded: '--spread-discard' };
    const out = [];
    chart.data.datasets.forEach((ds, di) => ds.data.forEach((d, i) => {
        const p = d.p;
        if (!p || p.runs < 2 || p.high === p.low) return;
        const el = chart.getDatasetMeta(di).data[i];
        const r = el.options.radius + el.options.borderWidth;
        const px = x.getPixelForValue(p.seq), lo = y.getPixelForValue(p.low), hi = y.getPixelForValue(p.high);
        const mid = y.getPixelForValue(p.objective);
        // The bar's own pixels that lie on the marker (the two columns of a 2 px line).
        const onMarker = [];
        for (let py = Math.floor(hi) - 1; py <= Math.ceil(lo) + 1; py++)
            if (Math.abs(py - mid) < r - 2) for (const dx of [-1, 0]) onMarker.push(pixel(Math.round(px) + dx, py));
        out.push({ id: p.exp_id, role: p.role, radius: r, span_px: lo - hi,
            want: rgb(getComputedStyle(document.documentElement).getPropertyValue(vars[p.role])),
            marker: el.options.backgroundColor,
            on_marker: onMarker,
            cap_low: [-1, 0, 1].map((dy) => pixel(px + r + 2, lo + dy)),
            cap_high: [-1, 0, 1].map((dy) => pixel(px + r + 2, hi + dy)) });
    }));
    return out;
}"""


def _near(samples: list[list[int]], want: list[int], tolerance: int = 60) -> bool:
    """Whether any of the (antialiased) samples is close to the wanted colour."""
    return any(sum(abs(a - b) for a, b in zip(s, want, strict=True)) <= tolerance
               for s in samples)


def test_spread_of_repeated_runs_is_visible(page: Any, noisy_repo: Path, tmp_path: Path) -> None:
    n, _, _ = ledger_counts(noisy_repo, "n")
    with serve(noisy_repo) as url:
        page.goto(url + "/")
        shows_experiments(page, n)
        # The confidence divides the re-measured gain by the better measured σ (here the
        # pooled one: more degrees of freedom than the baseline's own 2), and says so.
        ledger = open_ledger(noisy_repo)
        try:
            conf = build_view(ledger, resolve_session(ledger, "n")).confidence
        finally:
            ledger.close()
        assert conf.noise_source == "pooled" and conf.pooled_dof > 2 and conf.noise is not None
        assert (f"÷ σ {conf.noise:.3g} (gain re-measured over 3 pairs, pooled σ, "
                f"{conf.pooled_dof} degrees of freedom)" in page.inner_text("#conf-sub"))
        assert abs(conf.noise - statistics.stdev(NOISY_BASELINE)) > 0.01
        probes = page.evaluate(SPREAD_PROBES)
        assert {p["role"] for p in probes} >= {"baseline", "kept"}  # repeats and confirmations
        for p in probes:
            assert _near(p["on_marker"], p["want"]), p   # drawn over the marker, not under it
            assert _near(p["cap_low"], p["want"]), p     # caps wider than the marker
            assert _near(p["cap_high"], p["want"]), p
        shoot(page, tmp_path, "dashboard-spread.png", full_page=False)
    assert page.errors == []


# Halfway between two consecutive steps of the running best, the pixels on the row of the
# earlier value and on the row of the later one.
STEP_PROBES = """() => {
    const chart = Chart.getChart('progress');
    const { x, y } = chart.scales;
    const ctx = chart.canvas.getContext('2d');
    const dpr = chart.currentDevicePixelRatio || 1;
    const pixel = (px, py) => Array.from(ctx.getImageData(Math.round(px * dpr), Math.round(py * dpr), 1, 1).data.slice(0, 3));
    const column = (px, py) => [-1, 0, 1].map((dy) => pixel(px, py + dy));
    const line = chart.$ar.best_line;
    const out = [];
    for (let i = 1; i < line.length; i++) {
        const [x0, y0] = line[i - 1], [x1, y1] = line[i];
        if (y0 === y1) continue;
        const mid = x.getPixelForValue((x0 + x1) / 2);
        out.push({ between: [x0, x1], before: column(mid, y.getPixelForValue(y0)),
                   after: column(mid, y.getPixelForValue(y1)) });
    }
    const hex = getComputedStyle(document.documentElement).getPropertyValue('--best').trim();
    return { want: [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)), probes: out };
}"""


def test_running_best_steps_at_the_kept_experiment(page: Any, noisy_repo: Path) -> None:
    """Like progress.png (where="post"): the incumbent holds until the experiment that beat it."""
    n, _, _ = ledger_counts(noisy_repo, "n")
    with serve(noisy_repo) as url:
        page.goto(url + "/")
        shows_experiments(page, n)
        got = page.evaluate(STEP_PROBES)
        assert len(got["probes"]) >= 3
        for probe in got["probes"]:
            assert _near(probe["before"], got["want"]), probe  # still the old incumbent
            assert not _near(probe["after"], got["want"], 150), probe  # not the new one yet
    assert page.errors == []


def session_options(pg: Any) -> list[str]:
    values: list[str] = pg.evaluate(
        "Array.from(document.querySelectorAll('#session-select option'), (o) => o.value)")
    return values


def test_session_list_follows_new_sessions(page: Any, tmp_path: Path) -> None:
    repo = run_toy_session(tmp_path / "repo", iterations=3, tag="t")
    with serve(repo) as url:
        page.goto(url + "/")
        wait_until(page, "document.getElementById('branch').textContent === 'autoresearch/t'")
        assert session_options(page) == ["t"]
        page.evaluate("window.__sameDocument = true")
        # A new session starts while the page is open and nobody picked one: listed, and followed.
        run_toy_session(repo, iterations=2, tag="t2")
        wait_until(page, "document.getElementById('branch').textContent === 'autoresearch/t2'")
        wait_until(page, "document.body.dataset.experiments === '2'")
        assert session_options(page) == ["t2", "t"]
        assert page.locator("#session-select").input_value() == "t2"
        # Once the user picks one, it stays on the page when yet another session starts.
        page.select_option("#session-select", "t")
        wait_until(page, "document.getElementById('branch').textContent === 'autoresearch/t' && "
                   "document.body.dataset.experiments === '3'")
        run_toy_session(repo, iterations=2, tag="t3")
        wait_until(page, "document.querySelectorAll('#session-select option').length === 3")
        assert session_options(page) == ["t3", "t2", "t"]
        time.sleep(0.5)  # any further update that could switch sessions has arrived by now
        assert page.inner_text("#branch") == "autoresearch/t"
        assert page.locator("#session-select").input_value() == "t"
        assert page.evaluate("window.__sameDocument") is True  # all of it without a reload
    assert page.errors == []


# The chart's own numbers: its y-range, where the off-scale point was drawn, its x ticks, and how
# labelBoxes (progress.js) places the labels of made-up kept points close together and rising,
# which slanted labels would cross (each runs along the next one's path).
CHART_GEOMETRY = """() => {
    const chart = Chart.getChart('progress');
    const { x, y } = chart.scales, area = chart.chartArea;
    const off = [];
    chart.data.datasets.forEach((d, i) => d.data.forEach((item, j) => {
        if (item.p && item.p.off_scale) {
            const el = chart.getDatasetMeta(i).data[j];
            off.push({ value: item.p.objective, px: el.y, style: el.options.pointStyle });
        }
    }));
    const ctx = chart.ctx;
    ctx.save();
    ctx.font = '11px ' + css('--sans');
    const span = y.max - y.min;
    const fake = Array.from({ length: 9 }, (_, i) => ({
        seq: 2 + 0.3 * i, role: 'kept', objective: y.min + span * (0.1 + 0.08 * i),
        label: 'a long hypothesis for step ' + (i + 2) + ' that cannot fit beside the next' }));
    const boxes = labelBoxes(chart, fake, ctx).map((b) => ({
        seq: b.p.seq, label: b.p.label, text: b.text, ax: b.ax, ay: b.ay, angle: b.angle,
        w: ctx.measureText(b.text).width }));
    ctx.restore();
    return { ymin: y.min, ymax: y.max, top: area.top, bottom: area.bottom, off, boxes,
             ticks: x.ticks.map((t) => t.value), maxSeq: chart.$ar.max_seq,
             };
}"""


def test_outliers_crowded_labels_and_axis(page: Any, crowded_repo: Path, tmp_path: Path) -> None:
    n, _, _ = ledger_counts(crowded_repo, "n")
    with serve(crowded_repo) as url:
        page.goto(url + "/")
        shows_experiments(page, n)
        g = page.evaluate(CHART_GEOMETRY)
        # The wild result (50) is cut off: the rest (8-14) fill the plot, and it sits at the top
        # edge as an upward triangle, inside the plot area, its value written beside it.
        assert g["ymax"] < 20 and g["ymin"] > 5
        assert [round(o["value"]) for o in g["off"]] == [50]
        assert g["top"] <= g["off"][0]["px"] <= g["bottom"] and g["off"][0]["style"] == "triangle"
        assert "1 off the scale" in page.inner_text("#chart-hint")
        # The x axis labels the first and the last experiment.
        assert g["ticks"][0] == 1 and g["ticks"][-1] == g["maxSeq"] == n
        # Labels: every one drawn is its hypothesis or a prefix of it, and no two overlap.
        boxes = g["boxes"]
        assert boxes and len(boxes) <= 9
        assert len(boxes) < 9 or any(b["text"].endswith("…") for b in boxes[1:])
        for b in boxes:
            assert b["label"].startswith(b["text"].rstrip("…").rstrip())
        # The strips as drawn (progress.png's geometry: the same in canvas coordinates).
        rects = [corners(b["ax"], b["ay"], b["angle"], b["w"], 11, pad=0) for b in boxes]
        # Inside the plot from top to bottom: the legend above it stays clear.
        assert all(g["top"] - 1 <= cy <= g["bottom"] + 1 for r in rects for _, cy in r), boxes
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                assert not overlap(rects[i], rects[j]), (boxes[i], boxes[j])
        shoot(page, tmp_path, "dashboard-outlier.png", full_page=False)

        # The table sorts from the keyboard: its headers are buttons that announce the order.
        header = "#experiments th[data-key='objective']"
        page.focus(header + " button")
        page.keyboard.press("Enter")
        assert page.get_attribute(header, "aria-sort") == "ascending"
        cells = page.locator("#experiments tbody td:nth-child(3)").all_inner_texts()
        values = [float(v) for v in cells]
        assert values == sorted(values)
        page.keyboard.press(" ")
        assert page.get_attribute(header, "aria-sort") == "descending"
        values = [float(v) for v in page.locator("#experiments tbody td:nth-child(3)").all_inner_texts()]
        assert values == sorted(values, reverse=True)
        assert page.get_attribute("#experiments th[data-key='seq']", "aria-sort") == "none"

        # A narrow window scrolls the table inside its card; the page itself never widens.
        page.set_viewport_size({"width": 820, "height": 1000})
        # Waited for, not a fixed 300 ms: the chart follows the new width on a later frame.
        wait_until(page, "document.documentElement.scrollWidth - innerWidth === 0")
        shoot(page, tmp_path, "dashboard-820px.png")
    assert page.errors == []


def test_review_in_the_table_and_the_drawer(page: Any, reviewed_ro: Reviewed,
                                            tmp_path: Path) -> None:
    """A keep the review gate blocked is marked in the table (and has a filter); its drawer shows
    the review: the counts, the findings by colour, each expandable to its explanation and code."""
    ids = reviewed_ro.ids
    row = lambda exp_id: page.locator(f"#experiments tbody tr[data-id='{exp_id}']")  # noqa: E731
    with serve(reviewed_ro.repo, reviewed_ro.tag) as url:
        page.goto(url + "/")
        shows_experiments(page, len(ids))
        blocked = row(ids[BLOCKED])
        assert blocked.locator(".badge.discard").inner_text() == "discard"
        assert blocked.locator(".badge.review-blocked").inner_text() == "blocked by review"
        assert "review: 1 red — blocked the keep" in (
            blocked.locator(".badge.review-blocked").get_attribute("title") or "")
        assert page.locator("#experiments .badge.review-blocked").count() == 1
        assert row(ids[KEPT_YELLOW]).locator(".review-mark").inner_text() == "1 yellow"
        assert row(ids[KEPT_CLEAN]).locator(".review-mark").inner_text() == "reviewed"
        assert row(ids[NOT_REVIEWED]).locator(".review-mark, .review-blocked").count() == 0

        # The filter beside the statuses shows the blocked keeps alone.
        chip = page.locator("button.chip[data-status='blocked by review']")
        assert chip.locator(".n").inner_text() == "1"
        chip.click()
        assert page.locator("#experiments tbody tr").count() == 1
        assert page.locator("#experiments tbody tr").get_attribute("data-id") == ids[BLOCKED]
        shoot(page, tmp_path, "dashboard-review-filter.png", full_page=False)

        # The drawer: the headline, the red group, the finding with its place and title.
        page.locator("#experiments tbody tr").click()
        page.wait_for_selector("#detail .review")
        review = page.locator("#detail .review")
        assert review.locator(".review-head").inner_text() == "review: 1 red — blocked the keep"
        assert "blocked" in (review.get_attribute("class") or "")
        finding = review.locator(".review-group.red details.finding")
        assert finding.count() == 1
        assert review.locator(".review-group.red .group-title").text_content() == \
            "red: fix before merge (1)"  # shown in capitals by the style
        summary = finding.locator("summary").inner_text()
        assert "train.py:11" in summary and "shell=True" in summary
        assert "blocked the keep" in summary
        # The explanation and the code open on a click.
        evidence = finding.locator("pre.evidence")
        assert evidence.is_hidden()
        finding.locator("summary").click()
        assert evidence.is_visible()
        assert 'subprocess.run(f"logger {msg}", shell=True)' in evidence.inner_text()
        assert evidence.inner_text().lstrip().startswith("11")
        assert "B602" in finding.locator(".fbody").inner_text()
        assert "bandit B602" in finding.locator(".fmeta").inner_text()
        assert "reviewers: ruff, bandit, history" in review.locator(".review-cost").inner_text()
        # The review sits between the decision and the diff.
        order = page.evaluate("""() => {
            const body = document.getElementById('detail-body');
            const all = Array.from(body.querySelectorAll('.reason, .review, pre.diff'));
            return all.map((e) => e.classList.contains('review') ? 'review'
                : e.classList.contains('reason') ? 'decision' : 'diff');
        }""")
        assert order == ["decision", "review", "diff"]
        shoot(page, tmp_path, "dashboard-review-drawer.png", full_page=False)
        page.keyboard.press("Escape")

        # A kept change's review: a yellow finding, not blocking; an unreviewed one: no review.
        page.click("button.chip[data-status='all']")
        row(ids[KEPT_YELLOW]).click()
        page.wait_for_selector(f"#detail-id:text('{ids[KEPT_YELLOW]}')")
        page.wait_for_selector("#detail .review")
        review = page.locator("#detail .review")
        assert review.locator(".review-head").inner_text() == "review: 1 yellow"
        assert "blocked" not in (review.get_attribute("class") or "")
        assert "data.py:6" in review.locator(".review-group.yellow summary").inner_text()
        assert review.locator(".review-group.red, .badge.review-blocked").count() == 0
        page.keyboard.press("Escape")
        row(ids[NOT_REVIEWED]).click()
        page.wait_for_selector("#detail pre.diff")
        assert page.locator("#detail-id").inner_text() == ids[NOT_REVIEWED]
        assert page.locator("#detail .review").count() == 0
    assert page.errors == []


def test_a_review_recorded_later_appears_without_reload(page: Any, tmp_path: Path) -> None:
    """The gate may record its review after the experiment's verdict: the open page still shows
    it (the stream's change marker and the experiment's version both move)."""
    built = build_session(tmp_path / "repo", tag="late", plan=PLAN[:2])
    exp = built.experiments[1]
    assert exp.hypothesis == BLOCKED and exp.parent_commit and exp.commit_sha
    with serve(built.repo, "late") as url:
        page.goto(url + "/")
        shows_experiments(page, 1 + 2)  # the baseline and two candidates
        assert page.locator("#experiments .badge.review-blocked").count() == 0
        page.evaluate("window.__sameDocument = true")
        result = review_candidate(built.repo, exp.parent_commit, exp.commit_sha,
                                  ReviewConfig(gate="red"), env={})
        record_gate(built.ledger, result, session_id=exp.session_id, experiment_id=exp.id)
        wait_until(page, "document.querySelectorAll('#experiments .badge.review-blocked')"
                   ".length === 1", 15)
        assert page.evaluate("window.__sameDocument") is True
        assert page.locator("button.chip[data-status='blocked by review']").count() == 1
    assert page.errors == []


def test_the_spend_tile_says_model_calls_and_machine_time(page: Any, tmp_path: Path) -> None:
    """With [limits] compute_usd_per_hour the spend is both parts, against the one budget."""
    built = build_session(tmp_path / "repo", max_usd=50.0, compute_usd_per_hour=3.0)
    built.ledger.close()
    with serve(built.repo, "demo") as url:
        page.goto(url + "/")
        wait_until(page, "document.getElementById('spend-sub').textContent.includes('/h')")
        sub = page.locator("#spend-sub").inner_text()
        assert sub.startswith("of $50.00 budget") and "on model calls + $" in sub, sub
        assert " of machine time at $3/h" in sub and "0.00 h" not in sub, sub
    assert page.errors == []
