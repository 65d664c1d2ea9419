"""Proposer faults while a crash is being repaired, end to end against the fake model server.

An outage during a repair is waited out like one during a proposal (nothing is lost). A fatal
error (an invalid key) during a repair stops the session with its message, but only after the
crashed experiment is closed: recorded as the crash it is, its commit parked, its usage billed,
the worktree back on the incumbent.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from tests.conftest import git, run_cli
from tests.llm.conftest import use_fake_model
from tests.llm.fake_server import FakeModelServer, Recorded, Reply

CRASHING = ("HYPOTHESIS: X = 6.5 with a crash flag\ntarget.py\n<<<<<<< SEARCH\nX = 3.0\n=======\n"
            "X = 6.5\nCRASH = True\n>>>>>>> REPLACE\n")
FIX = ("HYPOTHESIS: drop the crash flag\ntarget.py\n<<<<<<< SEARCH\nCRASH = True\n=======\n"
       ">>>>>>> REPLACE\n")


class Model:
    """Proposes a crashing change; answers repair requests from a script of replies."""

    def __init__(self, repairs: list[Reply]) -> None:
        self.lock = threading.Lock()
        self.repairs = repairs
        self.kinds: list[str] = []

    def __call__(self, request: Recorded) -> Reply:
        with self.lock:
            if "## Repair a crash" in request.prompt_text():
                self.kinds.append("repair")
                return self.repairs.pop(0)
            self.kinds.append("propose")
            return Reply(text=CRASHING)


def ledger(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.slow
def test_an_outage_during_a_repair_is_waited_out(toy_repo: Path) -> None:
    busy = Reply(status=503, error="overloaded", headers={"retry-after": "0.2"})
    model = Model([busy, busy, Reply(text=FIX)])  # two calls fail: one outage, then the fix
    with FakeModelServer(handler=model) as server:
        use_fake_model(toy_repo, server, max_retries=1)
        result = run_cli(toy_repo, "run", "--tag", "r", "--iterations", "2", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert model.kinds == ["propose", "repair", "repair", "repair"]
    exps = ledger(toy_repo, "SELECT status, attempts FROM experiments ORDER BY seq")
    assert exps == [("keep", 1), ("keep", 2)]  # the repair was not given up
    events = ledger(toy_repo, "SELECT kind, experiment_id FROM events WHERE kind = 'outage'")
    assert events == [("outage", "r-0002")]
    assert ledger(toy_repo, "SELECT status FROM sessions") == [("finished",)]
    assert git(toy_repo, "show", "autoresearch/r:target.py") == "X = 6.5"


@pytest.mark.slow
def test_a_fatal_error_during_a_repair_closes_the_crash_then_stops(toy_repo: Path) -> None:
    malformed = Reply(text="HYPOTHESIS: fix it\nno edit blocks at all\n", input_tokens=700)
    invalid_key = Reply(status=401, error="invalid x-api-key")
    model = Model([malformed, invalid_key])
    with FakeModelServer(handler=model) as server:
        use_fake_model(toy_repo, server, max_retries=1)
        result = run_cli(toy_repo, "run", "--tag", "f", "--iterations", "5", timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 5, output
    assert "refused the API key" in output and "Traceback" not in output
    assert model.kinds == ["propose", "repair", "repair"]
    # The crashed experiment is closed as the crash it is, not left running.
    (status, reason, commit), = ledger(toy_repo, "SELECT status, decision_reason, commit_sha "
                                       "FROM experiments WHERE id = 'f-0002'")
    assert status == "crash" and "exit code 3" in str(reason)
    assert "the repair stopped" in str(reason) and "refused the API key" in str(reason)
    # Its commit is parked and the worktree is back on the incumbent, clean.
    assert git(toy_repo, "rev-parse", "refs/autoresearch/f/discarded/f-0002") == commit
    worktree = toy_repo / ".autoresearch" / "worktrees" / "f"
    assert git(worktree, "rev-parse", "HEAD") == git(toy_repo, "rev-parse", "autoresearch/f")
    assert (worktree / "target.py").read_text() == "X = 3.0\n"
    assert git(worktree, "status", "--porcelain") == ""
    # Every call that produced tokens is billed to it, the repair's malformed reply included.
    usage = ledger(toy_repo, "SELECT experiment_id, purpose, input_tokens FROM usage ORDER BY id")
    assert usage == [("f-0002", "propose", 1200), ("f-0002", "repair", 700)]
    assert ledger(toy_repo, "SELECT status FROM sessions") == [("stopped",)]
    # A resume starts from a consistent state: nothing open, nothing to recover.
    assert ledger(toy_repo, "SELECT COUNT(*) FROM experiments WHERE status IN "
                  "('proposed', 'running')") == [(0,)]


@pytest.mark.slow
def test_an_outage_longer_than_the_time_left_ends_the_session_in_time(toy_repo: Path) -> None:
    import time

    down = Reply(status=503, error="overloaded", headers={"retry-after": "3600"})
    with FakeModelServer(handler=lambda request: down) as server:
        use_fake_model(toy_repo, server, max_retries=1)
        started = time.monotonic()
        result = run_cli(toy_repo, "run", "--tag", "o", "--until", "60s", timeout=120)
        took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert took < 50  # not an hour's wait past a one-minute limit
    assert "the time limit was reached while the proposer was unavailable" in " ".join(output.split())
    (status, reason), = ledger(toy_repo, "SELECT status, decision_reason FROM experiments "
                               "WHERE id = 'o-0002'")
    assert status == "interrupted" and "time limit" in str(reason)


@pytest.mark.slow
def test_no_repair_is_asked_for_once_the_spending_limit_is_reached(toy_repo: Path) -> None:
    model = Model([Reply(text=FIX)])
    expensive = Reply(text=CRASHING, input_tokens=400_000)  # $1.20 at $3 per million
    with FakeModelServer(handler=lambda r: expensive if "## Repair" not in r.prompt_text()
                         else model(r)) as server:
        use_fake_model(toy_repo, server, max_retries=1)
        config = toy_repo / "autoresearch.toml"
        config.write_text(config.read_text() + "\n[limits]\nmax_usd = 1.0\n")
        git(toy_repo, "commit", "-qam", "a spending limit")
        result = run_cli(toy_repo, "run", "--tag", "s", "--iterations", "5", timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert model.kinds == []  # the crash was not sent back for a (billed) repair
    assert ledger(toy_repo, "SELECT status FROM experiments ORDER BY seq") == [("keep",), ("crash",)]
    events = ledger(toy_repo, "SELECT message FROM events WHERE kind = 'repair'")
    assert events and ("no repair asked for: the spending limit is reached: spent $1.2045 of the "
                   "$1.00 budget ([limits] max_usd)") in str(events[0][0])
    assert "spent $1.2045 of the $1.00 budget" in " ".join(output.split())
