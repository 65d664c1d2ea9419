"""The dashboard's HTTP surface: JSON API, access control, read-only-ness, offline assets, SSE."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from autoresearch.dashboard.app import STATIC_DIR, create_app
from autoresearch.views.live import LIST_FIELDS
from autoresearch.views.summary import build_view, open_ledger, resolve_session, view_to_json
from tests.views.conftest import serve
from tests.views.ledger_factory import BuiltSession, Planned, add_experiment

TOKEN = "s3cret-token-for-tests"


def client(repo: Path, token: str | None = None, host: str = "127.0.0.1") -> TestClient:
    return TestClient(create_app(repo, None, token), base_url=f"http://{host}")


def test_session_json_is_the_shared_view(demo_ro: BuiltSession) -> None:
    c = client(demo_ro.repo)
    got = c.get("/api/session").json()
    ledger = open_ledger(demo_ro.repo)
    want = view_to_json(build_view(ledger, resolve_session(ledger, None)))
    # Everything but the clock of the elapsed time is identical.
    for part in ("chart", "confidence"):
        assert got[part] == want[part]
    # Each experiment is its table row: the shared view's values of the fields the table shows
    # (the drawer fetches the rest, the decision reason among them, from /api/experiment/{id}).
    assert [e["id"] for e in got["experiments"]] == [e["id"] for e in want["experiments"]]
    for row, whole in zip(got["experiments"], want["experiments"], strict=True):
        assert row == {k: whole[k] for k in LIST_FIELDS}
    assert got["summary"]["counts"] == want["summary"]["counts"]
    sessions = c.get("/api/sessions").json()
    assert sessions["default"] == demo_ro.tag and [s["tag"] for s in sessions["sessions"]] == ["demo"]
    assert c.get("/api/session?tag=unknown").status_code == 404
    assert "known tags: demo" in c.get("/api/session?tag=unknown").json()["fix"]


def test_experiment_detail(demo_ro: BuiltSession) -> None:
    c = client(demo_ro.repo)
    crashed = next(e for e in demo_ro.experiments if e.status == "crash")
    d = c.get(f"/api/experiment/{crashed.id}").json()
    assert "+DTYPE = 'bfloat16'" in d["diff"]  # a crashed commit's diff, kept under refs/
    assert "TypeError" in d["log_tail"]
    assert d["experiment"]["decision_reason"].startswith("the verify command exited")
    assert c.get("/api/experiment/does-not-exist").status_code == 404


def test_read_only_and_hardened(demo_ro: BuiltSession) -> None:
    c = client(demo_ro.repo)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert c.request(method, "/api/session").status_code == 405
    page = c.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    # DNS rebinding: without a token only loopback host names are answered.
    assert client(demo_ro.repo, host="evil.example").get("/").status_code == 403
    assert client(demo_ro.repo, host="localhost").get("/").status_code == 200


def test_any_loopback_spelling_is_answered_without_a_token(demo_ro: BuiltSession) -> None:
    for host in ("127.0.0.2", "127.9.8.7:8765", "[0:0:0:0:0:0:0:1]:8765", "[::1]", "[::ffff:127.0.0.2]",
                 "LOCALHOST:8765"):
        assert client(demo_ro.repo, host=host).get("/api/session").status_code == 200, host
    # A DNS name is never trusted, whatever it looks like (it could resolve anywhere).
    for host in ("evil.example", "127.0.0.1.evil.example", "localhost.evil.example", "[::2]",
                 "128.0.0.1", "0.0.0.0"):
        assert client(demo_ro.repo, host=host).get("/api/session").status_code == 403, host


def test_token_is_required_on_every_request(demo_ro: BuiltSession) -> None:
    c = client(demo_ro.repo, token=TOKEN)
    for path in ("/", "/api/session", "/api/stream", "/static/app.js",
                 "/static/vendor/chart.umd.min.js"):
        assert c.get(path).status_code == 401, path
    assert c.get("/api/session", params={"token": "wrong"}).status_code == 401
    assert c.get("/api/session", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get("/api/session", headers={"X-Autoresearch-Token": TOKEN}).status_code == 200
    # The first load carries ?token=; the answer sets a cookie the page's later requests reuse.
    first = c.get("/", params={"token": TOKEN})
    assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
    assert TOKEN not in first.headers["set-cookie"]  # a digest, not the token itself
    assert c.get("/api/session").status_code == 200
    c.cookies.clear()
    assert c.get("/api/session").status_code == 401


def test_page_works_offline(demo_ro: BuiltSession) -> None:
    """No CDN: every script, style and font comes from the package itself."""
    c = client(demo_ro.repo)
    html = c.get("/").text
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(not r.startswith(("http:", "https:", "//")) for r in refs), refs
    for ref in refs:
        if not ref.startswith("data:"):
            assert c.get("/" + ref).status_code == 200, ref
    for script in STATIC_DIR.glob("*.js"):  # our own code (the vendored library has its URL)
        text = script.read_text()
        assert "http://" not in text and "https://" not in text, script.name
    vendor = c.get("/static/vendor/chart.umd.min.js")
    assert vendor.status_code == 200 and "Chart.js v4" in vendor.text[:200]
    notes = (STATIC_DIR / "vendor" / "README.md").read_text()
    assert "MIT" in notes and "4." in notes


def _next_update(lines: object, deadline: float) -> str:
    for line in lines:  # type: ignore[attr-defined]
        if line.startswith("data:"):
            return str(line)
        assert time.monotonic() < deadline, "no update event in time"
    raise AssertionError("stream ended")


@pytest.mark.slow
def test_stream_pushes_an_update_when_an_experiment_finishes(demo: BuiltSession) -> None:
    with serve(demo.repo, poll_interval_s=0.1) as url, httpx.stream(
            "GET", url + "/api/stream", timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        first = _next_update(lines, time.monotonic() + 5)
        add_experiment(demo, Planned("a late idea", "discard", [9.5], {"README.md": "late\n"}))
        second = _next_update(lines, time.monotonic() + 5)
        assert first != second


@pytest.mark.slow
def test_stream_pushes_an_update_when_the_session_process_dies(demo: BuiltSession) -> None:
    """A run killed with SIGKILL writes nothing to the ledger; the page must still be told, or
    it keeps saying "running" and ticking its clock forever."""
    import subprocess
    import sys

    from autoresearch.state import StatePaths

    demo.ledger.set_session_status(demo.session.id, "running")
    lock = StatePaths(demo.repo, demo.session.tag).lock
    # The session lock is an flock held by the live process: a stand-in takes it as a session.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from autoresearch.state import SessionLock; "
                               "SessionLock(Path(sys.argv[1])).acquire(); print('held', flush=True); "
                               "time.sleep(60)", str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with serve(demo.repo, poll_interval_s=0.1) as url, httpx.stream(
                "GET", url + "/api/stream", timeout=10) as resp:
            lines = resp.iter_lines()
            _next_update(lines, time.monotonic() + 5)
            assert httpx.get(url + "/api/session").json()["summary"]["live"] is True
            holder.kill()
            holder.wait()
            _next_update(lines, time.monotonic() + 5)
            summary = httpx.get(url + "/api/session").json()["summary"]
            assert summary["live"] is False and summary["process_gone"] is True
    finally:
        holder.kill()
        holder.wait()


def test_updates_send_only_what_changed(demo: BuiltSession) -> None:
    """After the first answer, the page asks with its stamp and gets only the news."""
    c = client(demo.repo)
    first = c.get("/api/session").json()
    assert first["full"] and first["count"] == len(first["experiments"]) == len(demo.experiments)
    stamp = first["stamp"]
    rng = first["chart"]["y_min"], first["chart"]["y_max"]
    query = f"/api/session?since={stamp}" + (f"&range={rng[0]},{rng[1]}" if rng[0] is not None
                                             else "")
    idle = c.get(query).json()
    assert not idle["full"] and idle["experiments"] == [] and idle["chart"]["points"] == []
    assert idle["stamp"] == stamp and idle["count"] == first["count"]
    # A new experiment: it alone comes back, with its chart point, and the counts move.
    new = add_experiment(demo, Planned("a new idea", "discard", [9.0, 9.1],
                                       {"README.md": "# toy\n\nNew.\n"}))
    news = c.get(query).json()
    assert [e["id"] for e in news["experiments"]] == [new.id]
    assert [p["exp_id"] for p in news["chart"]["points"]] == [new.id]
    assert news["stamp"] > stamp and news["count"] == first["count"] + 1
    assert news["summary"]["counts"]["discard"] == first["summary"]["counts"]["discard"] + 1
    # A write to an old experiment (any column, by any code path) makes it news too.
    old = demo.experiments[1]
    demo.ledger.finish_experiment(old.id, status=old.status, reason="re-judged",
                                  finished_at=old.finished_at)
    again = c.get(f"/api/session?since={news['stamp']}").json()
    assert [e["id"] for e in again["experiments"]] == [old.id]
    assert c.get(f"/api/experiment/{old.id}").json()["experiment"]["decision_reason"] == "re-judged"
    # A page whose range differs from the session's gets every point (they depend on it).
    moved = c.get(f"/api/session?since={news['stamp']}&range=-1,1").json()
    assert moved["chart"]["points_full"] and len(moved["chart"]["points"]) == len(
        first["chart"]["points"]) + 1
    assert c.get("/api/session?since=nope").status_code == 400
