"""LLM reviewers through the real SDKs against the fake model server: passes, the scale rule,
quote anchoring, the verification call, the cost cap, failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from autoresearch.errors import ConfigError
from autoresearch.review.context import ReviewSettings
from autoresearch.review.llm_setup import resolve_llm
from autoresearch.review.model import Review
from autoresearch.review.pipeline import run_review
from tests.llm.fake_server import FakeModelServer, Recorded, Reply
from tests.review.conftest import Repo, llm_options

TOTAL = """\
def total(items):
    result = 0
    for i in range(len(items) + 1):
        result += items[i]
    return result
"""

REAL = {"path": "calc.py", "line": 3, "end_line": 3, "angle": "logic", "category": "logic",
        "severity": "high", "confidence": 0.8, "title": "Loop reads one past the end",
        "body": "range(len(items) + 1) makes items[i] raise IndexError on the last pass.",
        "quote": "for i in range(len(items) + 1):"}
INVENTED = {"path": "calc.py", "line": 2, "angle": "logic", "category": "logic",
            "severity": "high", "confidence": 0.9, "title": "Result is never reset",
            "body": "The accumulator is shared between calls.", "quote": "global result"}


def is_verification(rec: Recorded) -> bool:
    return "You check findings" in rec.prompt_text()


def is_review(rec: Recorded) -> bool:
    return "You review a code change" in rec.prompt_text()


def scripted(findings: list[dict[str, Any]], verdicts: Callable[[str], str] | None = None,
             **usage: int) -> Callable[[Recorded], Reply]:
    """Review calls answer `findings`; verification calls confirm every finding (or ask
    `verdicts(prompt)` for the verdict of each)."""
    def handle(rec: Recorded) -> Reply:
        text = rec.prompt_text()
        if is_verification(rec):
            count = text.count("### F")
            verdict = [{"id": f"F{i}", "verdict": verdicts(text) if verdicts else "confirmed",
                        "reason": "checked against the code"} for i in range(1, count + 1)]
            return Reply(text=json.dumps({"verdicts": verdict}), **usage)
        return Reply(text="Here is my review:\n```json\n" + json.dumps({"findings": findings})
                     + "\n```", **usage)
    return handle


def settings(server: FakeModelServer, provider: str = "anthropic", **kw: Any) -> ReviewSettings:
    extra = kw.pop("options", {})
    llm, note = resolve_llm(llm_options(server, provider, **extra), "auto", {}, {},
                            when_unset="auto")
    return ReviewSettings(llm=llm, llm_note=note, **kw)


def small_change(repo: Repo, rules: dict[str, str] | None = None) -> Any:
    repo.commit("init", **{"calc.py": "x = 1\n", **(rules or {})})
    repo.branch("feature")
    repo.commit("total", **{"calc.py": TOTAL})
    return repo.change()


def test_findings_are_anchored_verified_and_ranked_and_a_hallucination_never_reaches_anyone(
        repo: Repo, server: FakeModelServer) -> None:
    change = small_change(repo)
    server._handler = scripted([REAL, INVENTED])
    review = run_review(change, settings(server))
    reviews = [r for r in server.requests if is_review(r)]
    checks = [r for r in server.requests if is_verification(r)]
    assert len(reviews) == 1  # tiny change: one pass for every angle
    prompt = reviews[0].prompt_text()
    assert "3 |     for i in range(len(items) + 1):" in prompt  # the numbered head file
    assert "+    for i in range(len(items) + 1):" in prompt  # the diff
    assert "logic:" in prompt and "security:" in prompt
    assert len(checks) == 1 and checks[0].prompt_text().count("### F") == 1
    assert "global result" not in checks[0].prompt_text()
    llm = [f for f in review.findings if "llm:logic" in f.sources]
    assert [(f.colour, f.location, f.title) for f in llm] == [
        ("red", "calc.py:3", "Loop reads one past the end")]
    dropped = {d.finding.title: d for d in review.dropped}
    assert dropped["Result is never reset"].stage == "quote"
    assert review.cost.calls == 2 and review.cost.input_tokens == 2400
    # claude-sonnet-4-6 at $3 / $15 per million: 2 x (1200 in + 300 out)
    assert review.cost.usd == pytest.approx(2 * (1200 * 3 + 300 * 15) / 1e6)
    assert {u.purpose for u in review.usage} == {"review", "verify"}


def test_the_verifier_rejecting_a_finding_drops_it(repo: Repo, server: FakeModelServer) -> None:
    change = small_change(repo)
    server._handler = scripted([REAL], verdicts=lambda _: "rejected")
    review = run_review(change, settings(server))
    assert not [f for f in review.findings if "llm:logic" in f.sources]
    assert [d.stage for d in review.dropped] == ["model"]
    assert "rejected by the verifier" in review.dropped[0].reason


def test_review_md_rules_root_and_per_directory_reach_the_rules_angle(
        repo: Repo, server: FakeModelServer) -> None:
    repo.commit("init", **{
        "REVIEW.md": "- Never print; use the logger.\n",
        "api/REVIEW.md": "- Every handler checks the caller's token.\n",
        "api/handler.py": "def handle(req):\n    return 1\n",
        "tools/x.py": "y = 1\n"})
    repo.branch("feature")
    repo.commit("edit", **{"api/handler.py": "def handle(req):\n    print(req)\n    return 1\n"})
    server._handler = scripted([])
    review = run_review(repo.change(), settings(server))
    prompt = next(r for r in server.requests if is_review(r)).prompt_text()
    assert "Never print" in prompt and "caller's token" in prompt
    assert "api/REVIEW.md (applies to files under api/)" in prompt
    assert "project rules" in prompt
    assert review.findings == ()


def test_scale_rule_sets_the_number_of_calls(repo: Repo, server: FakeModelServer) -> None:
    repo.commit("init", **{f"m{i}.py": "a = 1\n" for i in range(8)})
    repo.branch("feature")
    server._handler = scripted([])
    repo.commit("small", **{f"m{i}.py": "a = 1\nb = 2\n" for i in range(3)})
    run_review(repo.change(), settings(server))
    small = [r for r in server.requests if is_review(r)]
    assert len(small) == 2  # logic(+rules), security(+history)
    server.requests.clear()
    big = "\n".join(f"v{j} = {j}" for j in range(40)) + "\n"
    repo.commit("large", **{f"m{i}.py": big for i in range(8)})
    review = run_review(repo.change(), settings(server))
    large = [r for r in server.requests if is_review(r)]
    assert len(large) == 2  # one pass per applicable angle: logic, security
    assert "large change" in review.scale


def test_the_cap_stops_calls_and_says_so(repo: Repo, server: FakeModelServer) -> None:
    change = small_change(repo)
    server._handler = scripted([REAL])
    nothing = run_review(change, settings(server, max_usd=0.001))
    assert server.requests == []
    assert nothing.cost.capped and nothing.cost.usd == 0
    # No call fits under the whole cap: said as such, naming the setting to change.
    assert nothing.llm_not_asked is not None
    assert nothing.llm_not_asked.startswith("the LLM reviewers were not asked: one call may cost $")
    assert ("more than the whole of the $0.001 cap ([review] max_usd): raise [review] max_usd, "
            "or lower max_tokens in [review] llm") in nothing.llm_not_asked
    assert "--max-usd" not in " ".join(nothing.notes)
    run = {r.name: r for r in nothing.reviewers}["llm:logic+security"]
    assert run.status == "not-asked" and "cap ([review] max_usd)" in run.note
    # Enough for the review call, not for the verification after it: the finding is held back.
    server._handler = scripted([REAL], input_tokens=30_000)
    partial = run_review(change, settings(server, max_usd=0.1, options={"max_tokens": 1000}))
    assert len(server.requests) == 1 and partial.cost.capped
    assert not [f for f in partial.findings if "llm:logic" in f.sources]
    assert [d.stage for d in partial.dropped] == ["budget"]


def test_an_invalid_key_fails_the_llm_pass_but_not_the_review(
        repo: Repo, server: FakeModelServer) -> None:
    change = small_change(repo)
    server.push(Reply(status=401, error="invalid x-api-key"))
    review = run_review(change, settings(server))
    runs = {r.name: r for r in review.reviewers}
    assert runs["llm:logic+security"].status == "failed"
    assert "invalid x-api-key" in runs["llm:logic+security"].note
    assert runs["ruff"].status == "ok"
    assert review.failed


def test_a_reply_that_is_not_json_is_asked_again_once(repo: Repo,
                                                     server: FakeModelServer) -> None:
    change = small_change(repo)
    calls = {"n": 0}
    inner = scripted([REAL])

    def handle(rec: Recorded) -> Reply:
        if is_review(rec):
            calls["n"] += 1
            if calls["n"] == 1:
                return Reply(text="I think the loop is wrong.")
        return inner(rec)

    server._handler = handle
    review = run_review(change, settings(server))
    second = [r for r in server.requests if is_review(r)][1]
    assert "not the JSON object asked for" in second.prompt_text()
    assert [f.location for f in review.findings if "llm:logic" in f.sources] == ["calc.py:3"]


def test_openai_compatible_endpoint_and_agreement_with_an_analyzer(
        repo: Repo, server: FakeModelServer) -> None:
    repo.commit("init", **{"app.py": "import subprocess\n"})
    repo.branch("feature")
    repo.commit("run", **{"app.py": "import subprocess\n\n\ndef run(cmd):\n"
                          "    return subprocess.run(f'echo {cmd}', shell=True)\n"})
    server._handler = scripted([{
        "path": "app.py", "line": 5, "angle": "security", "category": "injection",
        "severity": "high", "confidence": 0.7, "title": "Shell injection through cmd",
        "body": "cmd is interpolated into a shell command line.",
        "quote": "return subprocess.run(f'echo {cmd}', shell=True)"}])
    review: Review = run_review(repo.change(), settings(server, provider="openai"))
    assert all(r.path.endswith("/chat/completions") for r in server.requests)
    merged = [f for f in review.findings if f.category == "injection"]
    assert len(merged) == 1
    assert set(merged[0].sources) == {"bandit B602", "llm:security"}
    assert merged[0].confidence > 0.85 and merged[0].title == "Shell injection through cmd"


def test_a_regression_claim_is_verified_against_the_history_it_cites(
        repo: Repo, server: FakeModelServer) -> None:
    repo.commit("init", **{"retry.py": "def call(fn, n=3):\n    for _ in range(n - 1):\n"
                           "        fn()\n"})
    repo.commit("Fix retry loop: one attempt too few", **{
        "retry.py": "def call(fn, n=3):\n    for _ in range(n):\n        fn()\n"})
    repo.branch("feature")
    repo.commit("tidy", **{"retry.py": "def call(fn, n=3):\n    \"\"\"Call fn n times.\"\"\"\n"
                           "    for _ in range(n - 1):\n        fn()\n"})
    server._handler = scripted([{
        "path": "retry.py", "line": 3, "angle": "history", "category": "regression",
        "severity": "high", "confidence": 0.8, "title": "Brings back the fixed bound",
        "body": "The fix commit removed this bound.", "quote": "for _ in range(n - 1):"}])
    review = run_review(repo.change(), settings(server))
    review_prompt = next(r for r in server.requests if is_review(r)).prompt_text()
    assert "history/regression" in review_prompt  # a fix touched the file: the angle runs
    assert "removed: for _ in range(n - 1):" in review_prompt
    check = next(r for r in server.requests if is_verification(r)).prompt_text()
    assert "## History of this file" in check and "Fix retry loop" in check
    merged = [f for f in review.findings if f.category == "regression"]
    assert merged and set(merged[0].sources) >= {"history reintroduced-line", "llm:history"}


def test_llm_setup_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    off, why = resolve_llm(None, "tune", {}, {"ANTHROPIC_API_KEY": "k"}, when_unset="off")
    assert off is None and "[review] llm is not set" in why
    auto, why = resolve_llm(None, "tune", {}, {"ANTHROPIC_API_KEY": "k"}, when_unset="auto")
    assert auto is not None and auto.settings.provider == "anthropic"
    assert "ANTHROPIC_API_KEY is set" in why and auto.settings.max_tokens == 4096
    none, why = resolve_llm(None, "tune", {}, {}, when_unset="auto")
    assert none is None and "no model API is configured" in why
    shared, why = resolve_llm(None, "llm", {"provider": "ollama", "model": "qwen3:8b"}, {},
                              when_unset="off")
    assert shared is not None and shared.settings.model == "qwen3:8b"
    assert "[proposer] options" in why
    own, _ = resolve_llm({"provider": "openai", "model": "gpt-4.1", "verify_model": "gpt-4.1-mini",
                          "prices": {"gpt-4.1": [1, 2]}}, "tune", {}, {"OPENAI_API_KEY": "k"},
                         when_unset="off")
    assert own is not None and own.verify_model == "gpt-4.1-mini"
    assert own.prices.cost("gpt-4.1", 1_000_000, 0) == 1.0
    disabled, _ = resolve_llm(False, "llm", {"provider": "ollama"}, {}, when_unset="auto")
    assert disabled is None


def test_non_finite_numbers_in_a_reply_neither_fail_the_pass_nor_reach_the_outputs(
        repo: Repo, server: FakeModelServer) -> None:
    """Python's JSON reader takes NaN and 1e400 (inf): a confidence of NaN is read as unknown
    (0.5), not written into SARIF as the invalid literal NaN; a line of 1e400 drops that finding
    alone, and the pass goes on."""
    from autoresearch.review.outputs.jsonout import to_json
    from autoresearch.review.outputs.sarif import render_sarif

    change = small_change(repo)
    overflow = {**REAL, "line": float("inf"), "title": "Line number overflows"}
    server._handler = scripted([{**REAL, "confidence": float("nan")}, overflow])
    review = run_review(change, settings(server))
    assert all(r.status != "failed" for r in review.reviewers), review.reviewers
    llm = [f for f in review.findings if "llm:logic" in f.sources]
    assert [(f.location, f.confidence) for f in llm] == [("calc.py:3", 0.5)]
    dropped = {d.finding.title: d.reason for d in review.dropped}
    assert "no line number" in dropped["Line number overflows"]
    json.dumps(to_json(review), allow_nan=False)  # strict JSON, as SARIF consumers read it
    json.dumps(render_sarif(review, repo.path), allow_nan=False)


def test_the_cap_holds_on_text_in_a_script_of_one_token_a_character(
        repo: Repo, server: FakeModelServer) -> None:
    """Chinese is about one token a character, not 3.5 characters a token: the reservation
    must count it so, or a call the cap cannot afford is made and the cap is crossed."""
    line = "说明" * 2_000
    repo.commit("init", **{"calc.py": "x = 1\n"})
    repo.branch("feature")
    repo.commit("docs", **{"calc.py": "".join(f"# {line}\n" for _ in range(4)) + "x = 1\n"})

    def realistic(rec: Recorded) -> Reply:
        text = rec.prompt_text()
        wide = sum(1 for c in text if not c.isascii())
        return Reply(text='{"findings": []}', input_tokens=wide + (len(text) - wide) // 4,
                     output_tokens=50)

    server._handler = realistic
    # The 16,000 characters, in the diff and in the numbered file, are ~32,000 tokens ($0.10 at
    # $3 a million); counted 3.5 characters a token they looked like ~$0.045 with the reply.
    cap = 0.06
    review = run_review(repo.change(), settings(server, max_usd=cap,
                                                options={"max_tokens": 1000}))
    assert review.cost.usd <= cap
    assert review.cost.capped and server.requests == []


def test_an_unusable_reply_whose_retry_the_cap_refuses_fails_the_pass(
        repo: Repo, server: FakeModelServer) -> None:
    """The first call was made and paid for, and reviewed nothing: a pass the cap then stops
    is a failure (`--fail-on` must see it), not a pass that was merely never asked."""
    change = small_change(repo)
    server._handler = lambda rec: Reply(text="I think the loop is wrong.")
    # Room for one call (~$0.02 reserved, $0.0081 spent), not for the retry after it.
    review = run_review(change, settings(server, max_usd=0.025, options={"max_tokens": 1000}))
    assert len(server.requests) == 1
    run = {r.name: r for r in review.reviewers}["llm:logic+security"]
    assert run.status == "failed"
    assert "its retry was not made: one call may cost $" in run.note
    assert "would pass the $0.025 cap ([review] max_usd)" in run.note
    assert review.failed


def test_a_huge_unusable_reply_is_not_echoed_whole_in_the_retry(
        repo: Repo, server: FakeModelServer) -> None:
    change = small_change(repo)
    server._handler = lambda rec: Reply(text="x" * 2_000_000)
    review = run_review(change, settings(server, max_usd=None))
    first, retry = [r for r in server.requests if is_review(r)]
    assert len(retry.prompt_text()) < len(first.prompt_text()) + 10_000
    assert "more characters]" in retry.prompt_text()
    assert {r.name: r.status for r in review.reviewers}["llm:logic+security"] == "failed"


@pytest.mark.parametrize("value", [-5, "60000", True, 1.5, 100])
def test_review_context_tokens_is_checked_as_the_proposers_is(value: object) -> None:
    # A bare int() took -5 (no context), "60000" and true (1) as budgets.
    options = {"provider": "anthropic", "context_tokens": value}
    with pytest.raises(ConfigError) as info:
        resolve_llm(options, "tune", {}, {"ANTHROPIC_API_KEY": "k"}, when_unset="auto")
    assert "context_tokens" in str(info.value) and "[review] llm" in str(info.value)
    setup, _ = resolve_llm({**options, "context_tokens": 8000}, "tune", {},
                           {"ANTHROPIC_API_KEY": "k"}, when_unset="auto")
    assert setup is not None and setup.context_tokens == 8000
