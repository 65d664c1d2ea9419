"""A review's model calls are billed one by one, as each returns, and a limit is asked before
each call: the review gate bills them to the experiment through the session's `Meter` (the llm
proposer's), `autoresearch review` keeps them when it is stopped half way. Real SDK clients
against the fake model server on 127.0.0.1; the CLI in a real subprocess, stopped by SIGTERM.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from autoresearch.config import ReviewConfig
from autoresearch.proposers.base import Meter, Usage
from autoresearch.review.gate import GateResult, review_candidate
from autoresearch.review.pipeline import run_review
from tests.conftest import cli_env
from tests.llm.fake_server import (
    FakeModelServer,
    Reply,
    first_answered_then,
    sigterm_once_asked,
)
from tests.review.conftest import Repo, llm_options
from tests.review.test_llm_review import settings

NO_FINDINGS = Reply(text='```json\n{"findings": []}\n```')


def two_pass_change(repo: Repo) -> tuple[str, str]:
    """A small change (two files): the scale rule asks the model in two parallel passes."""
    parent = repo.commit("init", **{"a.py": "x = 1\n", "b.py": "y = 1\n"})
    candidate = repo.commit("change", **{"a.py": "x = 1\nx2 = x * 2\n",
                                         "b.py": "y = 1\ny2 = y * 2\n"})
    return parent, candidate


def test_the_gate_bills_each_model_call_the_moment_it_returns(repo: Repo) -> None:
    """One pass answers at once, the other is held: the first call is billed while the second
    is still in flight, not at the end of the review (a SIGTERM then would lose nothing)."""
    release = threading.Event()

    def held() -> Reply:
        release.wait(300)  # released by the test; held past its deadline below
        return NO_FINDINGS

    model = first_answered_then(NO_FINDINGS, held)
    billed: list[Usage] = []
    with FakeModelServer(handler=model) as server:
        parent, candidate = two_pass_change(repo)
        config = ReviewConfig(gate="red", llm=llm_options(server, timeout_seconds=60))
        done: list[GateResult] = []
        reviewing = threading.Thread(target=lambda: done.append(review_candidate(
            repo.path, parent, candidate, config, meter=Meter(record=billed.append))))
        reviewing.start()
        try:
            deadline = time.monotonic() + 120  # a busy machine took more than 30 s
            while not billed and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(billed) == 1, "the call that returned was not billed as it returned"
            while len(server.requests) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)  # the other pass may wait for a free worker first
            assert reviewing.is_alive() and len(server.requests) == 2  # held: not returned
            assert len(billed) == 1
        finally:
            release.set()
            reviewing.join(120)
    (result,) = done
    assert len(billed) == 2 == len(server.requests)
    assert sorted(billed, key=repr) == sorted(result.usage, key=repr)  # each once, no other
    assert all(u.cost_usd > 0 for u in billed)


def test_a_limit_reached_elsewhere_stops_every_call_before_it_is_made(repo: Repo) -> None:
    """The meter's limit (a session's max_usd) is asked before each call, as the proposer's."""
    asked: list[int] = []

    def over() -> str:
        asked.append(1)
        return "the spending limit is reached: spent $2.00 of the $2.00 budget"

    with FakeModelServer(handler=lambda rec: NO_FINDINGS) as server:
        two_pass_change(repo)
        review = run_review(repo.change("HEAD~1", "HEAD"), settings(server),
                            meter=Meter(record=lambda u: None, stop_reason=over))
    assert server.requests == []
    assert len(asked) == 2  # once per pass
    assert review.cost.usd == 0
    # No pass was made: the review says so, with the limit's own words (its "no findings" are
    # not the model's), and each pass says it was not asked.
    assert review.llm_not_asked == ("the LLM reviewers were not asked: the spending limit is "
                                    "reached: spent $2.00 of the $2.00 budget"), review.notes
    assert [r.status for r in review.reviewers if r.kind == "llm" and r.status != "skipped"] == [
        "not-asked", "not-asked"]


@pytest.mark.slow
def test_sigterm_mid_review_keeps_the_cost_of_the_calls_that_returned(repo: Repo) -> None:
    """`autoresearch review` stopped while one pass waits on the model: the pass that returned
    is in the ledger (a review with no finding, its tokens and cost), and stderr says so."""
    model = first_answered_then(NO_FINDINGS, lambda: Reply(text='{"findings": []}', delay=60))
    two_pass_change(repo)
    repo.git("checkout", "-qb", "feature")
    repo.git("branch", "-q", "-f", "main", "HEAD~1")
    with FakeModelServer(handler=model) as server:
        options = llm_options(server, timeout_seconds=120, max_retries=0)
        table = ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
        (repo.path / "autoresearch.toml").write_text(f"[review]\nllm = {{ {table} }}\n")
        proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "review", "--llm"],
                                cwd=repo.path, env=cli_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        # The first pass's reply is back and noted when the SIGTERM comes.
        stderr = sigterm_once_asked(proc, server, 2, "the review")
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    said = " ".join(stderr.split())
    assert "the 1 model call(s) that had returned ($" in said and "recorded in the ledger" in said
    with sqlite3.connect(repo.path / ".autoresearch" / "ledger.db") as db:
        rows = db.execute("SELECT input_tokens, output_tokens, cost_usd, scale, notes_json, "
                          "red + yellow + purple FROM reviews").fetchall()
        findings = db.execute("SELECT COUNT(*) FROM review_findings").fetchone()
    ((tokens_in, tokens_out, cost, scale, notes, found),) = rows
    assert (tokens_in, tokens_out) == (1200, 300)  # the fake server's one reply
    assert cost > 0 and scale == "interrupted" and found == 0 and findings == (0,)
    assert "interrupted (SIGTERM)" in json.loads(notes)[0]
