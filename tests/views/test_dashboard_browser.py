"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

The ledgers come from real sessions (`autoresearch run` in a temporary repository); the live test
resumes that session while the page is open and waits for the new experiments to appear.
Screenshots are written to the test's tmp dir and copied to test-artifacts/ at the repo root.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoresearch.ledger import Ledger
from tests.views.conftest import ARTIFACTS, autoresearch, run_toy_session, serve
from tests.views.ledger_factory import BuiltSession

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "browser-test-token-123"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                       "/usr/bin/chromium (apt-get install -y chromium)"),
]

POINT_DATASETS = ("baseline", "kept", "discarded")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def live_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own real session: the live test resumes it."""
    return run_toy_session(tmp_path_factory.mktemp("browser") / "repo", iterations=8)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.errors = errors
    yield pg
    context.close()


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


def wait_until(pg: Any, expression: str, timeout_s: float = 10.0) -> None:
    """Poll a JS expression from Python.

    Playwright's wait_for_function evaluates its predicate with eval inside the page, which the
    dashboard's Content-Security-Policy forbids (on purpose); page.evaluate is not subject to it.
    """
    deadline = time.monotonic() + timeout_s
    while not pg.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for: {expression}"
        time.sleep(0.05)


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
        wait_until(page, f"document.body.dataset.experiments === '{n}'")
        drawn = drawn_points(page)
        assert sum(drawn[k] for k in POINT_DATASETS) == measured
        assert drawn["kept"] == kept and drawn["baseline"] == 1
        assert page.locator("#experiments tbody tr").count() == n
        assert page.locator("#live.on").count() == 1  # the event stream is connected

        # Filtering by status.
        discarded = page.locator("#experiments .badge.discard").count()
        page.click("button.chip[data-status='discard']")
        assert page.locator("#experiments tbody tr").count() == discarded
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


def test_new_experiments_appear_without_reload(page: Any, live_repo: Path, tmp_path: Path) -> None:
    n, _, _ = ledger_counts(live_repo)
    with serve(live_repo) as url:
        page.goto(url + "/")
        wait_until(page, f"document.body.dataset.experiments === '{n}'")
        page.evaluate("window.__sameDocument = true")
        # Resume the real session for two more experiments while the page is open.
        proc = autoresearch(live_repo, "run", "--iterations", str(n + 2), "--tag", "t")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        wait_until(page, f"document.body.dataset.experiments === '{n + 2}'", 10)
        assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
        _, measured, kept = ledger_counts(live_repo)
        wait_until(page,
            "Chart.getChart('progress').data.datasets.slice(1)"
            f".reduce((s, d) => s + d.data.length, 0) === {measured}", 5)
        drawn = drawn_points(page)
        assert sum(drawn[k] for k in POINT_DATASETS) == measured and drawn["kept"] == kept
        assert page.locator("#experiments tbody tr.fresh").count() >= 1  # the new rows flash
        shoot(page, tmp_path, "dashboard-live.png")
    assert page.errors == []


def test_token_is_required(browser: Any, page: Any, demo_ro: BuiltSession,
                           tmp_path: Path) -> None:
    with serve(demo_ro.repo, token=TOKEN) as url:
        refused = page.goto(url + "/")
        assert refused is not None and refused.status == 401
        assert "access token" in page.content()
        ok = page.goto(url + f"/?token={TOKEN}")
        assert ok is not None and ok.status == 200
        wait_until(page, "document.body.dataset.experiments === '11'")
        assert "token" not in page.url  # dropped from the address bar once the cookie is set
        page.wait_for_selector("#live.on")  # the event stream got through with the cookie
        drawn = drawn_points(page)
        assert sum(drawn[k] for k in POINT_DATASETS) == 8 and drawn["kept"] == 5
        assert page.locator("#confidence.green").count() == 1
        tip = page.locator("#conf-tip")
        page.hover("#confidence")
        assert tip.is_visible() and "noise floor" in tip.inner_text()
        shoot(page, tmp_path, "dashboard-demo.png")
        # Another browser context has no cookie: refused again.
        other = browser.new_context()
        try:
            assert other.request.get(url + "/api/session").status == 401
        finally:
            other.close()
    assert page.errors == [] or all("401" in e for e in page.errors)
