"""`check` (and `run`, before its baseline) against the models the server lists.

A model the server does not list is asked for once, with a one-token request: a server that
refuses it (404, as OpenAI, Anthropic, vLLM and Ollama do; 400, as OpenRouter does) stops
`check` and `run` there, naming a few models the server does list, the nearest first; one that
answers it (an alias, llama-server serving one model whatever the name) is said, not refused. A
server that cannot list its models (404 on /models) is no error: `check` says the model could
not be checked. Anthropic's list comes in pages of 20, and every page is read.

The real CLI and the real SDKs against the fake model server on 127.0.0.1, which lists models
in each API's own shape and refuses unlisted models as the real APIs do."""

from __future__ import annotations

import json
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from autoresearch.proposers.faults import FatalProposerError
from autoresearch.proposers.llm.prices import PriceTable
from autoresearch.proposers.llm.providers import Provider, make_provider
from autoresearch.proposers.llm.settings import ProviderSettings
from tests.conftest import run_cli
from tests.llm.conftest import ledger_rows, llm_options, use_llm_config
from tests.llm.fake_server import FakeModelServer, Reply

PROVIDERS = ["anthropic", "openai"]
LISTED = ["claude-sonnet-4-6", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "qwen3:8b", "llama3.3",
          "mistral-large"]


def provider(server: FakeModelServer, kind: str, **extra: object) -> Provider:
    return make_provider(ProviderSettings.from_options(llm_options(server, kind, **extra), {}),
                         PriceTable())


def one_line(text: str) -> str:
    return " ".join(text.split())


def use_model(repo: Path, server: FakeModelServer, kind: str, model: str) -> None:
    """The llm proposer on the fake server's `kind` API, naming `model`; committed."""
    url = server.anthropic_url if kind == "anthropic" else server.openai_url
    use_llm_config(repo, textwrap.dedent(f"""
        [proposer]
        name = "llm"
        provider = "{kind}"
        base_url = "{url}"
        model = "{model}"
        retry_base_seconds = 0.01
        """))


def experiments(repo: Path) -> list[tuple[Any, ...]]:
    return ledger_rows(repo)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_check_and_run_refuse_a_model_the_server_neither_lists_nor_serves(
        toy_repo: Path, kind: str) -> None:
    # `check` passed it; `run` then spent the baseline before the first call stopped it (exit 5).
    with FakeModelServer(models=LISTED, refuses_unlisted=True) as server:
        use_model(toy_repo, server, kind, "gpt-4.l")
        check = run_cli(toy_repo, "check", timeout=120)
        run = run_cli(toy_repo, "run", "--iterations", "2", timeout=120)
        pings = [r.body["model"] for r in server.requests]
    for result in (check, run):
        said = one_line(result.stdout + result.stderr)
        assert result.returncode != 0 and "Traceback" not in said, said
        assert "the model is not among the server's models (it lists 7: gpt-4.1, " in said
        assert "and 2 more), and the server refused a one-token request naming it (HTTP 404:" in (
            said)
        assert "[proposer] model" in said
        assert 'set [proposer] model to one the server lists (e.g. model = "gpt-4.1")' in said
    assert run.returncode == 5
    assert experiments(toy_repo) == []  # no baseline was spent
    assert pings == ["gpt-4.l", "gpt-4.l"]  # one tiny request each, from check and from run


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_listed_model_is_confirmed_without_a_billed_request(toy_repo: Path, kind: str) -> None:
    with FakeModelServer(models=LISTED, refuses_unlisted=True) as server:
        use_model(toy_repo, server, kind, "gpt-4.1")
        result = run_cli(toy_repo, "check", timeout=120)
        assert server.listings == 1 and server.requests == []
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the endpoint answers and lists the model" in one_line(result.stdout)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_server_that_cannot_list_its_models_is_said_not_checked(toy_repo: Path,
                                                                  kind: str) -> None:
    with FakeModelServer([Reply(text="p")], models=None) as server:
        use_model(toy_repo, server, kind, "my-model")
        result = run_cli(toy_repo, "check", timeout=120)
    said = one_line(result.stdout + result.stderr)
    assert result.returncode == 0, said
    assert ("the endpoint answered a one-token request (its model list could not be read, "
            "HTTP 404, so whether it lists 'my-model' was not checked)") in said


@pytest.mark.parametrize("kind", PROVIDERS)
def test_an_alias_the_server_answers_is_said_not_refused(server: FakeModelServer,
                                                        kind: str) -> None:
    server.models = ["qwen3-8b-instruct-q4"]
    server.push(Reply(text="p"))
    said = provider(server, kind, model="my-alias").probe()
    assert said.startswith("the endpoint answers; model 'my-alias' is not among the 1 models it "
                           "lists (e.g. qwen3-8b-instruct-q4), but it answered a one-token "
                           "request naming it")


@pytest.mark.parametrize("kind", PROVIDERS)
def test_an_undated_alias_of_a_listed_model_needs_no_request(server: FakeModelServer,
                                                             kind: str) -> None:
    # Anthropic lists claude-sonnet-4-5-20250929 and takes claude-sonnet-4-5.
    server.models = ["claude-sonnet-4-5-20250929"]
    assert provider(server, kind, model="claude-sonnet-4-5").probe() == (
        "the endpoint answers and lists the model")
    assert server.requests == []


def test_every_page_of_anthropics_model_list_is_read(server: FakeModelServer) -> None:
    # 45 models, 20 a page: the one configured is on the third.
    server.models = [f"claude-old-{i}" for i in range(44)] + ["claude-sonnet-4-6"]
    server.refuses_unlisted = True
    assert provider(server, "anthropic").probe() == "the endpoint answers and lists the model"
    assert server.listings == 3 and server.requests == []


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_400_naming_the_unlisted_model_is_a_refusal_of_it(server: FakeModelServer,
                                                            kind: str) -> None:
    # OpenRouter: 400 "... is not a valid model ID".
    server.models = ["anthropic/claude-sonnet-4.5"]
    server.push(Reply(status=400, error="anthropic/claude-sonet-4.5 is not a valid model ID"))
    with pytest.raises(FatalProposerError) as info:
        provider(server, kind, model="anthropic/claude-sonet-4.5").probe()
    assert "the model is not among the server's models (it lists 1: anthropic/claude-sonnet-4.5)" \
        in info.value.what
    assert "(HTTP 400: anthropic/claude-sonet-4.5 is not a valid model ID)" in info.value.what


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_server_listing_no_models_says_so(kind: str) -> None:
    with FakeModelServer(models=[], refuses_unlisted=True) as server, \
            pytest.raises(FatalProposerError) as info:
        provider(server, kind, model="qwen3:8b").probe()
    assert "the model is not among the server's models (it lists none at all)" in info.value.what
    assert str(info.value.fix).startswith("load or pull the model on the server")


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize(("reply", "said"), [
    (Reply(status=401, error="invalid x-api-key"), "refused the API key (HTTP 401)"),
    (Reply(status=503, error="overloaded"), "could not confirm the endpoint now"),
])
def test_another_fault_of_the_request_for_an_unlisted_model_is_said_as_itself(
        server: FakeModelServer, kind: str, reply: Reply, said: str) -> None:
    server.models = ["other-model"]
    server.push(reply)
    try:
        found = provider(server, kind, max_retries=0).probe()
    except FatalProposerError as exc:
        found = exc.what
    assert said in found and "not among" not in found


def test_the_nearest_listed_models_are_named_first(server: FakeModelServer) -> None:
    server.models = [f"model-{i}" for i in range(10)] + ["gpt-4.1-mini", "gpt-4.1"]
    server.refuses_unlisted = True
    with pytest.raises(FatalProposerError) as info:
        provider(server, "openai", model="gpt-4.l").probe()
    assert "(it lists 12: gpt-4.1, gpt-4.1-mini, " in info.value.what
    assert "and 7 more)" in info.value.what


def test_the_fake_server_lists_models_in_each_apis_shape(server: FakeModelServer) -> None:
    server.models = [f"m{i}" for i in range(25)]

    def listing(query: str, headers: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(server.url + "/v1/models" + query, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.load(response))

    anthropic = {"anthropic-version": "2023-06-01", "x-api-key": "k"}
    first = listing("", anthropic)
    assert [m["id"] for m in first["data"]] == [f"m{i}" for i in range(20)]
    assert (first["has_more"], first["first_id"], first["last_id"]) == (True, "m0", "m19")
    assert first["data"][0]["type"] == "model" and "display_name" in first["data"][0]
    second = listing("?after_id=m19&limit=20", anthropic)
    assert [m["id"] for m in second["data"]] == [f"m{i}" for i in range(20, 25)]
    assert second["has_more"] is False
    openai = listing("", {"authorization": "Bearer k"})
    assert openai["object"] == "list" and len(openai["data"]) == 25
    assert openai["data"][0]["object"] == "model" and "owned_by" in openai["data"][0]


def test_a_model_is_listed_as_itself_or_as_a_dated_or_latest_alias_only() -> None:
    from autoresearch.proposers.llm.probe import few_models, listed

    assert listed("claude-sonnet-4-5", ["claude-sonnet-4-5-20250929"])
    assert listed("gpt-4o", ["gpt-4o-2024-08-06"]) and listed("qwen3", ["qwen3:latest"])
    # A name the list only starts with is another model: asked about, not taken as listed.
    assert not listed("foo", ["foo-bar"]) and not listed("gpt-4", ["gpt-4o-mini"])
    assert not listed("g", ["gpt-4o-mini"])
    assert few_models("FOO-BAR", ["gpt-4o-mini", "llama-3.1-8b", "foo-bar"])[0] == "foo-bar"
