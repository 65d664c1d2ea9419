"""A view of a running session is read at one moment: the session records experiments while
`status`, `results --json` or the report read it, and a view composed from several queries must
not mix two moments (`results --json` failed with a KeyError on an experiment recorded between
its reads, 5 of 30 calls on a tester's live session)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from autoresearch.ledger import Ledger
from autoresearch.views.export import results_json
from autoresearch.views.summary import open_ledger, resolve_session
from tests.conftest import run_cli, use_script


def record_one_more(path: Path) -> None:
    """What a running session does between two reads: a new experiment (a copy of the last,
    renumbered), written by another connection."""
    with sqlite3.connect(path) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(experiments)")]
        last = conn.execute("SELECT id, seq FROM experiments ORDER BY seq DESC LIMIT 1").fetchone()
        picked = ", ".join({"id": "?", "seq": "?"}.get(c, c) for c in columns)
        conn.execute(f"INSERT INTO experiments ({', '.join(columns)}) SELECT {picked} "
                     "FROM experiments WHERE id = ?", (f"{last[0]}-x", last[1] + 1, last[0]))


@pytest.fixture
def session(toy_repo: Path) -> Path:
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    result = run_cli(toy_repo, "run", "--tag", "t", "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    return toy_repo


def test_results_json_reads_the_session_at_one_moment(session: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = open_ledger(session)
    row = resolve_session(ledger, "t")
    real = Ledger.session_runs
    calls = []

    def runs_then_a_new_experiment(self: Ledger, session_id: int):  # type: ignore[no-untyped-def]
        found = real(self, session_id)
        if not calls:  # the session records one, between the view's reads and the export's
            record_one_more(ledger.path)
        calls.append(1)
        return found

    monkeypatch.setattr(Ledger, "session_runs", runs_then_a_new_experiment)
    data = results_json(ledger, row)
    assert [e["id"] for e in data["experiments"]] == ["t-0001", "t-0002"]
    ledger.close()
    # Read again, the new one is there: the snapshot ended with the export.
    again = open_ledger(session)
    assert [e["id"] for e in results_json(again, resolve_session(again, "t"))["experiments"]] == [
        "t-0001", "t-0002", "t-0002-x"]
    again.close()


def test_a_snapshot_sees_nothing_written_after_it_began(session: Path) -> None:
    ledger = open_ledger(session)
    row = resolve_session(ledger, "t")
    with ledger.snapshot():
        before = [e.id for e in ledger.experiments(row.id)]
        record_one_more(ledger.path)
        with ledger.snapshot():  # nested: the same moment
            assert [e.id for e in ledger.experiments(row.id)] == before
    assert [e.id for e in ledger.experiments(row.id)] == [*before, "t-0002-x"]
    ledger.close()
