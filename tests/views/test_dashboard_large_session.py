"""The dashboard over a session of thousands of experiments (written straight to the ledger).

A live update must cost what changed, not the size of the session: the table keeps at most
TABLE_LIMIT rows in the page (the rest a click away), adds the row of a new experiment without
rebuilding the others, and the chart is redrawn only when its data changed, at most about once a
second. The list the page loads carries each experiment's table row, not its long texts: the
drawer fetches those.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from autoresearch.dashboard.app import create_app
from autoresearch.views.live import LIST_HYPOTHESIS_CHARS
from tests.views.conftest import CHROMIUM, serve
from tests.views.large_session import (
    BEST_SEQ,
    REJECTED_SEQ,
    add_large_experiment,
    build_large_session,
    long_reason,
)

N = 2000
TABLE_LIMIT = 300          # app.js
REASON_CHARS = 700
# A table row as sent (compact UTF-8 JSON): its id, numbers, status, review mark and a
# hypothesis of at most LIST_HYPOTHESIS_CHARS characters. The whole record was 5.8 KB here.
ROW_BYTES = 300 + LIST_HYPOTHESIS_CHARS


def sent_bytes(value: Any) -> int:
    """The size of `value` as the server sends it (Starlette's JSONResponse)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())



def test_the_list_leaves_the_long_texts_to_the_drawer(tmp_path: Path) -> None:
    ledger, session, rng, value = build_large_session(tmp_path / "repo", 40,
                                                      reason_chars=5000)
    # A hypothesis of many lines, the first one far longer than a table row shows.
    exp, _ = add_large_experiment(ledger, session, rng, value, 5000)
    ledger.close()
    db = sqlite3.connect(tmp_path / "repo" / ".autoresearch" / "ledger.db")
    with db:
        db.execute("UPDATE experiments SET hypothesis = ? WHERE id = ?",
                   ("w" * 3000 + "\nsecond line\n" + "more " * 500, exp.id))
    db.close()
    client = TestClient(create_app(tmp_path / "repo", "big", None),
                        base_url="http://127.0.0.1")
    resp = client.get("/api/session?tag=big")
    data = resp.json()
    assert data["count"] == len(data["experiments"]) == 41
    for row in data["experiments"]:
        for long_field in ("decision_reason", "rationale", "run_values", "files"):
            assert long_field not in row, long_field
        assert sent_bytes(row) <= ROW_BYTES, row
    (cut,) = [r for r in data["experiments"] if r["id"] == exp.id]
    assert cut["hypothesis"] == "w" * (LIST_HYPOTHESIS_CHARS - 1) + "…"
    # The whole first load stays small: the experiments are most of it.
    assert sent_bytes(data["experiments"]) <= 41 * ROW_BYTES
    assert len(resp.content) <= 41 * ROW_BYTES + 20_000
    # The drawer's record is whole.
    whole = client.get(f"/api/experiment/{exp.id}").json()
    assert whole["experiment"]["decision_reason"] == long_reason(exp.seq, 5000)
    assert whole["experiment"]["hypothesis"].endswith("more ")
    assert whole["rationale"].startswith("Because the loss curve flattens early.")
    # An update sends the same rows.
    update = client.get(f"/api/session?tag=big&since={data['stamp'] - 1}").json()
    assert [r["id"] for r in update["experiments"]] == [exp.id]
    assert update["experiments"][0] == cut


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running session of N experiments; the live test adds more."""
    built = build_large_session(tmp_path_factory.mktemp("large") / "repo", N,
                                reason_chars=REASON_CHARS)
    yield built
    built[0].close()


def wait_until(pg: Any, expression: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pg.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for: {expression}"
        time.sleep(0.05)


def table_ids(pg: Any) -> list[str]:
    ids: list[str] = pg.evaluate(
        "Array.from(document.querySelectorAll('#experiments tbody tr'), (tr) => tr.dataset.id)")
    return ids


CHART_POINTS = ("Chart.getChart('progress').data.datasets.slice(1)"
                ".reduce((s, d) => s + d.data.length, 0)")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                    "/usr/bin/chromium (apt-get install -y chromium)")
def test_a_large_session_updates_in_place(page: Any, large: Any) -> None:
    ledger, session, rng, value = large
    tag = session.tag
    count = ledger.experiment_count(session.id)
    measured = lambda: sum(1 for e in ledger.experiments(session.id)  # noqa: E731
                           if e.objective is not None)
    with serve(ledger.path.parent.parent, tag) as url:
        page.goto(url + "/")
        wait_until(page, f"document.body.dataset.experiments === '{count}'", 60)

        # Bounded: the newest TABLE_LIMIT rows, in id order, and a control for the rest.
        ids = table_ids(page)
        assert len(ids) == TABLE_LIMIT
        assert ids == [f"{tag}-{s:04d}" for s in range(count - TABLE_LIMIT + 1, count + 1)]
        assert page.inner_text("#table-more-toggle") == f"show all {count:,}"
        assert f"newest {TABLE_LIMIT} of {count:,}" in page.inner_text("#table-more-text")
        assert page.evaluate("document.getElementsByTagName('*').length") < 6000
        assert page.evaluate(CHART_POINTS) == measured()   # the chart has every experiment

        # A new experiment: its row is added, every other row element stays the same one, and
        # the oldest shown row leaves (the table stays bounded).
        page.evaluate("""() => { window.__renders = [];
            const draw = window.renderChart;
            window.renderChart = (c) => { window.__renders.push(performance.now()); draw(c); };
            document.querySelectorAll('#experiments tbody tr').forEach((tr) => { tr.__old = true; }); }""")
        new, value = add_large_experiment(ledger, session, rng, value, REASON_CHARS,
                                          status="discard")
        count += 1
        wait_until(page, f"document.body.dataset.experiments === '{count}'")
        ids = table_ids(page)
        assert len(ids) == TABLE_LIMIT and ids[-1] == new.id
        kept = page.evaluate("Array.from(document.querySelectorAll('#experiments tbody tr'), "
                             "(tr) => tr.__old === true)")
        assert kept == [True] * (TABLE_LIMIT - 1) + [False]
        wait_until(page, f"{CHART_POINTS} === {measured()}")

        # Updates in quick succession are drawn on the chart together: at most about one
        # redraw a second, and none when nothing the chart shows changed.
        for _ in range(6):
            _, value = add_large_experiment(ledger, session, rng, value, REASON_CHARS,
                                            status="discard")
            time.sleep(0.25)
        count += 6
        wait_until(page, f"document.body.dataset.experiments === '{count}'")
        wait_until(page, f"{CHART_POINTS} === {measured()}", 5)
        times = page.evaluate("window.__renders")
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert times and all(g >= 900 for g in gaps), times
        page.evaluate("window.__renders = []")
        page.evaluate("state.source.close()")   # from here on, updates are asked for by hand
        page.evaluate("refresh()")
        time.sleep(1.5)
        assert page.evaluate("window.__renders") == []   # nothing changed: no redraw

        # Sorting and filtering go over every experiment, not only the rows shown.
        page.click("#experiments th[data-key='objective']")
        best = f"{tag}-{BEST_SEQ:04d}"
        assert table_ids(page)[0] == best
        assert len(table_ids(page)) == TABLE_LIMIT
        assert f"first {TABLE_LIMIT} of {count:,}" in page.inner_text("#table-more-text")
        page.click("button.chip[data-status='rejected']")
        assert table_ids(page) == [f"{tag}-{REJECTED_SEQ:04d}"]
        assert page.locator("#table-more").is_hidden()
        page.click("button.chip[data-status='all']")

        # The drawer fetches the whole record: the full decision reason.
        page.click(f"#experiments tbody tr[data-id='{best}']")
        wait_until(page, f"document.getElementById('detail-id').textContent === '{best}'"
                   " && document.querySelector('#detail-body .reason') !== null")
        reason = page.inner_text("#detail-body .reason")
        assert long_reason(BEST_SEQ, REASON_CHARS) in reason
        page.keyboard.press("Escape")

        # Every row is a click away, and back.
        page.click("#experiments th[data-key='seq']")
        page.click("#table-more-toggle")
        assert len(table_ids(page)) == count
        assert page.inner_text("#table-more-toggle") == f"show the newest {TABLE_LIMIT} only"
        page.click("#table-more-toggle")
        assert len(table_ids(page)) == TABLE_LIMIT
    assert page.errors == []
