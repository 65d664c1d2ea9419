"""The review gate inside a real research session (`[review] gate`), end to end.

Real CLI sessions on the toy target: a scripted proposer plants a shell injection in a change
that improves the metric, and proposes a clean improving change. With `gate = "red"` the first
is discarded with bandit's finding as its reason (commit parked, review in the ledger, in `show`,
in the dashboard's detail API and in the report) and the second is kept with its review
recorded; with the gate off the injection is kept and nothing is reviewed. With LLM reviewers
configured (the fake model server), a model finding blocks and the calls are billed to the
experiment and the session. A gate that cannot work refuses `check` and `run` (exit 2); a review
that crashes leaves the keep standing and says so.
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from autoresearch import scheduler
from autoresearch.config import CONFIG_NAME, load_config
from autoresearch.display import Display
from autoresearch.gatekeeper import within_budget
from autoresearch.ledger import ExperimentRow, Ledger
from autoresearch.report import write_report
from autoresearch.session import Session
from tests.conftest import CONFIG, SCORE_PY, git, make_repo, run_cli, use_script
from tests.llm.fake_server import (
    FakeModelServer,
    Recorded,
    Reply,
    first_answered_then,
    sigterm_once_asked,
)
from tests.review.conftest import llm_options

# An improvement (X from 3 to 6; the optimum is 7) that also shells out with a caller's text.
INJECTED_LINE = 'subprocess.run(f"echo {msg}", shell=True)'
INJECTION = ("import subprocess\n\nX = 6.0\n\n\ndef notify(msg):\n"
             f"    {INJECTED_LINE}\n")
CLEAN = "X = 6.5\n"
PLANT: dict[str, Any] = {"hypothesis": "move X to 6 and notify through the shell",
         "edits": {"target.py": INJECTION}}
TIDY: dict[str, Any] = {"hypothesis": "move X to 6.5", "edits": {"target.py": CLEAN}}


@dataclass
class Ran:
    repo: Path
    tag: str
    proc: subprocess.CompletedProcess[str]

    def ledger(self) -> Ledger:
        return Ledger(self.repo / ".autoresearch" / "ledger.db")

    def experiments(self) -> dict[str, ExperimentRow]:
        """Candidates by hypothesis."""
        ledger = self.ledger()
        try:
            session = ledger.session(self.tag)
            assert session is not None
            return {e.hypothesis: e for e in ledger.experiments(session.id)
                    if e.kind != "baseline"}
        finally:
            ledger.close()


def run_session(repo: Path, items: list[dict[str, Any]], review: str, tag: str = "g",
                env: dict[str, str] | None = None) -> Ran:
    use_script(repo, items, extra_config=textwrap.dedent(review))
    proc = run_cli(repo, "run", "--iterations", str(len(items) + 1), "--tag", tag, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Ran(repo, tag, proc)


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """A finished session with `gate = "red"`: the planted injection, then the clean change."""
    repo = make_repo(tmp_path_factory.mktemp("gated") / "repo",
                     {"target.py": "X = 3.0\n", "score.py": SCORE_PY, "autoresearch.toml": CONFIG})
    return run_session(repo, [PLANT, TIDY], '\n[review]\ngate = "red"\n')


def test_a_red_finding_turns_an_improving_keep_into_a_discard(gated: Ran) -> None:
    exps = gated.experiments()
    planted, tidy = exps[PLANT["hypothesis"]], exps[TIDY["hypothesis"]]
    # The metric says keep (16 → 1); the review says no, and its finding is the reason.
    assert planted.status == "discard", planted.decision_reason
    assert planted.objective is not None and planted.incumbent_objective is not None
    assert planted.objective < planted.incumbent_objective
    assert planted.decision_reason.startswith("review gate (red): red target.py:7 ")
    assert "shell=True" in planted.decision_reason and "bandit B602" in planted.decision_reason
    # Parked like any discard: a ref of its own, the branch never moved there.
    assert git(gated.repo, "rev-parse", f"refs/autoresearch/{gated.tag}/discarded/{planted.id}") \
        == planted.commit_sha
    assert git(gated.repo, "rev-parse", f"autoresearch/{gated.tag}") == tidy.commit_sha
    assert git(gated.repo, "show", f"autoresearch/{gated.tag}:target.py").strip() == "X = 6.5"
    # The clean improvement is kept, its review recorded too; the baseline is never reviewed.
    assert tidy.status == "keep" and "review" not in tidy.decision_reason
    ledger = gated.ledger()
    try:
        (blocked,) = ledger.reviews(experiment_id=planted.id)
        (passed,) = ledger.reviews(experiment_id=tidy.id)
        session = ledger.session(gated.tag)
        assert session is not None
        everything = ledger.reviews()
        events = ledger.events(session.id)
    finally:
        ledger.close()
    assert blocked.blocked and blocked.red == 1 and blocked.session_id == session.id
    assert (blocked.base_commit, blocked.head_commit) == (planted.parent_commit,
                                                          planted.commit_sha)
    (red,) = [f for f in blocked.findings if f.colour == "red"]
    assert (red.path, red.start_line, red.evidence.strip()) == ("target.py", 7, INJECTED_LINE)
    assert not passed.blocked and passed.red == 0 and passed.head_commit == tidy.commit_sha
    assert len(everything) == 2  # two would-be keeps, two reviews; nothing else reviewed
    said = [e["message"] for e in events if e["kind"] == "review"]
    assert len(said) == 2 and any(m.startswith(f"{planted.id}: blocked, review gate (red)")
                                  for m in said)
    # The run's own output: the gate in the header, the discard with its reason.
    out = " ".join(gated.proc.stdout.split())
    assert "review gate red: ruff, bandit, mypy, history" in out
    assert f"{planted.id} discard" in out and "review gate (red): red target.py:7" in out


def test_show_the_dashboard_and_the_report_carry_the_gate_review(gated: Ran,
                                                                 tmp_path: Path) -> None:
    from tests.views.conftest import serve

    exps = gated.experiments()
    planted, tidy = exps[PLANT["hypothesis"]], exps[TIDY["hypothesis"]]
    shown = " ".join(run_cli(gated.repo, "show", planted.id,
                             env={"COLUMNS": "200"}).stdout.split())
    assert "review: 1 red — blocked the keep" in shown
    assert "target.py:7 subprocess call with shell=True" in shown
    assert f"7 │ {INJECTED_LINE}" in shown and "(blocked the keep)" in shown

    with serve(gated.repo, gated.tag) as url:
        detail = get_json(f"{url}/api/experiment/{planted.id}")
        kept = get_json(f"{url}/api/experiment/{tidy.id}")
    assert detail["experiment"]["status"] == "discard"
    (review,) = detail["reviews"]
    assert review["blocked"] and review["headline"] == "review: 1 red — blocked the keep"
    (finding,) = [f for f in review["findings"] if f["colour"] == "red"]
    assert finding["blocking"] and finding["location"] == "target.py:7"
    assert finding["sources"] == ["bandit B602"]
    (kept_review,) = kept["reviews"]
    assert not kept_review["blocked"] and kept_review["red"] == 0

    md = write_report(gated.repo, gated.tag, tmp_path / "report").markdown.read_text()
    blocked = md.split("## Blocked by the review", 1)[1].split("\n## ", 1)[0]
    assert f"### {planted.id} · {planted.hypothesis}" in blocked
    assert "`target.py:7` subprocess call with shell=True" in blocked and INJECTED_LINE in blocked
    assert "2 would-be keeps reviewed: 1 blocked (1 red)" in md


def test_with_the_gate_off_nothing_is_reviewed_and_the_injection_is_kept(toy_repo: Path) -> None:
    ran = run_session(toy_repo, [PLANT], "")
    (planted,) = ran.experiments().values()
    assert planted.status == "keep"
    ledger = ran.ledger()
    try:
        assert ledger.reviews() == []
        session = ledger.session(ran.tag)
        assert session is not None
        assert not [e for e in ledger.events(session.id) if e["kind"].startswith("review")]
    finally:
        ledger.close()
    assert "review gate" not in ran.proc.stdout


# --- LLM reviewers against the fake model server --------------------------------------------

OFF_BY_ONE_LINE = "return [values[i] for i in range(len(values) + 1)]"
OFF_BY_ONE = f"X = 6.0\n\n\ndef scaled(values):\n    {OFF_BY_ONE_LINE}\n"
LLM_FINDING = {"path": "target.py", "line": 5, "end_line": 5, "angle": "logic",
               "category": "logic", "severity": "high", "confidence": 0.9,
               "title": "The comprehension reads one past the end",
               "body": "range(len(values) + 1) makes values[i] raise IndexError.",
               "quote": OFF_BY_ONE_LINE}


def model(rec: Recorded) -> Reply:
    """The fake model: a logic finding for the off-by-one, nothing otherwise; confirms all."""
    text = rec.prompt_text()
    if "You check findings" in text:
        verdicts = [{"id": f"F{i}", "verdict": "confirmed", "reason": "the code says so"}
                    for i in range(1, text.count("### F") + 1)]
        return Reply(text=json.dumps({"verdicts": verdicts}))
    findings = [LLM_FINDING] if OFF_BY_ONE_LINE in text else []
    return Reply(text="```json\n" + json.dumps({"findings": findings}) + "\n```")


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer(handler=model) as s:
        yield s


def test_llm_reviewers_block_through_the_gate_and_their_calls_are_billed(
        toy_repo: Path, server: FakeModelServer) -> None:
    options = llm_options(server)
    table = ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
    bug: dict[str, Any] = {"hypothesis": "move X to 6 and scale the values", "edits": {"target.py": OFF_BY_ONE}}
    ran = run_session(toy_repo, [bug, TIDY], f'\n[review]\ngate = "red"\nllm = {{ {table} }}\n')
    exps = ran.experiments()
    blocked, kept = exps[bug["hypothesis"]], exps[TIDY["hypothesis"]]
    assert blocked.status == "discard"
    assert blocked.decision_reason.startswith("review gate (red): red target.py:5 The "
                                              "comprehension reads one past the end (llm:logic)")
    assert kept.status == "keep"
    assert server.requests, "the LLM reviewers were never asked"
    ledger = ran.ledger()
    try:
        session = ledger.session(ran.tag)
        assert session is not None
        with sqlite3.connect(ran.repo / ".autoresearch" / "ledger.db") as db:
            rows = db.execute("SELECT experiment_id, purpose, cost_usd FROM usage "
                              "WHERE session_id = ?", (session.id,)).fetchall()
        (review,) = ledger.reviews(experiment_id=blocked.id)
        totals = ledger.usage_totals(session.id)
    finally:
        ledger.close()
    billed = [(exp, purpose) for exp, purpose, _ in rows if purpose.startswith("review")]
    assert (blocked.id, "review") in billed and (blocked.id, "review-verify") in billed
    assert (kept.id, "review") in billed  # reviewed too (no finding: nothing to verify)
    assert len(billed) == len(server.requests)  # every model call billed, once
    spent_on_review = sum(cost for _, purpose, cost in rows if purpose.startswith("review"))
    assert spent_on_review > 0
    assert review.cost_usd == pytest.approx(sum(
        cost for exp, purpose, cost in rows if exp == blocked.id and purpose.startswith("review")))
    # The session's spend (what max_usd is checked against) includes the reviews.
    scripted = sum(cost for _, purpose, cost in rows if not purpose.startswith("review"))
    assert totals["cost_usd"] == pytest.approx(scripted + spent_on_review)


# --- refusing a gate that cannot work; a review that crashes ----------------------------------

def test_a_gate_that_cannot_work_refuses_check_and_run(toy_repo: Path) -> None:
    use_script(toy_repo, [TIDY], extra_config='\n[review]\ngate = "red"\nllm = true\n')
    check = run_cli(toy_repo, "check")
    assert check.returncode == 2, check.stdout + check.stderr
    said = " ".join((check.stdout + check.stderr).split())
    assert "review gate: the LLM reviewers have no model API configured" in said
    assert "export ANTHROPIC_API_KEY" in said
    run = run_cli(toy_repo, "run", "--iterations", "2", "--tag", "nokey")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "the LLM reviewers have no model API configured" in run.stderr + run.stdout
    assert "Traceback" not in run.stderr
    ledger = Ledger(toy_repo / ".autoresearch" / "ledger.db")
    try:
        assert ledger.session("nokey") is None  # refused before anything was recorded
    finally:
        ledger.close()
    # An unknown reviewer is the config's mistake, named with the closest match.
    config = (toy_repo / CONFIG_NAME).read_text().replace("llm = true", 'reviewers = ["bandid"]')
    (toy_repo / CONFIG_NAME).write_text(config)
    git(toy_repo, "commit", "-qam", "misspelt reviewer")
    check = run_cli(toy_repo, "check")
    assert check.returncode == 2 and "did you mean 'bandit'" in check.stdout
    ok = toy_repo / CONFIG_NAME
    ok.write_text(config.replace('reviewers = ["bandid"]', ""))
    git(toy_repo, "commit", "-qam", "offline gate")
    check = run_cli(toy_repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "review gate red: ruff, bandit, mypy, history" in " ".join(check.stdout.split())


def test_a_review_that_crashes_leaves_the_keep_standing_and_says_so(
        toy_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_script(toy_repo, [PLANT], extra_config='\n[review]\ngate = "red"\n')

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the analyzer ran out of memory")

    monkeypatch.setattr("autoresearch.gatekeeper.review_candidate", broken)
    out = io.StringIO()
    session = Session(toy_repo, load_config(toy_repo / CONFIG_NAME), "crash",
                      Display(Console(file=out, width=200, highlight=False)))
    session.open()
    try:
        scheduler.run(session, scheduler.Limits(iterations=2))
    finally:
        session.close()
    (planted,) = [e for e in session.history.experiments if e.kind != "baseline"]
    assert planted.status == "keep"
    assert planted.decision_reason.endswith("; kept unreviewed: the review gate failed "
                                            "(RuntimeError: the analyzer ran out of memory)")
    ledger = session.ledger
    (failed,) = ledger.events(session.row.id, kind="review_failed")
    assert failed["experiment_id"] == planted.id and "the keep stands" in failed["message"]
    assert ledger.reviews() == []
    assert "warning: " in out.getvalue() and "kept unreviewed" in out.getvalue()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url) as resp:
        return json.loads(resp.read())


def test_a_review_may_spend_only_what_is_left_of_the_session_budget(toy_repo: Path) -> None:
    use_script(toy_repo, [TIDY], extra_config='\n[review]\ngate = "red"\nmax_usd = 0.5\n')
    session = Session(toy_repo, load_config(toy_repo / CONFIG_NAME), "budget",
                      Display(Console(file=io.StringIO())))
    session.open()
    try:
        review = session.config.review
        # No session budget: the review's own cap.
        assert within_budget(session, review).max_usd == 0.5
        session.limits.max_usd = 2.0
        session.ledger.add_usage(session.row.id, None, provider="p", model="m", cost_usd=1.75)
        assert within_budget(session, review).max_usd == pytest.approx(0.25)  # what is left
        session.ledger.add_usage(session.row.id, None, provider="p", model="m", cost_usd=1.0)
        assert within_budget(session, review).max_usd == 0.0  # spent: no model call may start
        session.limits.max_usd = 10.0
        assert within_budget(session, review).max_usd == 0.5
    finally:
        session.close()


def review_billed(repo: Path) -> bool:
    """Whether the session's ledger holds a review's usage (read-only: never created here)."""
    path = repo / ".autoresearch" / "ledger.db"
    if not path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                timeout=5)) as db:
            return bool(db.execute("SELECT COUNT(*) FROM usage WHERE purpose = 'review'")
                        .fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or busy: asked again
        return False


@pytest.mark.slow
def test_sigterm_during_a_gate_review_keeps_the_calls_that_returned_billed(
        toy_repo: Path) -> None:
    """`run` stopped by SIGTERM while the gate's second model pass waits on the model: the
    first pass's call, returned before the stop, is in the session's usage, billed to the
    experiment (it used to be billed only once the whole review was back)."""
    import sys

    from tests.conftest import cli_env

    reply = '```json\n{"findings": []}\n```'
    slow_second = first_answered_then(Reply(text=reply), lambda: Reply(text=reply, delay=60))

    bigger = OFF_BY_ONE + "".join(f"\nV{i} = {i}\n" for i in range(12))  # two passes
    change: dict[str, Any] = {"hypothesis": "move X to 6 and scale the values",
                              "edits": {"target.py": bigger}}
    with FakeModelServer(handler=slow_second) as server:
        options = llm_options(server, timeout_seconds=120, max_retries=0)
        table = ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
        use_script(toy_repo, [change], extra_config=f'\n[review]\ngate = "red"\n'
                   f'llm = {{ {table} }}\n')
        proc = subprocess.Popen(
            [sys.executable, "-m", "autoresearch", "run", "--repo", str(toy_repo), "--tag", "g",
             "--iterations", "2"], cwd=toy_repo, env=cli_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        # The first pass's reply is back and billed when the SIGTERM comes: its usage row is
        # waited for in the ledger (a fixed second after the reply was not always enough on a
        # loaded machine), while the second pass is still held.
        stderr = sigterm_once_asked(proc, server, 2, "the gate", within_s=120,
                                    settled=lambda: review_billed(toy_repo))
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    ran = Ran(toy_repo, "g", subprocess.CompletedProcess([], 130))
    (exp,) = ran.experiments().values()
    assert exp.status == "interrupted"
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as db:
        rows = db.execute("SELECT experiment_id, input_tokens, output_tokens, cost_usd FROM "
                          "usage WHERE purpose = 'review'").fetchall()
    assert [(e, i, o) for e, i, o, _ in rows] == [(exp.id, 1200, 300)]
    assert rows[0][3] > 0
