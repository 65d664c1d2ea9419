"""The llm proposer against the quirks of the servers users run (Ollama, vLLM, llama.cpp's
llama-server, LM Studio, OpenRouter), each emulated by the fake server on the real wire protocol:
no token usage, replies cut at max_tokens, reasoning left in the content, context-window errors,
model listings in other shapes, a slow first token, no API key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from autoresearch.proposers.faults import FailedProposal, FatalProposerError, ProposerOutage
from autoresearch.proposers.llm import LLMProposer
from autoresearch.proposers.llm.prices import PriceTable
from autoresearch.proposers.llm.providers import Part, Provider, Turn, make_provider
from autoresearch.proposers.llm.settings import ProviderSettings
from tests.conftest import run_cli
from tests.llm.conftest import MakeCtx, llm_options, make_config, use_fake_model
from tests.llm.fake_server import FakeModelServer, Recorded, Reply
from tests.support.git_repo import git

GOOD = (
    "HYPOTHESIS: move X to the optimum at 7\n"
    "RATIONALE: the objective is (X - 7)^2, so X = 7 minimises it.\n\n"
    "target.py\n<<<<<<< SEARCH\nX = 3.0\n=======\nX = 7.0\n>>>>>>> REPLACE\n"
)
# A draft in the model's thinking: its SEARCH text is not in the file, so reading it as part of
# the answer fails the edit.
DRAFT = "target.py\n<<<<<<< SEARCH\nX = 99.0\n=======\nX = 1.0\n>>>>>>> REPLACE\n"


def proposer(server: FakeModelServer, kind: str = "openai", **extra: object) -> LLMProposer:
    options = {**llm_options(server, kind), **extra}
    return LLMProposer(make_config(**options), options, env={})


def provider(server: FakeModelServer, env: dict[str, str] | None = None,
             **extra: object) -> Provider:
    options = {**llm_options(server, "openai"), **extra}
    settings = ProviderSettings.from_options(options, env or {})
    return make_provider(settings, PriceTable())


def ask(p: Provider) -> str:
    return p.complete([Part("sys")], [Turn.user("the task")]).text


# --- token usage ------------------------------------------------------------------------------


@pytest.mark.parametrize("reply", [Reply(text="hi", usage=False),
                                   Reply(text="hi", input_tokens=0, output_tokens=0)],
                         ids=["no usage object", "zeros"])
def test_a_reply_without_token_counts_costs_zero_and_says_the_cost_is_unknown(
        server: FakeModelServer, reply: Reply, caplog: pytest.LogCaptureFixture) -> None:
    # A local server (Ollama, llama.cpp): recorded as 0 tokens and $0, no warning about money.
    server.push(reply, reply)
    with caplog.at_level(logging.INFO):
        c = provider(server, model="qwen3:8b").complete([Part("s")], [Turn.user("t")])
    assert c.text == "hi" and (c.usage.input_tokens, c.usage.output_tokens) == (0, 0)
    assert c.usage.cost_usd == 0 and "reports no token usage" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # A paid router with a known price: the real cost is unknown, and the warning says so.
    caplog.clear()
    paid = provider(server, provider="openrouter", base_url=server.openai_url)
    with caplog.at_level(logging.INFO):
        c = paid.complete([Part("s")], [Turn.user("t")])
    assert c.usage.cost_usd == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "the real cost is unknown" in warned[0]
    assert "max_usd cannot stop them" in warned[0]


@pytest.mark.parametrize(("extra", "said"), [
    ({"model": "qwen3:8b"}, "recorded with cost 0 (a local server costs nothing"),
    ({"model": "qwen3:8b", "provider": "openrouter"}, "[limits] max_usd cannot stop them"),
    ({}, ""),  # a priced model: nothing to say
])
def test_check_says_what_an_unpriced_model_costs(server: FakeModelServer, extra: dict[str, str],
                                                  said: str) -> None:
    server.models = ["qwen3:8b", "gpt-4.1"]
    found = provider(server, base_url=server.openai_url, **extra).probe()
    assert found.startswith("the endpoint answers and lists the model")
    if said:
        assert said in found and "[proposer] prices" in found
    else:
        assert found == "the endpoint answers and lists the model"


# --- finish_reason "length" -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_cut_off_reply_whose_blocks_parse_is_never_applied(
        server: FakeModelServer, make_ctx: MakeCtx, kind: str) -> None:
    # Cut at max_tokens after a complete block: the blocks it meant to write next are missing.
    server.push(Reply(text=GOOD, stop="length"), Reply(text=GOOD))
    proposal = proposer(server, kind, max_tokens=512).propose(make_ctx())
    assert proposal is not None and len(server.requests) == 2
    retry = server.requests[1].prompt_text()
    assert "cut off at the output token limit (max_tokens = 512)" in retry
    assert "none of it was applied" in retry


def test_replies_always_cut_off_fail_naming_max_tokens(server: FakeModelServer,
                                                       make_ctx: MakeCtx) -> None:
    server.push(*[Reply(text=GOOD, stop="length")] * 3)
    with pytest.raises(FailedProposal) as info:
        proposer(server, max_tokens=512).propose(make_ctx())
    assert "raise [proposer] max_tokens (now 512)" in str(info.value.fix)
    assert len(server.requests) == 3


# --- reasoning models -------------------------------------------------------------------------


@pytest.mark.parametrize("reply", [
    Reply(text=f"<think>\nThe file has X. Maybe:\n{DRAFT}HYPOTHESIS: no\n</think>\n\n{GOOD}"),
    Reply(text=f"<think></think>\n<think>second thought\n{DRAFT}</think>{GOOD}"),
    Reply(text=GOOD, reasoning=f"Let me think.\n{DRAFT}"),  # vLLM's reasoning parser, DeepSeek
    Reply(text=f"```\n{GOOD}```\n"),  # fenced
], ids=["think", "two thinks", "reasoning_content", "fenced"])
def test_a_reasoning_models_thinking_is_not_read_as_its_answer(
        server: FakeModelServer, make_ctx: MakeCtx, reply: Reply) -> None:
    server.push(reply)
    proposal = proposer(server).propose(make_ctx())
    assert proposal is not None and len(server.requests) == 1
    assert proposal.hypothesis == "move X to the optimum at 7"
    assert "X = 7.0\n" in (proposal.edits["target.py"] or "")


def test_a_reply_cut_off_while_thinking_is_retried_without_its_thoughts(
        server: FakeModelServer, make_ctx: MakeCtx) -> None:
    server.push(Reply(text=f"<think>\nlong thoughts\n{DRAFT}", stop="length"), Reply(text=GOOD))
    assert proposer(server).propose(make_ctx()) is not None
    retry = server.requests[1]
    assert "no edit blocks" in retry.prompt_text()
    assert "X = 99.0" not in retry.body["messages"][-2]["content"]  # the thoughts are not echoed


# --- context window ---------------------------------------------------------------------------

VLLM_OVERFLOW = ("This model's maximum context length is 16384 tokens. However, you requested "
                 "70000 tokens (61808 in the messages, 8192 in the completion). Please reduce "
                 "the length of the messages or completion.")
LLAMACPP_OVERFLOW = ("the request exceeds the available context size. try increasing the "
                     "context size or enable context shift")


def add_a_big_file(worktree: Path) -> None:
    """A file in scope of about 200,000 characters: more than any window below holds."""
    big = worktree / "lib" / "util.py"
    big.write_text(big.read_text() + "".join(f"V{i} = {i}\n" for i in range(20_000)))
    git(worktree, "add", "-A")
    git(worktree, "commit", "-qm", "big")


def window(chars: int, refusal: Reply) -> tuple[list[int], object]:
    """A handler answering GOOD to a request of at most `chars` characters, else `refusal`."""
    sizes: list[int] = []

    def handle(request: Recorded) -> Reply:
        size = len(request.prompt_text())
        sizes.append(size)
        return Reply(text=GOOD) if size <= chars else refusal

    return sizes, handle


@pytest.mark.parametrize("refusal", [
    # Refusals that name no sizes (a proxy's own wording with OpenAI's code; llama.cpp builds
    # without n_ctx in the error): the proposer can only halve what it sends.
    Reply(status=400, error="Request too large for this model.", error_type="invalid_request_error",
          error_fields={"code": "context_length_exceeded"}),
    Reply(status=400, error=LLAMACPP_OVERFLOW, error_type="exceed_context_size_error"),
    Reply(status=500, error="Context size has been exceeded."),  # older llama-server builds
], ids=["openai code", "llama.cpp", "llama.cpp 500"])
def test_a_context_window_error_sends_less_and_remembers_it(
        make_ctx: MakeCtx, worktree: Path, refusal: Reply) -> None:
    # A big file in scope: the default budget (60K tokens) sends about 60K characters of it; the
    # window holds 20K characters, so the proposer must halve its budget twice.
    add_a_big_file(worktree)
    sizes, handle = window(20_000, refusal)
    with FakeModelServer(handler=handle) as server:  # type: ignore[arg-type]
        p = proposer(server)
        assert p.propose(make_ctx()) is not None
        assert len(sizes) == 3 and sizes[0] > sizes[1] > sizes[2]
        assert p.context_tokens == 15_000
        sizes.clear()
        assert p.propose(make_ctx()) is not None  # the next proposal fits at once
        assert len(sizes) == 1


def sized_window(room: int, kind: str) -> tuple[list[int], object]:
    """A server whose window holds `room` tokens besides the reply's max_tokens (a token being
    4 characters here), refusing a longer request the way `kind` does, with the sizes in it."""
    sizes: list[int] = []

    def handle(request: Recorded) -> Reply:
        prompt = len(request.prompt_text()) // 4
        sizes.append(prompt)
        reply_room = int(request.body["max_tokens"])
        window = room + reply_room
        if prompt + reply_room <= window:
            return Reply(text=GOOD)
        if kind == "vllm":
            return Reply(status=400, error=(
                f"This model's maximum context length is {window} tokens. However, you "
                f"requested {prompt + reply_room} tokens ({prompt} in the messages, "
                f"{reply_room} in the completion). Please reduce the length of the messages "
                "or completion."))
        if kind == "llama.cpp":
            return Reply(status=400, error=LLAMACPP_OVERFLOW, error_type="exceed_context_size_error",
                         error_fields={"n_prompt_tokens": prompt + reply_room, "n_ctx": window})
        return Reply(status=400, error=(  # Anthropic
            f"input length and `max_tokens` exceed context limit: {prompt} + {reply_room} > "
            f"{window}, decrease input length or `max_tokens` and try again"))

    return sizes, handle


@pytest.mark.parametrize("kind", ["vllm", "llama.cpp", "anthropic"])
def test_a_window_that_names_its_size_is_fitted_at_the_first_refusal(
        make_ctx: MakeCtx, worktree: Path, kind: str) -> None:
    # The same big file as above, a window with room for 9,000 tokens of prompt: halving would
    # take four requests (60K, 30K, 15K, 7.5K tokens); read from the refusal, the size fits on
    # the second, and uses most of the room.
    add_a_big_file(worktree)
    sizes, handle = sized_window(9_000, kind)
    with FakeModelServer(handler=handle) as server:  # type: ignore[arg-type]
        p = proposer(server, kind="anthropic" if kind == "anthropic" else "openai")
        assert p.propose(make_ctx()) is not None
        assert len(sizes) == 2, sizes
        assert sizes[1] <= 9_000 and 7_000 <= p.context_tokens < 9_000
        sizes.clear()
        assert p.propose(make_ctx()) is not None and len(sizes) == 1


def test_a_reply_room_as_large_as_the_window_stops_at_once(
        server: FakeModelServer, make_ctx: MakeCtx) -> None:
    # max_tokens 8192 against an 8192-token window: no context fits, whatever is cut.
    server.push(Reply(status=400, error=(
        "This model's maximum context length is 8192 tokens. However, you requested 12000 "
        "tokens (3808 in the messages, 8192 in the completion).")))
    with pytest.raises(FatalProposerError) as info:
        proposer(server).propose(make_ctx())
    assert len(server.requests) == 1
    assert "a 8192-token window, 8192 of them kept for the reply" in info.value.what
    assert "max_tokens (now 8192" in str(info.value.fix)


def test_a_window_too_small_for_max_tokens_stops_naming_the_options(
        server: FakeModelServer, make_ctx: MakeCtx) -> None:
    server.push(*[Reply(status=400, error=VLLM_OVERFLOW)] * 10)
    with pytest.raises(FatalProposerError) as info:
        proposer(server).propose(make_ctx())
    assert "maximum context length" in info.value.what
    fix = str(info.value.fix)
    assert "max_tokens (now 8192" in fix and "--max-model-len" in fix and "llama-server -c" in fix
    assert "context_tokens" in str(info.value.where)
    # The refusal names its sizes: 60K tokens, then 7,157 (60K × 8,192 / 61,808 × 0.9); the
    # same refusal again fits it to 853, under the 2,000 a context needs: stop.
    assert len(server.requests) == 2


# --- the endpoint probe -----------------------------------------------------------------------


@pytest.mark.parametrize("listing", [
    {"models": [{"name": "qwen3:8b", "model": "qwen3:8b", "size": 1}]},  # Ollama's /api/tags
    {"object": "list"},
])
def test_the_probe_accepts_a_working_server_whose_listing_has_another_shape(
        server: FakeModelServer, listing: dict[str, object]) -> None:
    server.models_body = listing
    server.push(Reply(text="p"))
    said = provider(server).probe()
    assert said.startswith("the endpoint answered a one-token request (its model list could not "
                           "be read, a reply in a shape of its own, so whether it lists ")
    assert len(server.requests) == 1


def test_the_probe_accepts_llamacpps_one_model_listed_by_its_file(server: FakeModelServer) -> None:
    # llama-server lists the one model it serves, by its file name, whatever `model` says.
    server.models_body = {"object": "list", "data": [
        {"id": "/models/qwen3-8b-q4_k_m.gguf", "object": "model", "owned_by": "llamacpp",
         "created": 0, "meta": {"n_ctx_train": 40960}}],
        "models": [{"name": "/models/qwen3-8b-q4_k_m.gguf", "model": "qwen3-8b"}]}
    server.push(Reply(text="p"))
    said = provider(server).probe()
    assert "is not among the 1 models it lists (e.g. /models/qwen3-8b-q4_k_m.gguf), but it " \
           "answered a one-token request naming it" in said
    assert len(server.requests) == 1  # the request that confirmed it serves the name


# --- a slow first token; no API key -----------------------------------------------------------


def test_a_timeout_names_the_option_to_raise(server: FakeModelServer) -> None:
    server.push(Reply(text="late", delay=1.0))
    with pytest.raises(ProposerOutage) as info:
        ask(provider(server, timeout_seconds=0.3, max_retries=0))
    assert "no response within 0.3 s" in info.value.what
    assert "raise [proposer] timeout_seconds" in info.value.what


def test_the_probe_says_how_long_it_waited_and_how_long_run_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # No /v1/models (older llama-server builds), and a model that loads for a while.
    monkeypatch.setattr("autoresearch.proposers.llm.probe.MAX_PROBE_SECONDS", 0.3)
    with FakeModelServer([Reply(text="p", delay=1.0)], models=None) as server:
        said = provider(server, timeout_seconds=120).probe()
    assert said.startswith("could not confirm the endpoint now")
    assert "no response within 0.3 s" in said and "timeout_seconds = 120 s" in said


def test_no_key_is_needed_for_a_local_server_and_a_refusal_says_none_was_sent(
        server: FakeModelServer) -> None:
    server.push(Reply(text="hello"))
    assert ask(provider(server, provider="ollama", base_url=server.openai_url)) == "hello"
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"
    server.push(Reply(status=401, error="Invalid API key"))
    with pytest.raises(FatalProposerError) as info:
        ask(provider(server, provider="vllm", base_url=server.openai_url))
    assert "no key was sent, since OPENAI_API_KEY is not set" in info.value.what
    server.push(Reply(status=401, error="Invalid API key"))
    with pytest.raises(FatalProposerError) as info:
        ask(provider(server, {"OPENAI_API_KEY": "sk-wrong"}, base_url=server.openai_url))
    assert "no key was sent" not in info.value.what


@pytest.mark.slow
def test_a_session_on_a_window_too_small_stops_with_the_fix_not_a_loop(toy_repo: Path) -> None:
    # Anthropic's wording this time; every request is refused as too long, whatever its size.
    too_long = Reply(status=400, error="prompt is too long: 210000 tokens > 200000 maximum")
    with FakeModelServer([too_long] * 10) as server:
        use_fake_model(toy_repo, server)
        result = run_cli(toy_repo, "run", "--tag", "w", "--iterations", "4", timeout=120)
        # 60K tokens, then fitted to what the refusal named (49,320), refused again: halved
        # from there (24,660, 12,330, 6,165, 3,082), then below 2,000: stop.
        assert len(server.requests) == 6
    output = result.stdout + result.stderr
    assert result.returncode == 5, output
    assert "prompt is too long" in output and "max_tokens" in output
    assert "Traceback" not in output
