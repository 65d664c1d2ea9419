"""What the review gate says when it could not do all it was set to do, end to end.

- A cap no model call fits under: `check` warns (which cap, what one call may cost, the fix);
  `run` asks no model, warns, and each keep says the LLM reviewers were not asked, naming the
  setting that applies in a session (`[limits] max_usd`), never `--max-usd`: in its reason, its
  `review` event, `show ID` and the session's tally.
- A reviewer plugin whose review() returns something else than a ReviewerReport (or whose
  skip_reason() raises) fails alone, with what it returned and what it must return; the others'
  findings stand, in `autoresearch review` and in the gate.
- A gate whose every review fails is named in the session's tally.
- A model without a price is said to cost $0, whatever the endpoint; a verify_model that is not
  a string is refused.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from autoresearch import scheduler
from autoresearch.config import CONFIG_NAME, load_config
from autoresearch.display import Display
from autoresearch.errors import ConfigError
from autoresearch.ledger import Ledger
from autoresearch.review.gate import gate_warnings
from autoresearch.review.llm_setup import resolve_llm
from autoresearch.review.settings import load_review_config
from autoresearch.session import Session
from autoresearch.views.review import gate_tally
from autoresearch.views.summary import build_view, view_to_json
from tests.conftest import TESTS, run_cli, use_script
from tests.llm.fake_server import FakeModelServer, Recorded, Reply
from tests.review.conftest import Repo
from tests.review.test_gate_in_loop import (
    INJECTED_LINE,
    INJECTION,
    OFF_BY_ONE,
    OFF_BY_ONE_LINE,
    PLANT,
    TIDY,
    Ran,
)

KEY = {"FAKE_KEY": "not-a-real-key"}
PRICES = '{ "fake-model" = { input = 3.0, output = 15.0 } }'


def llm_table(server: FakeModelServer, *, prices: str | None = PRICES, **extra: Any) -> str:
    """`[review] llm` as TOML: the fake server's OpenAI API, model fake-model."""
    options: dict[str, Any] = {"provider": "openai", "base_url": server.openai_url,
                               "model": "fake-model", "api_key_env": "FAKE_KEY",
                               "retry_base_seconds": 0.01, "retry_max_seconds": 0.05,
                               "timeout_seconds": 5, "max_retries": 1, **extra}
    table = ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
    return "{ " + table + (f", prices = {prices}" if prices else "") + " }"


def model(rec: Recorded) -> Reply:
    """A model that finds the off-by-one when it is shown, and confirms what it is asked to."""
    text = rec.prompt_text()
    if "You check findings" in text:
        verdicts = [{"id": f"F{i}", "verdict": "confirmed", "reason": "so it is"}
                    for i in range(1, text.count("### F") + 1)]
        return Reply(text=json.dumps({"verdicts": verdicts}))
    finding = {"path": "target.py", "line": 5, "angle": "logic", "category": "logic",
               "severity": "high", "confidence": 0.9, "title": "reads one past the end",
               "body": "values[len(values)] raises IndexError", "quote": OFF_BY_ONE_LINE}
    return Reply(text=json.dumps({"findings": [finding] if OFF_BY_ONE_LINE in text else []}))


# --- a cap no call fits under -----------------------------------------------------------------

def use_a_gate_no_call_can_afford(repo: Path, server: FakeModelServer) -> None:
    """One tidy candidate, and a red review gate whose LLM reviewers' cheapest call costs more
    than the session's whole $0.03."""
    use_script(repo, [TIDY], extra_config=textwrap.dedent(f"""
        [limits]
        max_usd = 0.03
        [review]
        gate = "red"
        llm = {llm_table(server)}
        """))


def test_a_gate_no_call_can_afford_warns_and_its_keeps_say_the_llm_was_not_asked(
        toy_repo: Path) -> None:
    with FakeModelServer(handler=model) as server:
        use_a_gate_no_call_can_afford(toy_repo, server)
        check = run_cli(toy_repo, "check", env=KEY)
        assert check.returncode == 0, check.stdout + check.stderr
        said = " ".join(check.stdout.split())
        # 4,096 tokens at $15 a million: $0.0614 before the prompt, over the session's $0.03.
        assert ("! the review gate cannot afford its LLM reviewers: a call to fake-model "
                "reserves at least $0.0614 (a full 4,096-token reply at $15 per million output "
                "tokens, before its prompt), more than the whole $0.03 a review may spend "
                "([limits] max_usd)") in said, said
        assert "raise [limits] max_usd, or lower max_tokens in [review] llm" in said
        run = run_cli(toy_repo, "run", "--iterations", "2", "--tag", "cap", env=KEY)
        assert run.returncode == 0, run.stdout + run.stderr
        assert server.requests == []  # no call could fit: none was made
    ran = Ran(toy_repo, "cap", run)
    kept = ran.experiments()[TIDY["hypothesis"]]
    assert kept.status == "keep"
    why = "the LLM reviewers were not asked: one call may cost $0.06"
    # The scripted proposer spent $0.001 of the $0.03: the review could spend what was left.
    fix = ("more than the whole of the $0.029 cap (what was left of [limits] max_usd): raise "
           "[limits] max_usd, or lower max_tokens in [review] llm")
    assert why in kept.decision_reason and fix in kept.decision_reason, kept.decision_reason
    ran_said = " ".join((run.stdout + run.stderr).split())
    assert f"warning: {kept.id}: the LLM reviewers were not asked" in ran_said
    # Said when the session starts too, as `check` says it.
    assert "the review gate cannot afford its LLM reviewers" in ran_said, ran_said
    ledger = ran.ledger()
    try:
        session = ledger.session("cap")
        assert session is not None
        (event,) = ledger.events(session.id, kind="review")
        tally = gate_tally(build_view(ledger, session).experiments)
    finally:
        ledger.close()
    assert event["message"].startswith(f"{kept.id}: review: 0 red, 0 yellow, 0 purple; {why}")
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as db:
        (reviewers,) = db.execute("SELECT reviewers_json FROM reviews").fetchone()
    (llm_run,) = [r for r in json.loads(reviewers)
                  if r["kind"] == "llm" and r["status"] != "skipped"]
    assert llm_run["status"] == "not-asked" and "[limits] max_usd" in llm_run["note"]
    assert "--max-usd" not in reviewers  # a flag `run` does not have
    show = run_cli(toy_repo, "show", kept.id)
    assert show.returncode == 0, show.stderr
    assert f"review: no findings; {why}" in " ".join(show.stdout.split())
    assert tally.startswith("1 would-be keep reviewed: none blocked; 1 not blocked (no "
                            f"findings), 1 of them by the offline reviewers alone ({why}")
    # The row's mark says so too, in results and in the dashboard's rows.
    results = run_cli(toy_repo, "results", "--tag", "cap", env={"COLUMNS": "400"})
    assert "review: no findings (offline reviewers only: `show` says why)" in " ".join(
        results.stdout.split()), results.stdout
    ledger = ran.ledger()
    try:
        session = ledger.session("cap")
        assert session is not None
        rows = view_to_json(build_view(ledger, session))["experiments"]
    finally:
        ledger.close()
    assert [r["review"]["offline_only"] for r in rows if r["review"]] == [True]
    # status and the report say the same.
    status = run_cli(toy_repo, "status", "--tag", "cap", env={"COLUMNS": "400"})
    assert f"review gate {tally[:80]}" in " ".join(status.stdout.split()), status.stdout
    report = run_cli(toy_repo, "report", "--tag", "cap", "--out", str(toy_repo.parent / "rep"))
    assert report.returncode == 0, report.stdout + report.stderr
    assert "by the offline reviewers alone" in (toy_repo.parent / "rep" / "report.md").read_text()


def test_a_review_cap_from_the_command_line_is_named_as_the_flag(repo: Repo) -> None:
    """`autoresearch review --max-usd` is the one place where the cap is that flag."""
    repo.commit("init", **{"target.py": "X = 3.0\n"})
    repo.branch("feature")
    repo.commit("scale", **{"target.py": OFF_BY_ONE})
    with FakeModelServer(handler=model) as server:
        (repo.path / CONFIG_NAME).write_text(f"[review]\nllm = {llm_table(server)}\n")
        result = run_cli(repo.path, "review", "--base", "main", "--max-usd", "0.01",
                         "--no-record", "--format", "json", env=KEY)
        assert server.requests == []
    assert result.returncode == 0, result.stderr
    notes = " ".join(json.loads(result.stdout)["notes"])
    assert ("the LLM reviewers were not asked: one call may cost $0.06" in notes
            and "more than the whole of the $0.01 cap (--max-usd): raise --max-usd" in notes)


# --- prices -----------------------------------------------------------------------------------

def test_a_model_without_a_price_is_said_to_cost_nothing_on_any_endpoint(repo: Repo) -> None:
    """A local server is no official API, so the provider does not warn: the review does, for
    the reviewers' model and the verifier's, in its notes and in `check`'s gate line."""
    repo.commit("init", **{"target.py": "X = 3.0\n"})
    repo.branch("feature")
    repo.commit("scale", **{"target.py": OFF_BY_ONE})
    with FakeModelServer(handler=model) as server:
        table = llm_table(server, prices=None, verify_model="cheap-model")
        (repo.path / CONFIG_NAME).write_text(f"[review]\nllm = {table}\n")
        result = run_cli(repo.path, "review", "--base", "main", "--no-record", env=KEY)
        verified = [r for r in server.requests if "You check findings" in r.prompt_text()]
    assert result.returncode == 0, result.stderr
    assert verified, "the verifier was never asked"
    said = " ".join(result.stdout.split())
    for name in ("fake-model", "cheap-model"):
        assert (f"note: no price known for {name} at {server.openai_url}, not a paid API this "
                "knows: its calls count as $0 and the review's cap cannot stop them") in said
        assert f'prices = {{ "{name}" = {{ input = 3.0, output = 15.0 }} }}' in said
    # The gate warns before a session (`check`, `run`): both models, from the config alone.
    (repo.path / CONFIG_NAME).write_text(f'[review]\ngate = "red"\nllm = {table}\n')
    warned = gate_warnings(load_review_config(repo.path)[0], env=KEY)
    assert [w.split(", not a paid")[0] for w in warned] == [
        f"no price known for {name} at {server.openai_url}" for name in ("fake-model",
                                                                          "cheap-model")]


def test_a_verify_model_that_is_not_a_name_is_refused(repo: Repo) -> None:
    repo.commit("init", **{"target.py": "X = 3.0\n"})
    (repo.path / CONFIG_NAME).write_text(
        '[review]\nllm = { provider = "openai", base_url = "http://127.0.0.1:9/v1", '
        'model = "fake-model", api_key_env = "FAKE_KEY", verify_model = 3 }\n')
    result = run_cli(repo.path, "review", "--no-record", env=KEY)
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert ("error: verify_model must be a model name in quotes, got 3 (int) where: "
            "autoresearch.toml → review.llm.verify_model fix: write it as a string "
            '(verify_model = "claude-haiku-4-5")') in said, said
    assert "Traceback" not in result.stderr
    with pytest.raises(ConfigError, match=r"got the blank string ' '"):
        resolve_llm({"provider": "openai", "base_url": "http://127.0.0.1:9/v1",
                     "model": "fake-model", "api_key_env": "FAKE_KEY", "verify_model": " "},
                    "", {}, KEY, when_unset="off")


# --- a plugin that returns the wrong thing ----------------------------------------------------

PLUGIN = '''\
from autoresearch.review.reviewers.base import Reviewer, ReviewerReport


class ReturnsNothing(Reviewer):
    name = "nothing"

    def review(self, ctx):
        return None


class ReturnsDicts(Reviewer):
    name = "dicts"

    def review(self, ctx):
        return ReviewerReport(findings=[{"path": "target.py", "line": 1}])


class CannotSay(Reviewer):
    name = "cannotsay"

    def skip_reason(self, ctx):
        raise KeyError("no such setting")

    def review(self, ctx):
        return ReviewerReport()
'''


def plugin_env(tmp_path: Path) -> dict[str, str]:
    """An environment where two reviewer plugins are installed (a dist-info on the path)."""
    where = tmp_path / "plugins"
    info = where / "badreviewers-0.1.dist-info"
    info.mkdir(parents=True)
    (where / "badreviewers.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: badreviewers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[autoresearch.reviewers]\nnothing = badreviewers:ReturnsNothing\n"
        "dicts = badreviewers:ReturnsDicts\ncannotsay = badreviewers:CannotSay\n")
    return {"PYTHONPATH": os.pathsep.join([str(where), str(TESTS.parent)])}


def test_a_plugin_returning_no_report_fails_alone_and_the_others_findings_stand(
        repo: Repo, tmp_path: Path) -> None:
    repo.commit("init", **{"target.py": "X = 3.0\n"})
    repo.branch("feature")
    repo.commit("notify", **{"target.py": INJECTION})
    result = run_cli(repo.path, "review", "--base", "main", "--offline", "--no-record",
                     "--reviewers", "bandit,nothing,dicts,cannotsay", "--format", "json",
                     env=plugin_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    review = json.loads(result.stdout)
    runs = {r["name"]: r for r in review["reviewers"]}
    assert runs["bandit"]["status"] == "ok"
    assert [f["evidence"].strip() for f in review["findings"]] == [INJECTED_LINE]
    must = ("review(ctx) must return autoresearch.review.reviewers.base.ReviewerReport("
            "findings=[RawFinding(...), ...])")
    assert runs["nothing"]["status"] == "failed"
    assert runs["nothing"]["note"] == f"review() returned None, not a ReviewerReport: {must}"
    assert runs["dicts"]["status"] == "failed"
    assert runs["dicts"]["note"].startswith("review() returned a ReviewerReport whose "
                                            "findings[0] is dict {'line': 1, 'path': "
                                            "'target.py'}, not a RawFinding: ")
    assert runs["cannotsay"]["status"] == "failed"
    assert runs["cannotsay"]["note"] == "skip_reason() raised KeyError: 'no such setting'"


def test_in_the_gate_a_plugin_returning_no_report_leaves_the_others_to_block(
        toy_repo: Path, tmp_path: Path) -> None:
    use_script(toy_repo, [PLANT], extra_config='\n[review]\ngate = "red"\n'
               'reviewers = ["bandit", "nothing"]\n')
    run = run_cli(toy_repo, "run", "--iterations", "2", "--tag", "plug",
                  env=plugin_env(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    (planted,) = Ran(toy_repo, "plug", run).experiments().values()
    assert planted.status == "discard"
    assert planted.decision_reason.startswith("review gate (red): red target.py:7 ")
    assert "kept unreviewed" not in run.stdout


# --- a gate whose reviews all fail ------------------------------------------------------------

def test_keeps_the_gate_failed_to_review_are_counted_in_the_tally(
        toy_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_script(toy_repo, [TIDY], extra_config='\n[review]\ngate = "red"\n')

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the analyzer ran out of memory")

    monkeypatch.setattr("autoresearch.gatekeeper.review_candidate", broken)
    session = Session(toy_repo, load_config(toy_repo / CONFIG_NAME), "fails",
                      Display(Console(file=io.StringIO(), width=200)))
    session.open()
    try:
        scheduler.run(session, scheduler.Limits(iterations=2))
    finally:
        session.close()
    ledger = Ledger(toy_repo / ".autoresearch" / "ledger.db")
    try:
        row = ledger.session("fails")
        assert row is not None
        view = build_view(ledger, row)
    finally:
        ledger.close()
    assert gate_tally(view.experiments) == ("1 kept unreviewed (the review gate failed; "
                                            "`show ID` says why)")

