"""`autoresearch run` with the llm proposer when the endpoint misbehaves or the money runs out,
end to end: the real CLI as a subprocess, the real anthropic/openai SDKs, the fake server.

- A 200 reply that is not the API's (an HTML page, a cut-off JSON) is a pause, never a traceback.
- Every call is in the ledger as soon as it returns: a SIGTERM in the middle of an edit-retry
  conversation loses none of the calls already made, and the stop is named for its signal.
- The spending limit is checked before every call, so it is overshot by one call at most.
- `check` and `run` ask the endpoint before the baseline: a refused key, an unknown model or
  nothing listening is reported with where and how to fix it.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, git, run_cli
from tests.llm.conftest import use_fake_model
from tests.llm.fake_server import FakeModelServer, Recorded, Reply

GOOD = ("HYPOTHESIS: move X toward 7\ntarget.py\n<<<<<<< SEARCH\nX = 3.0\n=======\nX = 6.0\n"
        ">>>>>>> REPLACE\n")
MALFORMED = "HYPOTHESIS: no blocks at all\nI would change X."
PER_CALL = (400_000 * 3 + 300 * 15) / 1e6  # claude-sonnet-4-6 at $3 / $15 per million


def ledger(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.slow
@pytest.mark.parametrize("bad", [
    Reply(raw="<html><body>Sign in to the Wi-Fi</body></html>", content_type="text/html"),
    Reply(raw='{"id": "msg_fake", "type": "mess'),
], ids=["html", "cut-off-json"])
def test_a_reply_that_is_not_the_apis_pauses_the_session_never_a_traceback(
        toy_repo: Path, bad: Reply) -> None:
    with FakeModelServer([bad, bad, Reply(text=GOOD)]) as server:
        use_fake_model(toy_repo, server, max_retries=1, outage_retry_after=0.2)
        result = run_cli(toy_repo, "run", "--tag", "j", "--iterations", "2", timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output
    assert "not an API reply" in output or "not valid JSON" in output
    assert ledger(toy_repo, "SELECT status FROM experiments ORDER BY seq") == [("keep",), ("keep",)]
    (outage,) = ledger(toy_repo, "SELECT message FROM events WHERE kind = 'outage'")
    assert "base_url" in str(outage[0])


@pytest.mark.slow
def test_a_sigterm_in_an_edit_retry_conversation_keeps_the_calls_already_made(
        toy_repo: Path, tmp_path: Path) -> None:
    expensive = {"input_tokens": 400_000, "output_tokens": 300}
    with FakeModelServer([Reply(text=MALFORMED, **expensive), Reply(text=MALFORMED, **expensive),
                          Reply(text=GOOD, delay=30)]) as server:
        use_fake_model(toy_repo, server, max_retries=1)
        proc = subprocess.Popen(
            [sys.executable, "-m", "autoresearch", "run", "--tag", "g", "--iterations", "3",
             "--repo", str(toy_repo)], cwd=toy_repo, env=cli_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 90
        while len(server.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.requests) == 3, "the third call never went out"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    rows = ledger(toy_repo, "SELECT experiment_id, cost_usd FROM usage")
    # Both finished calls of the conversation are billed to its experiment; the cut one never
    # returned, so it has nothing to bill.
    assert [r[0] for r in rows] == ["g-0002", "g-0002"], output
    assert sum(float(str(r[1])) for r in rows) == pytest.approx(2 * PER_CALL)
    ((status, reason, cost),) = ledger(
        toy_repo, "SELECT status, decision_reason, cost_usd FROM experiments WHERE id = 'g-0002'")
    assert status == "interrupted" and float(str(cost)) == pytest.approx(2 * PER_CALL)
    assert reason == "interrupted by SIGTERM"  # not "by the user": a signal did it


@pytest.mark.slow
def test_the_spending_limit_is_overshot_by_one_call_at_most(toy_repo: Path) -> None:
    costly = Reply(text=MALFORMED, input_tokens=400_000)  # $1.2045 a call
    with FakeModelServer(handler=lambda r: costly) as server:
        use_fake_model(toy_repo, server, max_retries=1)
        config = toy_repo / "autoresearch.toml"
        config.write_text(config.read_text() + "\n[limits]\nmax_usd = 2.0\n")
        git(toy_repo, "commit", "-qam", "a spending limit")
        result = run_cli(toy_repo, "run", "--tag", "b", "--iterations", "10", timeout=120)
        calls = len(server.requests)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, output
    ((spent,),) = ledger(toy_repo, "SELECT sum(cost_usd) FROM usage")
    assert calls == 2 and float(str(spent)) == pytest.approx(2 * PER_CALL)  # not 3 calls' worth
    assert float(str(spent)) < 2.0 + PER_CALL
    (reason,), = ledger(toy_repo, "SELECT decision_reason FROM experiments WHERE id = 'b-0002'")
    assert str(reason) == ("proposal failed: the spending limit is reached: spent $2.409 of the "
                           "$2.00 budget ([limits] max_usd); this proposal stopped before edit "
                           "retry 2; fix: raise [limits] max_usd to spend more")
    assert "stopped: the spending limit is reached: spent $2.409 of the $2.00 budget" in output
    # The morning after, status says why the session stopped and what the limit was.
    shown = run_cli(toy_repo, "status", "--tag", "b", env={"COLUMNS": "400"})
    status = " ".join(shown.stdout.split())
    assert ("state finished · stopped: the spending limit is reached: spent $2.409 of the $2.00 "
            "budget ([limits] max_usd)") in status, status
    assert "cache-write) of the $2.00 limit ([limits] max_usd)" in status, status


def test_model_calls_and_machine_time_share_one_budget(toy_repo: Path) -> None:
    # $0.60 a call and the machine at $360 an hour ($0.10 a second): a $2 budget holds two calls
    # and a few seconds of runs, whichever comes first, and every view says both parts.
    cheap = Reply(text=GOOD, input_tokens=200_000)  # $0.6045 a call
    with FakeModelServer(handler=lambda r: cheap) as server:
        use_fake_model(toy_repo, server, max_retries=1)
        (toy_repo / "target.py").write_text("X = 3.0\nSLEEP = 1\n")
        config = toy_repo / "autoresearch.toml"
        config.write_text(config.read_text() + "\n[limits]\nmax_usd = 2.0\n"
                          "compute_usd_per_hour = 360\n")
        git(toy_repo, "commit", "-qam", "one budget")
        result = run_cli(toy_repo, "run", "--tag", "b", "--iterations", "20", timeout=120)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, output
    assert "stopped: the spending limit is reached: spent $" in output, output
    assert "on model calls + $" in output and " of machine time at $360/h" in output, output
    ((model,),) = ledger(toy_repo, "SELECT sum(cost_usd) FROM usage")
    # The baseline's two ~1 s runs alone cost about $0.2: fewer calls than $2 of tokens buys.
    assert float(str(model)) < 2.0
    ((done,),) = ledger(toy_repo, "SELECT COUNT(*) FROM experiments")
    assert 2 <= int(str(done)) < 20
    status = " ".join(run_cli(toy_repo, "status", "--tag", "b").stdout.split())
    assert "spend $" in status and "of $2.00: $" in status and "machine time at $360/h" in status
    report = run_cli(toy_repo, "report", "--tag", "b", "--out", str(toy_repo.parent / "rep"))
    assert report.returncode == 0, report.stderr
    markdown = (toy_repo.parent / "rep" / "report.md").read_text()
    assert "on model calls + $" in markdown and "machine time at $360/h" in markdown


@pytest.mark.slow
@pytest.mark.parametrize(("reply", "said", "fix"), [
    (Reply(status=401, error="invalid x-api-key"), "refused the API key", "ANTHROPIC_API_KEY"),
    (Reply(status=404, error="model: nope"), "model or endpoint not found",
     "set [proposer] model"),
], ids=["401", "404"])
def test_check_and_run_ask_the_endpoint_before_the_baseline(
        toy_repo: Path, reply: Reply, said: str, fix: str) -> None:
    def answer(request: Recorded) -> Reply:
        return reply

    with FakeModelServer(handler=answer, models=None) as server:
        use_fake_model(toy_repo, server)
        check = run_cli(toy_repo, "check", timeout=120)
        run = run_cli(toy_repo, "run", "--tag", "c", "--iterations", "2", timeout=120)
    for result in (check, run):
        output = " ".join((result.stdout + result.stderr).split())
        assert result.returncode != 0 and "Traceback" not in output, output
        assert said in output and fix in output
    assert not ledger(toy_repo, "SELECT id FROM experiments")  # no baseline was spent


@pytest.mark.slow
def test_check_reports_nothing_listening_at_base_url(toy_repo: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with FakeModelServer() as server:
        use_fake_model(toy_repo, server)
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text().replace(server.anthropic_url, f"http://127.0.0.1:{port}"))
    git(toy_repo, "commit", "-qam", "a port where nothing listens")
    result = run_cli(toy_repo, "check", timeout=120)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0 and "Traceback" not in output, output
    assert f"connection refused: nothing is listening at http://127.0.0.1:{port}" in output
    assert "start the model server, or set base_url" in output


@pytest.mark.slow
def test_check_lists_the_models_and_says_so(toy_repo: Path) -> None:
    with FakeModelServer() as server:
        use_fake_model(toy_repo, server)
        result = run_cli(toy_repo, "check", timeout=120)
        assert server.listings == 1 and server.requests == []  # nothing billed
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the endpoint answers and lists the model" in " ".join(result.stdout.split())


@pytest.mark.slow
def test_a_server_gone_mid_session_stops_it_after_a_bounded_wait(toy_repo: Path) -> None:
    server = FakeModelServer().start()
    use_fake_model(toy_repo, server, max_retries=1, outage_retry_after=0.1)
    url = server.anthropic_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--tag", "r", "--iterations", "3",
         "--repo", str(toy_repo)], cwd=toy_repo, env=cli_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while server.listings == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        server.stop()  # `run` asked before the baseline; now nothing listens there
    output, _ = proc.communicate(timeout=120)
    flat = " ".join(output.split())
    assert proc.returncode == 5 and "Traceback" not in output, output
    assert f"connection refused: nothing is listening at {url}" in flat
    assert "start the model server, or correct base_url" in flat
    outages = ledger(toy_repo, "SELECT count(*) FROM events WHERE kind = 'outage'")
    assert outages == [(2,)]  # two pauses, then the stop: not a wait for ever


def test_status_says_a_run_stopped_on_an_error(toy_repo: Path) -> None:
    # The key is refused only once the session is under way (the probe lists the model): run
    # stops with the error, and status says that is why, not a bare "stopped".
    def answer(request: Recorded) -> Reply:
        return Reply(status=401, error="invalid x-api-key")

    with FakeModelServer(handler=answer) as server:
        use_fake_model(toy_repo, server)
        run = run_cli(toy_repo, "run", "--tag", "e", "--iterations", "3", timeout=120)
    assert run.returncode == 5, run.stdout + run.stderr
    shown = run_cli(toy_repo, "status", "--tag", "e", env={"COLUMNS": "400"})
    state = next(line for line in shown.stdout.splitlines() if line.startswith("state"))
    assert "stopped: error: " in state and "refused the API key" in state, shown.stdout
