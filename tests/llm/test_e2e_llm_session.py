"""End to end: `autoresearch run` with the llm proposer against the fake model server.

The real CLI runs as a subprocess and talks to the fake server through the real anthropic SDK.
The "model" answers by what it is asked: proposals follow a script; repairs fix the first crash
and give up on the second; retries after a malformed reply stay malformed, and after a refused
edit of the protected evaluation it insists. The ledger must show keep, discard, crash (with and
without a successful repair) and rejected, with token costs: one usage row per model call, each
billed to the experiment that made it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import git, run_cli
from tests.llm.conftest import use_fake_model
from tests.llm.fake_server import FakeModelServer, Recorded, Reply


def block(search: str, replace: str, path: str = "target.py") -> str:
    return f"{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


PROPOSALS = [
    "HYPOTHESIS: move X toward the optimum\nRATIONALE: (X-7)^2.\n" + block("X = 3.0\n", "X = 6.0\n"),
    "HYPOTHESIS: move X the other way\n" + block("X = 6.0\n", "X = 1.0\n"),
    "HYPOTHESIS: X = 6.5 with a crash flag\n" + block("X = 6.0\n", "X = 6.5\nCRASH = True\n"),
    "HYPOTHESIS: make the evaluation easier\n"
    + block("import target\n", "import target  # tuned\n", "score.py"),
    "HYPOTHESIS: a malformed reply\ntarget.py\n<<<<<<< SEARCH\nX = 6.5\n>>>>>>> REPLACE\n",
    "HYPOTHESIS: X = 6.8, crashing again\n" + block("X = 6.5\n", "X = 6.8\nCRASH = True\n"),
]
FIX = "HYPOTHESIS: drop the crash flag\n" + block("CRASH = True\n", "")
GIVE_UP = "GIVE_UP: this crash flag cannot be avoided"


def reply(text: str) -> Reply:
    return Reply(text=text, input_tokens=4000, output_tokens=250, cache_read_tokens=3000,
                 cache_write_tokens=500)


class ScriptedModel:
    """Answers each request by its kind; thread-safe because the server is threaded."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proposals = 0
        self.repairs = 0
        self.kinds: list[str] = []

    def __call__(self, request: Recorded) -> Reply:
        text = request.prompt_text()
        last = request.body["messages"][-1]
        last_text = json.dumps(last)
        with self.lock:
            if "Reply again with the complete corrected reply" in last_text:
                self.kinds.append("retry")
                if "refused: protected" in last_text:
                    return reply(PROPOSALS[3])  # a stubborn model: the evaluation again
                return reply(PROPOSALS[4])
            if "## Repair a crash" in text:
                self.repairs += 1
                self.kinds.append("repair")
                return reply(FIX if self.repairs == 1 else GIVE_UP)
            self.proposals += 1
            self.kinds.append("propose")
            if self.proposals > len(PROPOSALS):
                return Reply(status=500, error="script exhausted")
            return reply(PROPOSALS[self.proposals - 1])


@pytest.mark.slow
def test_llm_session_keeps_discards_repairs_rejects_and_bills(toy_repo: Path) -> None:
    model = ScriptedModel()
    with FakeModelServer(handler=model) as server:
        use_fake_model(toy_repo, server, max_retries=1)
        result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "7", timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        requests = list(server.requests)

    db = toy_repo / ".autoresearch" / "ledger.db"
    with sqlite3.connect(db) as conn:
        exps = conn.execute("SELECT id, status, attempts, decision_reason, hypothesis, cost_usd "
                            "FROM experiments ORDER BY seq").fetchall()
        usage = conn.execute("SELECT experiment_id, provider, model, purpose, input_tokens, "
                             "output_tokens, cache_read_tokens, cache_write_tokens, cost_usd "
                             "FROM usage ORDER BY id").fetchall()
    statuses = [e[1] for e in exps]
    assert statuses == ["keep", "keep", "discard", "keep", "rejected", "rejected", "crash"], exps
    by_id = {e[0]: e for e in exps}
    # Crash, then a repair that fixed it: one experiment, two attempts, kept.
    assert by_id["t-0004"][2] == 2 and by_id["t-0004"][4] == "X = 6.5 with a crash flag"
    # The protected file was refused before anything was read or applied, three times; the
    # malformed replies became a failed proposal.
    assert "score.py" in by_id["t-0005"][3] and "refused: protected" in by_id["t-0005"][3]
    assert "proposal failed" in by_id["t-0006"][3] and "after 3 attempts" in by_id["t-0006"][3]
    # What the model meant to try is kept, even when no usable edit came of it.
    assert by_id["t-0005"][4] == "make the evaluation easier"
    assert by_id["t-0006"][4] == "a malformed reply"
    # A crash whose repair gave up stays a crash.
    assert by_id["t-0007"][2] == 1
    assert model.kinds.count("repair") == 2 and model.kinds.count("retry") == 4

    # One usage row per call the server saw, each on the experiment that made it: the repair
    # that gave up is billed to its crash, not carried to a later experiment or lost.
    assert len(usage) == len(requests) == 12
    assert Counter(u[0] for u in usage) == {"t-0002": 1, "t-0003": 1, "t-0004": 2, "t-0005": 3,
                                            "t-0006": 3, "t-0007": 2}
    assert Counter((u[0], u[3]) for u in usage if u[3] == "repair") == {("t-0004", "repair"): 1,
                                                                         ("t-0007", "repair"): 1}

    # Costs: every recorded call has tokens and a price; kept and repaired work is billed.
    assert usage, "no usage recorded"
    assert all(u[1] == "anthropic" and u[2] == "claude-sonnet-4-6" for u in usage)
    assert all(u[4] == 4000 and u[5] == 250 and u[6] == 3000 and u[7] == 500 for u in usage)
    per_call = (4000 * 3 + 250 * 15 + 3000 * 0.3 + 500 * 3.75) / 1e6
    assert all(abs(u[8] - per_call) < 1e-9 for u in usage)
    purposes = {(u[0], u[3]) for u in usage}
    assert ("t-0004", "repair") in purposes and ("t-0002", "propose") in purposes
    assert by_id["t-0002"][5] == pytest.approx(per_call)
    assert by_id["t-0004"][5] == pytest.approx(2 * per_call)

    # What the model was shown: the history, the crash log, and never the protected evaluation.
    second = requests[1].prompt_text()
    assert "#2 keep" in second and "+X = 6.0" in second
    repair = next(r.prompt_text() for r in requests if "## Repair a crash" in r.prompt_text())
    # The crash's log tail is there, but the evaluation's own message (`boom`, a word of the
    # protected score.py) is hidden like any protected text.
    assert "## Log tail of the last crash" in repair and "boom" not in repair
    assert "[line hidden: it quotes a protected file]" in repair
    # The candidate's change, against the incumbent (the worktree holds the candidate by then).
    assert "-X = 6.0" in repair and "+CRASH = True" in repair
    assert all("noise = float" not in r.prompt_text() for r in requests)  # score.py's body
    assert requests[0].body["system"][0]["cache_control"] == {"type": "ephemeral"}

    status = run_cli(toy_repo, "status", "--tag", "t")
    assert status.returncode == 0 and "$" in status.stdout and "model calls" in status.stdout
    data = json.loads(run_cli(toy_repo, "results", "--json", "--tag", "t").stdout)
    assert data["session"]["usage"]["cost_usd"] == pytest.approx(len(usage) * per_call)
    # The kept line ends at the repaired candidate.
    assert (git(toy_repo, "show", "autoresearch/t:target.py")) == "X = 6.5"


@pytest.mark.slow
def test_an_outage_pauses_the_session_and_it_resumes(toy_repo: Path) -> None:
    busy = Reply(status=503, error="overloaded", headers={"retry-after": "0.2"})
    with FakeModelServer([busy, busy, busy, reply(PROPOSALS[0])]) as server:
        use_fake_model(toy_repo, server, max_retries=1)
        result = run_cli(toy_repo, "run", "--tag", "o", "--iterations", "2", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(server.requests) == 4
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM experiments ORDER BY seq")]
        events = [r[0] for r in conn.execute("SELECT kind FROM events")]
        session = conn.execute("SELECT status FROM sessions").fetchone()[0]
    assert statuses == ["keep", "keep"]  # nothing was lost to the outage
    assert "outage" in events and session != "paused"


@pytest.mark.slow
def test_an_invalid_key_stops_the_session_with_a_clear_message(toy_repo: Path) -> None:
    with FakeModelServer([Reply(status=401, error="invalid x-api-key")]) as server:
        use_fake_model(toy_repo, server)
        result = run_cli(toy_repo, "run", "--tag", "k", "--iterations", "3", timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "refused the API key" in output and "Traceback" not in output
    assert "ANTHROPIC_API_KEY" in output  # the fix names the variable to check
