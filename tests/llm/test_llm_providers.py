"""The provider seam against a real HTTP server, driven by the real anthropic and openai SDKs."""

from __future__ import annotations

import dataclasses
import time

import pytest

from autoresearch.errors import ConfigError
from autoresearch.proposers.faults import (
    FailedProposal,
    FatalProposerError,
    OutOfTime,
    ProposerOutage,
)
from autoresearch.proposers.llm.prices import PriceTable
from autoresearch.proposers.llm.providers import Part, Provider, Turn, make_provider
from autoresearch.proposers.llm.settings import ProviderSettings
from autoresearch.proposers.registry import LLM_ENV_HINTS, resolve_auto
from tests.llm.conftest import llm_options, make_config
from tests.llm.fake_server import FakeModelServer, Reply

PROVIDERS = ["anthropic", "openai"]


def provider(server: FakeModelServer, kind: str, **extra: object) -> Provider:
    settings = ProviderSettings.from_options(llm_options(server, kind, **extra), {})
    return make_provider(settings, PriceTable())


def ask(p: Provider) -> str:
    system = [Part("You are a test.", cache=True)]
    return p.complete(system, [Turn.user(Part("stable context", cache=True), "the task")]).text


def test_anthropic_request_shape_usage_and_cost(server: FakeModelServer) -> None:
    server.push(Reply(text="hello", input_tokens=1000, output_tokens=200, cache_read_tokens=5000,
                      cache_write_tokens=300))
    p = provider(server, "anthropic", temperature=0.3)
    c = p.complete([Part("sys", cache=True)], [Turn.user(Part("stable", cache=True), "task")])
    assert c.text == "hello" and not c.truncated
    u = c.usage
    assert (u.provider, u.model) == ("anthropic", "claude-sonnet-4-6")
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == (
        1000, 200, 5000, 300)
    assert u.cost_usd == pytest.approx((1000 * 3 + 200 * 15 + 5000 * 0.3 + 300 * 3.75) / 1e6)
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/messages"
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    content = body["messages"][0]["content"]
    assert content[0]["cache_control"] == {"type": "ephemeral"} and "cache_control" not in content[1]
    assert body["temperature"] == 0.3 and body["max_tokens"] == 8192


def test_openai_request_shape_usage_and_cost(server: FakeModelServer) -> None:
    server.push(Reply(text="hi", input_tokens=800, output_tokens=100, cache_read_tokens=200,
                      stop="length"))
    c = provider(server, "openai").complete([Part("sys")], [Turn.user("a", "b")])
    assert c.text == "hi" and c.truncated
    assert (c.usage.input_tokens, c.usage.cache_read_tokens) == (800, 200)  # cached split out
    assert c.usage.provider == "openai-compatible"
    assert c.usage.cost_usd == pytest.approx((800 * 2 + 100 * 8 + 200 * 0.5) / 1e6)
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "system", "content": "sys"},
                                {"role": "user", "content": "a\n\nb"}]
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


@pytest.mark.parametrize("kind", PROVIDERS)
def test_429_then_success_honours_retry_after(server: FakeModelServer, kind: str) -> None:
    server.push(Reply(status=429, headers={"retry-after": "0.02"}), Reply(text="ok"))
    assert ask(provider(server, kind)) == "ok"
    assert len(server.requests) == 2


@pytest.mark.parametrize("kind", PROVIDERS)
def test_5xx_and_dropped_connections_are_retried(server: FakeModelServer, kind: str) -> None:
    server.push(Reply(status=500), Reply(drop=True), Reply(status=529 if kind == "anthropic"
                                                           else 503), Reply(text="fine"))
    assert ask(provider(server, kind, max_retries=3)) == "fine"
    assert len(server.requests) == 4


@pytest.mark.parametrize("kind", PROVIDERS)
def test_outage_after_retries_is_a_pause_not_a_crash(server: FakeModelServer, kind: str) -> None:
    server.push(*[Reply(status=503)] * 3)
    with pytest.raises(ProposerOutage) as info:
        ask(provider(server, kind, max_retries=2))
    assert "HTTP 503" in info.value.what and "3 attempts" in info.value.what
    assert len(server.requests) == 3


def test_long_retry_after_becomes_the_pause(server: FakeModelServer) -> None:
    server.push(Reply(status=429, headers={"retry-after": "90"}))
    with pytest.raises(ProposerOutage) as info:
        ask(provider(server, "anthropic"))
    assert info.value.retry_after_s == pytest.approx(90)
    assert len(server.requests) == 1  # no point hammering: the session pauses


def test_a_retry_after_of_days_pauses_at_most_six_hours(server: FakeModelServer) -> None:
    # "retry-after: 100000" paused a session for 27 h, with no word beyond "waiting 100000 s".
    server.push(Reply(status=429, headers={"retry-after": "100000"}))
    with pytest.raises(ProposerOutage) as info:
        ask(provider(server, "openai"))
    assert info.value.retry_after_s == 6 * 3600
    assert ("the server asked for a pause of 100000 s, more than the 6 h a pause may last"
            in info.value.what)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_slow_response_times_out_and_is_retried(server: FakeModelServer, kind: str) -> None:
    # Seconds, not tenths: on a loaded machine even the prompt reply took more than 0.4 s.
    server.push(Reply(text="late", delay=20), Reply(text="on time"))
    p = provider(server, kind, timeout_seconds=2)
    p._sdk()  # imported before the clock starts: seconds on a busy machine, not the timeout's
    started = time.monotonic()
    assert ask(p) == "on time"
    assert time.monotonic() - started < 15  # not the 20 s the late reply takes


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize("status", [401, 403])
def test_invalid_key_is_fatal(server: FakeModelServer, kind: str, status: int) -> None:
    server.push(Reply(status=status, error="invalid x-api-key"))
    with pytest.raises(FatalProposerError) as info:
        ask(provider(server, kind))
    assert "refused the API key" in info.value.what and info.value.fix
    assert len(server.requests) == 1


def test_unknown_model_is_fatal_and_bad_request_fails_one_proposal(server: FakeModelServer) -> None:
    server.push(Reply(status=404, error="model: nope"), Reply(status=400, error="prompt too long"))
    with pytest.raises(FatalProposerError, match="not found") as info:
        ask(provider(server, "openai"))
    # The fix is about the model name, not the key.
    assert info.value.fix.startswith("set [proposer] model") and "'gpt-4.1'" in info.value.fix
    assert "OPENAI_API_KEY" not in info.value.fix
    with pytest.raises(FailedProposal, match="prompt too long"):
        ask(provider(server, "openai"))


def test_settings_resolve_provider_keys_and_defaults() -> None:
    s = ProviderSettings.from_options({}, {"ANTHROPIC_API_KEY": "k"})
    assert (s.provider, s.model, s.api_key, s.base_url) == ("anthropic", "claude-sonnet-5-5", "k",
                                                            None)
    assert s.temperature is None  # current models reject a non-default temperature
    s = ProviderSettings.from_options({}, {"OPENAI_API_KEY": "k"})
    assert (s.provider, s.model, s.max_tokens_field) == ("openai", "gpt-6.2-sol",
                                                         "max_completion_tokens")
    s = ProviderSettings.from_options({"provider": "ollama", "model": "qwen3:8b"}, {})
    assert (s.provider, s.base_url, s.label) == ("openai", "http://localhost:11434/v1", "ollama")
    assert s.max_tokens_field == "max_tokens" and s.api_key == "not-needed"
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY is not set"):
        ProviderSettings.from_options({"provider": "anthropic"}, {})
    with pytest.raises(ConfigError, match="no model named"):
        ProviderSettings.from_options({"base_url": "http://127.0.0.1:1/v1"}, {})
    with pytest.raises(ConfigError, match="no model API configured"):
        ProviderSettings.from_options({}, {})
    with pytest.raises(ConfigError, match="unknown LLM provider"):
        ProviderSettings.from_options({"provider": "bard"}, {})


@pytest.mark.parametrize("kind", PROVIDERS)
def test_temperature_is_sent_only_when_configured(server: FakeModelServer, kind: str) -> None:
    # Claude Sonnet 5+ and GPT-6 answer HTTP 400 to a non-default temperature: the default
    # configuration must not send one.
    server.push(Reply(text="a"), Reply(text="b"))
    ask(provider(server, kind))
    ask(provider(server, kind, temperature=0.2))
    assert "temperature" not in server.requests[0].body
    assert server.requests[1].body["temperature"] == 0.2


def test_openrouter_key_alone_selects_openrouter_and_asks_for_a_model() -> None:
    env = {"OPENROUTER_API_KEY": "or-key"}
    s = ProviderSettings.from_options({"model": "anthropic/claude-sonnet-5.5"}, env)
    assert (s.provider, s.label, s.base_url, s.api_key, s.api_key_env) == (
        "openai", "openrouter", "https://openrouter.ai/api/v1", "or-key", "OPENROUTER_API_KEY")
    assert s.is_metered and not s.is_official
    with pytest.raises(ConfigError) as info:
        ProviderSettings.from_options({}, env)
    assert "no model named" in str(info.value) and "anthropic/claude-sonnet-5.5" in str(info.value)
    # A direct provider key wins over the router's, in the order `auto` reports.
    s = ProviderSettings.from_options({}, {**env, "OPENAI_API_KEY": "k"})
    assert (s.label, s.base_url) == ("openai", None)


def test_an_anthropic_compatible_server_without_a_model_is_named_as_such() -> None:
    # ANTHROPIC_BASE_URL (a proxy or gateway) speaks the Anthropic protocol: the error must not
    # call it an OpenAI-compatible server or suggest an Ollama model name.
    with pytest.raises(ConfigError) as info:
        ProviderSettings.from_options({}, {"ANTHROPIC_BASE_URL": "http://127.0.0.1:1"})
    text = str(info.value)
    assert "Anthropic-compatible server at http://127.0.0.1:1" in text
    assert "OpenAI" not in text and "qwen" not in text and 'model = "claude-' in text


def test_an_unpriced_metered_model_is_warned_about_once(
        server: FakeModelServer, caplog: pytest.LogCaptureFixture) -> None:
    server.push(Reply(text="a"), Reply(text="b"))
    settings = ProviderSettings.from_options(llm_options(server, "openai", model="gpt-9-ultra"), {})
    # The fake server stands in for OpenRouter: a metered endpoint where a missing price matters.
    settings = dataclasses.replace(settings, label="openrouter")
    p = make_provider(settings, PriceTable())
    with caplog.at_level("WARNING"):
        costs = [p.complete([Part("s")], [Turn.user("t")]).usage.cost_usd for _ in range(2)]
    assert costs == [0.0, 0.0]
    warnings = [r for r in caplog.records if "no price known for gpt-9-ultra" in r.getMessage()]
    assert len(warnings) == 1 and "[proposer] prices" in warnings[0].getMessage()


@pytest.mark.parametrize(("env", "var", "provider"), [
    ({"ANTHROPIC_API_KEY": "k", "OPENROUTER_API_KEY": "r"}, "ANTHROPIC_API_KEY", "anthropic"),
    ({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, "OPENAI_BASE_URL", "openai-compatible"),
    ({"OPENROUTER_API_KEY": "r"}, "OPENROUTER_API_KEY", "openrouter"),
])
def test_auto_names_the_variable_that_decides_and_the_llm_agrees(
        env: dict[str, str], var: str, provider: str) -> None:
    name, why = resolve_auto(make_config(), env)
    assert name == "llm" and why.startswith(f"{var} is set")
    if provider == "openrouter":
        assert "OpenRouter" in why and "https://openrouter.ai/api/v1" in why
    options = {"model": "some-model"} if provider != "anthropic" else {}
    assert ProviderSettings.from_options(options, env).label == provider


def test_auto_without_any_key_runs_the_offline_sampler_and_says_what_it_looked_for() -> None:
    name, why = resolve_auto(make_config(), {})
    assert name == "tune"
    assert all(v in why for v in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY"))


@pytest.mark.parametrize("var", LLM_ENV_HINTS)
def test_auto_explains_every_variable_it_looks_for(var: str) -> None:
    name, why = resolve_auto(make_config(), {var: "http://127.0.0.1:9/v1"})
    assert name == "llm" and why.startswith(f"{var} is set: the llm proposer calls ")


# --- replies that are not the API's, refused connections, the probe -------------------------

NOT_API = [
    pytest.param(Reply(raw="<html><body>Sign in to the Wi-Fi</body></html>",
                       content_type="text/html"), "not an API reply", id="html"),
    pytest.param(Reply(raw="not json at all"), "not valid JSON", id="not-json"),
    pytest.param(Reply(raw='{"id": "msg_fake", "choices": [{"ind'), "not valid JSON",
                 id="cut-off-json"),
]


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize(("bad", "said"), NOT_API)
def test_a_200_reply_that_is_not_the_apis_is_retried_like_a_bad_gateway(
        server: FakeModelServer, kind: str, bad: Reply, said: str) -> None:
    server.push(bad, Reply(text="fine"))
    assert ask(provider(server, kind)) == "fine"
    assert len(server.requests) == 2


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize(("bad", "said"), NOT_API)
def test_a_200_reply_that_is_never_the_apis_becomes_an_outage_naming_base_url(
        server: FakeModelServer, kind: str, bad: Reply, said: str) -> None:
    server.push(*[bad] * 3)
    with pytest.raises(ProposerOutage) as info:
        ask(provider(server, kind, max_retries=2))
    assert said in info.value.what and "base_url" in info.value.what
    assert "3 attempts" in info.value.what and len(server.requests) == 3


def test_a_reply_with_no_choices_fails_the_proposal_but_is_billed(server: FakeModelServer) -> None:
    server.push(Reply(empty_choices=True, input_tokens=1000, output_tokens=200))
    with pytest.raises(FailedProposal, match="returned no choices") as info:
        ask(provider(server, "openai"))
    (u,) = info.value.usage
    assert (u.input_tokens, u.output_tokens) == (1000, 200) and u.cost_usd > 0


def _nothing_listening(kind: str, **extra: object) -> tuple[str, ProviderSettings]:
    """Settings pointing at a port on 127.0.0.1 where nothing listens (and its base_url)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}" + ("/v1" if kind == "openai" else "")
    options = {"provider": kind, "base_url": url, "model": "m", "timeout_seconds": 5, **extra}
    return url, ProviderSettings.from_options(options, {})


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_refused_connection_is_waited_on_a_bounded_number_of_times(kind: str) -> None:
    from autoresearch.proposers.llm.providers import REFUSED_OUTAGES

    url, settings = _nothing_listening(kind, max_retries=1)
    p = make_provider(settings, PriceTable(), sleep=lambda s: None)
    for _ in range(REFUSED_OUTAGES - 1):  # the session pauses and asks again
        with pytest.raises(ProposerOutage, match="connection refused: nothing is listening"):
            ask(p)
    with pytest.raises(FatalProposerError) as info:  # then it stops, saying where and how
        ask(p)
    assert "connection refused" in info.value.what and url in str(info.value.where)
    assert "start the model server, or correct base_url" in str(info.value.fix)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_the_probe_lists_the_models_without_a_billed_request(server: FakeModelServer,
                                                            kind: str) -> None:
    assert provider(server, kind).probe() == "the endpoint answers and lists the model"
    assert server.listings == 1 and server.requests == []
    # Not listed, but answered when asked (an alias): said, with what the server lists.
    server.models = ["other-model"]
    server.push(Reply(text="p"))
    said = provider(server, kind).probe()
    assert "is not among the 1 models it lists (e.g. other-model), but it answered a one-token " \
           "request naming it" in said
    assert len(server.requests) == 1 and server.requests[0].body["max_tokens"] == 1


@pytest.mark.parametrize("kind", PROVIDERS)
def test_the_probe_sends_one_tiny_request_where_listing_is_not_supported(kind: str) -> None:
    with FakeModelServer([Reply(text="p")], models=None) as server:
        said = provider(server, kind).probe()
        assert said.startswith("the endpoint answered a one-token request (its model list could "
                               "not be read, HTTP 404, so whether it lists ")
        assert said.endswith(" was not checked)")
        (sent,) = server.requests
        assert sent.body.get("max_tokens") == 1


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize(("reply", "said", "fix"), [
    (Reply(status=401, error="invalid x-api-key"), "refused the API key", "API_KEY"),
    (Reply(status=404, error="model: nope"), "not found (HTTP 404)", "set [proposer] model"),
])
def test_the_probe_reports_a_refused_key_and_an_unknown_model(kind: str, reply: Reply, said: str,
                                                              fix: str) -> None:
    with FakeModelServer([reply], models=None) as server, \
            pytest.raises(FatalProposerError) as info:
        provider(server, kind).probe()
    assert said in info.value.what and fix in str(info.value.fix)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_the_probe_reports_nothing_listening(kind: str) -> None:
    url, settings = _nothing_listening(kind)
    with pytest.raises(FatalProposerError) as info:
        make_provider(settings, PriceTable()).probe()
    assert "connection refused: nothing is listening at " + url in info.value.what
    assert "start the model server" in str(info.value.fix)


def test_the_probe_only_reports_a_temporary_fault(server: FakeModelServer) -> None:
    server.models = None
    server.push(Reply(status=503, error="overloaded"))
    said = provider(server, "anthropic").probe()
    assert said.startswith("could not confirm the endpoint now") and "HTTP 503" in said


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize(("bad", "said"), NOT_API)
def test_the_probe_reports_a_web_page_where_the_api_should_be(kind: str, bad: Reply,
                                                              said: str) -> None:
    with FakeModelServer([bad], models=None) as server, \
            pytest.raises(FatalProposerError) as info:
        provider(server, kind).probe()
    assert said in info.value.what and "base_url" in str(info.value.where)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_reply_that_drips_in_is_cut_at_the_calls_deadline(server: FakeModelServer,
                                                             kind: str) -> None:
    # A byte every 0.3 s never trips the SDK's timeout, which bounds each read: the call as a
    # whole must end by timeout_seconds (+ the grace the SDK's own timeout gets first).
    server.push(Reply(text="x" * 200, drip=0.3), Reply(text="on time"))
    p = provider(server, kind, timeout_seconds=1.0)
    p._sdk()  # imported before the clock starts: seconds on a busy machine, not the deadline's
    started = time.monotonic()
    assert ask(p) == "on time"
    # Deadline, grace, the second call (seconds on a busy machine): not the minutes the whole
    # body would take to drip in.
    assert time.monotonic() - started < 1.0 + 2.0 + 20.0
    server.push(*[Reply(text="x" * 200, drip=0.3)] * 2)
    with pytest.raises(ProposerOutage) as info:
        ask(provider(server, kind, timeout_seconds=1.0, max_retries=1))
    assert "no complete reply within 1 s" in info.value.what, info.value.what


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_call_ends_by_the_sessions_time_limit_when_that_comes_first(server: FakeModelServer,
                                                                      kind: str) -> None:
    # timeout_seconds allows 60 s a call and 3 attempts: the session's time limit, 1.5 s away,
    # ends it there (not a traceback, not an outage to wait out).
    server.push(Reply(text="x" * 500, drip=0.3))
    p = provider(server, kind, timeout_seconds=60.0)
    p._sdk()  # imported before the clock starts
    system = [Part("You are a test.", cache=True)]
    started = time.monotonic()
    with pytest.raises(OutOfTime) as info:
        p.complete(system, [Turn.user("the task")], deadline=time.time() + 1.5)
    assert time.monotonic() - started < 1.5 + 1.0
    assert "time limit came during a call" in info.value.what
    assert len(server.requests) == 1  # cut, not retried
    # A limit already passed asks nothing; a pause that would end past it is not taken.
    with pytest.raises(OutOfTime, match="before the model was asked"):
        p.complete(system, [Turn.user("the task")], deadline=time.time() - 1)
    assert len(server.requests) == 1
    server.push(Reply(status=503, error="overloaded", headers={"retry-after": "5"}))
    slept: list[float] = []
    p = provider(server, kind, retry_max_seconds=30.0)
    p._sleep = slept.append
    with pytest.raises(OutOfTime, match="comes before the next attempt"):
        p.complete(system, [Turn.user("the task")], deadline=time.time() + 3)
    assert slept == [] and len(server.requests) == 2
    # Without a limit, the same pause is taken and the call answered.
    server.push(Reply(status=503, error="overloaded", headers={"retry-after": "5"}),
                Reply(text="on time"))
    assert p.complete(system, [Turn.user("the task")]).text == "on time" and slept == [5.0]


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_reply_that_is_not_utf8_or_has_garbled_counts_is_retried_not_a_traceback(
        server: FakeModelServer, kind: str) -> None:
    server.push(Reply(raw_bytes=b'{"id": "x", "caf\xe9": 1}'), Reply(text="fine"))
    assert ask(provider(server, kind)) == "fine"
    field = "input_tokens" if kind == "anthropic" else "prompt_tokens"
    usage = {field: "1.2k", "output_tokens" if kind == "anthropic" else "completion_tokens": 5}
    body = ({"id": "m", "type": "message", "role": "assistant", "model": "m",
             "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
             "usage": usage} if kind == "anthropic" else
            {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                          "finish_reason": "stop"}], "usage": usage})
    import json
    server.push(Reply(raw=json.dumps(body)), Reply(text="fine again"))
    assert ask(provider(server, kind)) == "fine again"


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_negative_token_count_bills_nothing_rather_than_a_credit(server: FakeModelServer,
                                                                    kind: str) -> None:
    server.push(Reply(text="hi", input_tokens=-10_000_000, output_tokens=-5))
    p = provider(server, kind, price_input_per_mtok=3.0, price_output_per_mtok=15.0)
    system = [Part("You are a test.", cache=True)]
    completion = p.complete(system, [Turn.user(Part("context", cache=True), "the task")])
    assert completion.usage.input_tokens == 0 and completion.usage.output_tokens == 0
    assert completion.usage.cost_usd >= 0


def test_an_outage_says_the_attempts_it_made(server: FakeModelServer) -> None:
    server.push(Reply(status=429, headers={"retry-after": "3600"}))
    with pytest.raises(ProposerOutage) as info:
        ask(provider(server, "anthropic"))
    said = info.value.what
    assert "gave up after 1 attempt;" in said and "asked for a pause of 3600 s" in said, said
