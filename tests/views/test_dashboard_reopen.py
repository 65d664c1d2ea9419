"""A running dashboard follows the ledger file at its path when that file is replaced: the
damaged-ledger recovery puts another ledger.db there, and `.autoresearch` may be deleted and
made again by a new run. A real server on 127.0.0.1, asked over HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from tests.views.conftest import serve
from tests.views.ledger_factory import BuiltSession, Planned, build_session

PLAN = [Planned("only one idea", "keep", [9.0, 9.1], {"README.md": "# other\n"})]


def _ledger_file(built: BuiltSession) -> Path:
    """The session's ledger.db with everything in it (the WAL folded in), its writer closed."""
    built.ledger.checkpoint()
    built.ledger.close()
    return built.repo / ".autoresearch" / "ledger.db"


def _marker(url: str) -> str:
    """The first `update` event of the live stream: the ledger's change marker."""
    with httpx.stream("GET", f"{url}/api/stream", timeout=10) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: "):
                return line


def test_a_replaced_or_recreated_ledger_is_reopened(tmp_path: Path) -> None:
    served = build_session(tmp_path / "repo")  # tag demo, ten experiments after the baseline
    other = build_session(tmp_path / "other", tag="fresh", plan=PLAN)
    replacement = _ledger_file(other)
    ledger_db = _ledger_file(served)
    with serve(served.repo) as url:
        before = httpx.get(f"{url}/api/session").json()
        assert before["summary"]["tag"] == "demo" and before["count"] == 11
        marker_before = _marker(url)

        # The recovery steps: another ledger.db put in place of the served one.
        shutil.copyfile(replacement, ledger_db.with_name("incoming.db"))
        ledger_db.with_name("incoming.db").replace(ledger_db)
        sessions = httpx.get(f"{url}/api/sessions").json()
        assert [s["tag"] for s in sessions["sessions"]] == ["fresh"], sessions
        assert _marker(url) != marker_before
        # The page asks for what changed since its last stamp: a stamp from the old file gets
        # the whole new session, not a delta read against the wrong versions.
        after = httpx.get(f"{url}/api/session", params={"since": before["stamp"]}).json()
        assert after["full"] and after["summary"]["tag"] == "fresh" and after["count"] == 2
        assert len(after["experiments"]) == 2
        detail = httpx.get(f"{url}/api/experiment/fresh-0002")
        assert detail.status_code == 200 and detail.json()["experiment"]["hypothesis"] == (
            "only one idea")

        # `.autoresearch` deleted: the page says so rather than showing the old file's data.
        shutil.move(served.repo / ".autoresearch", tmp_path / "moved-away")
        assert httpx.get(f"{url}/api/session").status_code == 404
        # ... and made again (here: the original ledger brought back).
        (served.repo / ".autoresearch").mkdir()
        shutil.copyfile(tmp_path / "moved-away" / "ledger.db", ledger_db)
        again = httpx.get(f"{url}/api/session", params={"since": after["stamp"]}).json()
        assert again["full"] and again["summary"]["tag"] == "fresh" and again["count"] == 2
