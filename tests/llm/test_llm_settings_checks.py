"""The llm proposer's [proposer] options are checked when the config is loaded, and what its
failures say: a base_url without http://, a max_tokens_field the SDK takes no keyword for,
numbers and flags out of range or of the wrong type, an API key pasted into api_key_env, a
Retry-After given as a date, the fix of a failed proposal, Anthropic's base URL (no /v1).

Where it matters the real CLI runs (`check`, `run`) against the fake model server on 127.0.0.1,
through the real SDKs."""

from __future__ import annotations

import email.utils
import json
import math
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from autoresearch.errors import ConfigError
from autoresearch.proposers.faults import FailedProposal, FatalProposerError, ProposerOutage
from autoresearch.proposers.llm import LLMProposer
from autoresearch.proposers.llm.call_faults import classify
from autoresearch.proposers.llm.prices import PriceTable
from autoresearch.proposers.llm.providers import Part, Provider, Turn, make_provider
from autoresearch.proposers.llm.settings import ProviderSettings, looks_like_key
from tests.conftest import run_cli
from tests.llm.conftest import MakeCtx, ledger_rows, llm_options, make_config, use_llm_config
from tests.llm.fake_server import FakeModelServer, Reply

GOOD = ("HYPOTHESIS: move X to the optimum at 7\nRATIONALE: (X - 7)^2.\n\n"
        "target.py\n<<<<<<< SEARCH\nX = 3.0\n=======\nX = 7.0\n>>>>>>> REPLACE\n")


def use_openai_model(repo: Path, lines: str) -> None:
    """The llm proposer on an OpenAI-compatible server, its [proposer] table `lines`; committed."""
    use_llm_config(repo, "\n[proposer]\nname = \"llm\"\nprovider = \"openai\"\n"
                   "model = \"gpt-4.1\"\nretry_base_seconds = 0.01\n" + textwrap.dedent(lines))


def experiments(repo: Path) -> list[tuple[Any, ...]]:
    return ledger_rows(repo, "id, status, decision_reason")


def one_line(text: str) -> str:
    return " ".join(text.split())


def settings(**options: Any) -> ProviderSettings:
    return ProviderSettings.from_options({"provider": "ollama", "model": "m", **options}, {})


def ask(p: Provider) -> str:
    return p.complete([Part("You are a test.")], [Turn.user("the task")]).text


# --- 1. base_url must be an http(s) URL -------------------------------------------------------


def test_a_base_url_without_its_scheme_is_a_config_error_for_check_and_run(
        toy_repo: Path, server: FakeModelServer) -> None:
    # The SDK cannot connect to "127.0.0.1:PORT/v1": every call was "connection failed" and the
    # session paused on it for ever, while `check` passed it.
    bare = server.openai_url.removeprefix("http://")
    use_openai_model(toy_repo, f'base_url = "{bare}"\n')
    for command in (("check",), ("run", "--iterations", "2")):
        result = run_cli(toy_repo, *command, timeout=120)
        said = one_line(result.stdout + result.stderr)
        assert result.returncode == 2, said
        assert f"base_url {bare!r} is not a URL the API can be reached at" in said
        assert "[proposer] base_url" in said
        assert f'write base_url = "http://{bare}"' in said
    assert experiments(toy_repo) == []  # `run` recorded nothing
    assert server.requests == [] and server.listings == 0


@pytest.mark.parametrize(("url", "problem", "fix"), [
    ("localhost:11434/v1", "no http:// or https:// in front", '"http://localhost:11434/v1"'),
    ("ftp://example.com/v1", "its scheme is 'ftp', not http or https", "http://HOST:PORT/v1"),
    ("http://", "it names no host", "http://HOST:PORT/v1"),
    ("http://127.0.0.1:port/v1", "has a port that is not a number", "PORT a number"),
    ("http://localhost:99999/v1", "not a number from 0 to 65535", "from 0 to 65535"),
    # A slash short: the fix writes the URL meant, not "http://http:/localhost...".
    ("http:/localhost:8000/v1", "its scheme is not followed by //",
     '"http://localhost:8000/v1"'),
    ("https:example.com/v1", "its scheme is not followed by //", '"https://example.com/v1"'),
])
def test_each_unreachable_base_url_is_named_with_its_fix(url: str, problem: str,
                                                         fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(base_url=url)
    assert problem in info.value.what and url in info.value.what
    assert info.value.where == "autoresearch.toml → [proposer] base_url"
    assert fix in str(info.value.fix)


def test_a_base_url_from_the_environment_is_checked_too() -> None:
    with pytest.raises(ConfigError) as info:
        ProviderSettings.from_options({"provider": "openai", "model": "m"},
                                      {"OPENAI_BASE_URL": "127.0.0.1:8000/v1"})
    assert info.value.where == "the environment → OPENAI_BASE_URL"
    assert info.value.fix is not None
    assert info.value.fix.startswith("export OPENAI_BASE_URL=http://127.0.0.1:8000/v1")


def test_usual_base_urls_are_accepted_as_written() -> None:
    for url in ("http://127.0.0.1:8000/v1", "https://openrouter.ai/api/v1", "http://[::1]:8080/v1"):
        assert settings(base_url=url).base_url == url


# --- 2. max_tokens_field ----------------------------------------------------------------------


def test_a_token_field_the_sdk_has_no_keyword_for_goes_in_the_body(
        toy_repo: Path, make_ctx: MakeCtx) -> None:
    # llama.cpp's older server reads n_predict: the SDK refused it as a keyword (a TypeError
    # traceback in `check` and `run`). Listing unsupported here, so `check` sends a ping too.
    with FakeModelServer(handler=lambda r: Reply(text=GOOD), models=None) as server:
        use_openai_model(toy_repo, f'base_url = "{server.openai_url}"\nmax_tokens = 777\n'
                                   'max_tokens_field = "n_predict"\n')
        checked = run_cli(toy_repo, "check", timeout=120)
        result = run_cli(toy_repo, "run", "--iterations", "2", timeout=180)
        bodies = [r.body for r in server.requests]
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    pings = [b for b in bodies if b["messages"] == [{"role": "user", "content": "ping"}]]
    calls = [b for b in bodies if b not in pings]
    assert len(pings) == 2 and all(b["n_predict"] == 1 for b in pings)  # check's, then run's
    assert len(calls) == 1 and calls[0]["n_predict"] == 777
    assert not any("max_tokens" in b or "max_completion_tokens" in b for b in bodies)
    assert [row[1] for row in experiments(toy_repo)] == ["keep", "keep"]


@pytest.mark.parametrize("field", ["n_predict", "max_tokens"])
def test_extra_body_wins_over_the_token_field_as_over_every_field(
        server: FakeModelServer, field: str) -> None:
    server.push(Reply(text="hi"))
    ask(make_provider(ProviderSettings.from_options(
        llm_options(server, "openai", max_tokens_field=field, extra_body={field: 5, "top_k": 3}),
        {}), PriceTable()))
    assert (server.requests[0].body[field], server.requests[0].body["top_k"]) == (5, 3)


@pytest.mark.parametrize(("value", "said"), [
    ("", "expected the name of the request field"),
    ("max tokens", "expected the name of the request field"),
    (5, "expected the name of the request field"),
    ("messages", "names a field every request already carries"),
])
def test_a_token_field_that_is_no_field_name_is_a_config_error(value: object, said: str) -> None:
    with pytest.raises(ConfigError, match=said) as info:
        settings(max_tokens_field=value)
    assert info.value.where == "autoresearch.toml → [proposer] max_tokens_field"


# --- 3. numbers and flags ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "said"), [
    ("max_retries", -1, "max_retries = -1 (a whole number) is out of range: it must be from 0 "
                        "to 100"),
    ("max_retries", 2.5, "max_retries = 2.5 (a number): expected a whole number from 0 to 100"),
    ("max_retries", "3", 'max_retries = "3" (a string): expected a whole number'),
    ("timeout_seconds", 0, "timeout_seconds = 0 (a whole number) is out of range: it must be "
                           "more than 0 and at most 86400"),
    ("timeout_seconds", -5.0, "timeout_seconds = -5.0 (a number) is out of range"),
    ("timeout_seconds", math.nan, "timeout_seconds = nan (a number) is out of range"),
    ("timeout_seconds", math.inf, "timeout_seconds = inf (a number) is out of range"),
    ("timeout_seconds", True, "timeout_seconds = true (true or false): expected a number"),
    ("max_tokens", 0, "max_tokens = 0 (a whole number) is out of range: it must be from 1"),
    ("temperature", "abc", 'temperature = "abc" (a string): expected a number from 0 to 2'),
    ("temperature", -0.5, "temperature = -0.5 (a number) is out of range"),
    ("retry_base_seconds", -1, "retry_base_seconds = -1 (a whole number) is out of range"),
    ("retry_max_seconds", math.nan, "retry_max_seconds = nan (a number) is out of range"),
    ("outage_retry_after", -1, "outage_retry_after = -1 (a whole number) is out of range"),
    ("prompt_caching", "false", 'prompt_caching = "false" (a string): expected true or false'),
    ("prompt_caching", 0, "prompt_caching = 0 (a whole number): expected true or false"),
])
def test_each_number_and_flag_is_refused_at_load_with_its_range(key: str, value: object,
                                                                said: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(**{key: value})
    assert said in info.value.what
    assert info.value.where == f"autoresearch.toml → [proposer] {key}"
    assert key in str(info.value.fix)


def test_a_string_that_is_a_number_or_a_flag_is_told_to_lose_its_quotes() -> None:
    with pytest.raises(ConfigError) as number:
        settings(max_retries="3")
    assert "without quotes" in str(number.value.fix)
    with pytest.raises(ConfigError) as flag:
        settings(prompt_caching="false")
    assert flag.value.fix == "write prompt_caching = false, without quotes"


@pytest.mark.parametrize(("key", "value", "said"), [
    ("max_edit_retries", -1, "max_edit_retries = -1 (a whole number) is out of range: it must "
                             "be from 0 to 20"),
    ("context_tokens", 100, "context_tokens = 100 (a whole number) is out of range: it must be "
                            "from 2000"),
    ("context_tokens", "60000", 'context_tokens = "60000" (a string): expected a whole number'),
])
def test_the_proposers_own_numbers_are_refused_at_load(server: FakeModelServer, key: str,
                                                       value: object, said: str) -> None:
    options = llm_options(server, **{key: value})
    with pytest.raises(ConfigError) as info:
        LLMProposer(make_config(**options), options, env={})
    assert said in info.value.what
    assert info.value.where == f"autoresearch.toml → [proposer] {key}"


def test_the_edges_of_each_range_are_accepted(server: FakeModelServer) -> None:
    s = settings(max_retries=0, timeout_seconds=0.5, temperature=0, retry_base_seconds=0,
                 outage_retry_after=0, prompt_caching=False, max_tokens=1)
    assert (s.max_retries, s.timeout_seconds, s.temperature, s.prompt_caching) == (0, 0.5, 0.0,
                                                                                   False)
    options = llm_options(server, max_edit_retries=0, context_tokens=2000)
    p = LLMProposer(make_config(**options), options, env={})
    assert (p.max_edit_retries, p.context_tokens) == (0, 2000)


@pytest.mark.parametrize(("line", "said"), [
    ("max_retries = -1", "[proposer] max_retries = -1 (a whole number) is out of range"),
    ("max_edit_retries = -1", "[proposer] max_edit_retries = -1 (a whole number) is out of range"),
    ("timeout_seconds = nan", "[proposer] timeout_seconds = nan (a number) is out of range"),
    ('prompt_caching = "false"', '[proposer] prompt_caching = "false" (a string): expected true '
                                 "or false"),
])
def test_the_cli_refuses_a_bad_number_or_flag_before_anything_is_recorded(
        toy_repo: Path, server: FakeModelServer, line: str, said: str) -> None:
    use_openai_model(toy_repo, f'base_url = "{server.openai_url}"\n{line}\n')
    for command in (("check",), ("run", "--iterations", "2")):
        result = run_cli(toy_repo, *command, timeout=120)
        output = one_line(result.stdout + result.stderr)
        assert result.returncode == 2, output
        assert said in output and "Traceback" not in output
    assert experiments(toy_repo) == [] and server.requests == []


# --- 4. the fix of a failed proposal is recorded ----------------------------------------------


def test_a_failed_proposals_fix_is_in_its_recorded_reason(toy_repo: Path) -> None:
    # Every reply cut off at max_tokens: the proposal fails saying to raise max_tokens.
    with FakeModelServer(handler=lambda r: Reply(text=GOOD, stop="length")) as server:
        use_openai_model(toy_repo, f'base_url = "{server.openai_url}"\nmax_edit_retries = 0\n'
                                   "max_tokens = 300\n")
        result = run_cli(toy_repo, "run", "--iterations", "2", timeout=180)
        shown = run_cli(toy_repo, "results", "--json", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    (_, status, reason) = experiments(toy_repo)[1]
    assert status == "rejected"
    assert reason.startswith("proposal failed: the model's reply did not yield applicable edits")
    assert reason.endswith("; fix: the replies were cut off at max_tokens: raise [proposer] "
                           "max_tokens (now 300)")
    assert "raise [proposer] max_tokens (now 300)" in shown.stdout


# --- 5. Retry-After as an HTTP date -----------------------------------------------------------


@pytest.mark.parametrize("form", ["imf", "asctime"])
def test_a_retry_after_given_as_a_date_is_the_pause(server: FakeModelServer, form: str) -> None:
    when = time.time() + 120
    date = (email.utils.formatdate(when, usegmt=True) if form == "imf"
            else time.asctime(time.gmtime(when)))
    server.push(Reply(status=429, headers={"retry-after": date}))
    with pytest.raises(ProposerOutage) as info:
        ask(make_provider(ProviderSettings.from_options(llm_options(server, "openai"), {}),
                          PriceTable(), sleep=lambda s: None))
    assert 100 < info.value.retry_after_s <= 121
    assert re.search(r"the server asked for a pause of 1[01]\d(\.\d+)? s", info.value.what)
    assert len(server.requests) == 1  # a pause that long is the session's, not a retry's


def test_a_retry_after_date_in_the_past_asks_for_no_pause(server: FakeModelServer) -> None:
    # The real SDK's own exception for the 429, classified as the retry loop classifies it.
    import openai

    settings = ProviderSettings.from_options(llm_options(server, "openai"), {})
    client = openai.OpenAI(api_key="x", base_url=server.openai_url, max_retries=0)
    asked: list[float | None] = []
    for header in (email.utils.formatdate(time.time() - 3600, usegmt=True), "soon"):
        server.push(Reply(status=429, headers={"retry-after": header}))
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="gpt-4.1", messages=[], max_tokens=1)
        fault = classify(info.value, openai, settings)
        assert fault is not None and fault.kind == "retry"
        asked.append(fault.retry_after)
    client.close()
    assert asked == [0.0, None]  # a date gone by: no pause; garbage: as if none was given


def test_a_retry_after_date_in_the_past_or_garbled_is_no_pause(server: FakeModelServer) -> None:
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    server.push(Reply(status=429, headers={"retry-after": past}),
                Reply(status=429, headers={"retry-after": "soon"}), Reply(text="hello"))
    slept: list[float] = []
    p = make_provider(ProviderSettings.from_options(llm_options(server, "openai"), {}),
                      PriceTable(), sleep=slept.append)
    assert ask(p) == "hello"
    assert len(slept) == 2 and max(slept) <= 0.05  # the backoff's own schedule


# --- 6. what the messages say -----------------------------------------------------------------


def test_an_anthropic_404_says_its_base_url_must_not_end_in_v1(server: FakeModelServer) -> None:
    server.push(Reply(status=404, error="not found"), Reply(status=404, error="not found"))
    for url, advice in ((server.anthropic_url + "/v1", "must not end in /v1, which the SDK adds "
                                                       "itself: remove the /v1"),
                        (server.anthropic_url, "must not end in /v1: the SDK adds /v1/messages")):
        options = llm_options(server, "anthropic", base_url=url)
        with pytest.raises(FatalProposerError) as info:
            ask(make_provider(ProviderSettings.from_options(options, {}), PriceTable()))
        assert advice in str(info.value.fix)
        assert "OpenAI" not in str(info.value.fix)


def test_a_reply_that_is_not_the_apis_gets_each_protocols_advice(server: FakeModelServer) -> None:
    page = Reply(raw="<html>hi</html>", content_type="text/html")
    server.push(page, page)
    anthropic = make_provider(ProviderSettings.from_options(
        llm_options(server, "anthropic", max_retries=0), {}), PriceTable())
    openai = make_provider(ProviderSettings.from_options(
        llm_options(server, "openai", max_retries=0), {}), PriceTable())
    with pytest.raises(ProposerOutage) as refused_a:
        ask(anthropic)
    with pytest.raises(ProposerOutage) as refused_o:
        ask(openai)
    assert "an Anthropic base URL must not end in /v1" in refused_a.value.what
    assert "OpenAI-compatible" not in refused_a.value.what
    assert "an OpenAI-compatible server's usually ends in /v1" in refused_o.value.what


def test_an_empty_reply_is_said_to_be_empty(server: FakeModelServer, make_ctx: MakeCtx) -> None:
    server.push(Reply(text=""), Reply(text="HYPOTHESIS: none\n"))
    options = llm_options(server, max_edit_retries=1)
    with pytest.raises(FailedProposal) as info:
        LLMProposer(make_config(**options), options, env={}).propose(make_ctx())
    retry = server.requests[1].body["messages"][-1]["content"]
    assert "the reply contains no edit blocks: it was empty" in json.dumps(retry)
    # The second reply has text but no blocks: that one is not called empty.
    assert info.value.what.endswith("- the reply contains no edit blocks")


KEY = "sk-ant-api03-Zq8xY2kFh3LmN0pQrS7tUvWx9yZaBcDeFgHiJkL"


@pytest.mark.parametrize("value", [KEY, "sk-or-v1-0123456789abcdef", "gsk_4f9a8b7c6d5e4f3a2b1c0d",
                                   "Zq8xY2kFh3LmN0pQrS7tUvWx9yZaBcDeFgHiJkL0123"])
def test_a_key_pasted_into_api_key_env_is_refused_and_never_printed(value: str) -> None:
    for provider in ("anthropic", "ollama"):  # an official API and a local server alike
        with pytest.raises(ConfigError) as info:
            ProviderSettings.from_options({"provider": provider, "model": "m",
                                           "api_key_env": value}, {})
        error = info.value
        assert "looks like an API key" in error.what and "not shown" in error.what
        assert error.where == "autoresearch.toml → [proposer] api_key_env"
        assert value not in str(error) and value[:12] not in str(error)


def test_check_never_prints_a_key_pasted_into_api_key_env(toy_repo: Path,
                                                          server: FakeModelServer) -> None:
    use_openai_model(toy_repo, f'base_url = "{server.openai_url}"\napi_key_env = "{KEY}"\n')
    result = run_cli(toy_repo, "check", timeout=120)
    assert result.returncode == 2
    assert "looks like an API key" in result.stdout + result.stderr
    assert KEY[:12] not in result.stdout + result.stderr


def test_variable_names_are_taken_and_a_non_name_is_named() -> None:
    for name in ("OPENROUTER_API_KEY", "MY_COMPANY_OPENAI_KEY_FOR_AUTORESEARCH", "_KEY"):
        assert not looks_like_key(name)
        s = ProviderSettings.from_options({"provider": "ollama", "model": "m",
                                           "api_key_env": name}, {name: "k"})
        assert (s.api_key_env, s.api_key) == (name, "k")
    with pytest.raises(ConfigError, match="'MY-KEY'|\"MY-KEY\" is not an environment variable"):
        settings(api_key_env="MY-KEY")
