"""`--until` bounds the proposer's work too, end to end through the real CLI.

A model call may take `timeout_seconds` (300 s by default) per attempt and an agent run
`agent_timeout_seconds`: neither may carry the session past its time limit. The call or the run is
cut at the limit, the experiment it was for is recorded as interrupted by the time limit, and the
session ends as it would have between experiments (exit 0, nothing left running).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.llm.conftest import use_fake_agent, use_fake_model
from tests.llm.fake_server import FakeModelServer, Reply
from tests.support.processes import alive

UNTIL_S = 25  # the baseline's 3 runs of the toy take a few seconds of it


def experiments(repo: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        rows = conn.execute("SELECT id, status, decision_reason FROM experiments ORDER BY seq")
        return [(str(a), str(b), str(c)) for a, b, c in rows.fetchall()]


@pytest.mark.slow
def test_a_model_call_that_outlasts_the_time_left_is_cut_at_the_limit(toy_repo: Path) -> None:
    # A server that keeps sending a byte a second: each read is on time, the reply never ends.
    stalled = Reply(text="x" * 100_000, drip=1.0)
    with FakeModelServer(handler=lambda request: stalled) as server:
        use_fake_model(toy_repo, server, timeout_seconds=300, max_retries=3)
        started = time.monotonic()
        result = run_cli(toy_repo, "run", "--tag", "m", "--until", f"{UNTIL_S}s", timeout=200)
        took = time.monotonic() - started
        asked = len(server.requests)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, output
    assert took < UNTIL_S + 15, took  # the start-up's seconds, not 300 s a call
    assert "the time limit was reached while the proposer was at work" in output
    assert asked == 1  # cut, not retried
    (_, base, _), (eid, status, reason) = experiments(toy_repo)
    assert (base, eid, status) == ("keep", "m-0002", "interrupted")
    assert "time limit came during a call to the model" in reason, reason


@pytest.mark.slow
def test_an_agent_run_that_outlasts_the_time_left_is_stopped_at_the_limit(
        toy_repo: Path, tmp_path: Path) -> None:
    # The agent (and a child of it that ignores SIGTERM) would work for 10 minutes; its own
    # timeout allows that.
    env = use_fake_agent(toy_repo, tmp_path, "hang\n", timeout_s=900)
    started = time.monotonic()
    result = run_cli(toy_repo, "run", "--tag", "g", "--until", f"{UNTIL_S}s", env=env,
                     timeout=200)
    took = time.monotonic() - started
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, output
    assert took < UNTIL_S + 20, took
    assert "the time limit was reached while the proposer was at work" in output
    (_, base, _), (eid, status, reason) = experiments(toy_repo)
    assert (base, eid, status) == ("keep", "g-0002", "interrupted")
    assert "time limit came while the agent was at work" in reason, reason
    child = int(Path(env["FAKE_AGENT_PIDFILE"]).read_text())
    assert not alive(child), "the agent's child outlived the session"
    # Its half-written change is gone: the session branch and the worktree hold the incumbent.
    worktree = toy_repo / ".autoresearch" / "worktrees" / "g"
    assert "half-written" not in (worktree / "target.py").read_text()
