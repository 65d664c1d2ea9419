"""One seam to call a model: `Provider.complete(system, turns) -> Completion(text, usage)`.

Two implementations, both through the official SDKs, imported lazily so that `tune` users never
pay for them: the Anthropic Messages API, and the OpenAI Chat Completions API with a configurable
base URL (which also covers Ollama, vLLM, llama.cpp server, LM Studio and OpenRouter).

The SDKs' own retries are turned off (max_retries=0) and this module retries instead, so that
one table decides what is worth retrying, the backoff is testable, and exhausting the retries
becomes a `ProposerOutage` the session can pause on rather than an exception it cannot tell from
a bug. An invalid key or an unknown model is a `FatalProposerError`: retrying cannot fix it.

A reply that is not the API's shape (an HTML page from a proxy or a web UI, a body cut off by a
load balancer, a non-JSON answer) is retried like a bad gateway: it is never a traceback. A
connection refused is retried too, but not for ever: nothing listening at `base_url` is far more
often a configuration mistake than an outage, so after `REFUSED_OUTAGES` outages in a row that
were all refused connections the provider stops the session with the fix (`FatalProposerError`).

A request the server refuses as longer than its context window is a `ContextTooLong` (the
proposer sends less); a reasoning model's leading `<think>` block is cut from the answer; a
reply without token counts (local servers) is recorded as 0 tokens, with a warning where tokens
cost money.

`probe` asks the endpoint cheaply (probe.py: it lists the models; only when listing is not
supported, or the model is not listed, does it send the smallest request), so that `check` and
the start of `run` report a refused key, an unknown model or nothing listening before any
baseline run is spent.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from autoresearch.proposers.base import Usage
from autoresearch.proposers.faults import (
    MAX_PROVIDER_PAUSE_S,
    ContextTooLong,
    FailedProposal,
    FatalProposerError,
    OutOfTime,
    ProposerOutage,
)
from autoresearch.proposers.llm.call_faults import (
    CallDeadline,
    Fault,
    UnusableReply,
    classify,
    snippet,
)
from autoresearch.proposers.llm.prices import PriceTable
from autoresearch.proposers.llm.settings import ProviderSettings

log = logging.getLogger(__name__)

REFUSED_OUTAGES = 3  # outages in a row of refused connections before the session stops
DEADLINE_GRACE_S = 2.0  # past timeout_seconds before a call is cut (the SDK's own timeout first)


@dataclass(frozen=True)
class Part:
    """A piece of a message; `cache` marks the end of a prefix worth caching (Anthropic)."""

    text: str
    cache: bool = False


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    parts: tuple[Part, ...]

    @classmethod
    def user(cls, *parts: Part | str) -> Turn:
        return cls("user", tuple(p if isinstance(p, Part) else Part(p) for p in parts))

    @classmethod
    def assistant(cls, text: str) -> Turn:
        return cls("assistant", (Part(text),))

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.parts)


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage
    truncated: bool = False  # stopped at the output token limit


# A reasoning model's thoughts, when the server leaves them in the content (deepseek-r1 or qwq on
# Ollama, vLLM without a reasoning parser): "<think>...</think>" before the answer. They hold
# drafts of the answer (draft edit blocks too), which must not be read as the answer. An unclosed
# one (the reply was cut off while thinking) leaves no answer at all.
_THINK = re.compile(r"^\s*<(think|thinking|reasoning)>.*?(?:</\1>|\Z)",
                    re.DOTALL | re.IGNORECASE)


def without_reasoning(text: str) -> str:
    """The answer of a reply, its leading <think>...</think> block(s) removed."""
    while (found := _THINK.match(text)) is not None and found.end() > 0:
        text = text[found.end():]
    return text


@dataclass(frozen=True)
class Raw:
    """What one API call returned, before it is priced: `empty` says why a reply that was billed
    holds nothing usable (no choices)."""

    text: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    truncated: bool = False
    empty: str | None = None
    counted: bool = True  # the reply reported its token usage (local servers may not)


class Provider(ABC):
    """A model endpoint with retries, backoff, and the cost of every call."""

    def __init__(
        self,
        settings: ProviderSettings,
        prices: PriceTable,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.prices = prices
        self._sleep = sleep
        self._client: Any = None
        self._warned_price = False
        self._warned_uncounted = False
        self._refused_outages = 0  # outages in a row that were only refused connections

    sdk_module: ClassVar[str]  # the official SDK (imported on first use)
    client_class: ClassVar[str]  # its synchronous client

    def _sdk(self) -> Any:
        return importlib.import_module(self.sdk_module)

    def _make_client(self, sdk: Any, timeout: float | None = None) -> Any:
        s = self.settings
        return getattr(sdk, self.client_class)(
            api_key=s.api_key, base_url=s.base_url, timeout=timeout or s.timeout_seconds,
            max_retries=0,
        )

    @abstractmethod
    def _call(self, client: Any, system: Sequence[Part], turns: Sequence[Turn]) -> Raw:
        """One API call; UnusableReply when the reply is not the API's shape."""

    @abstractmethod
    def _ping(self, client: Any) -> None:
        """The smallest request the API accepts (for `probe` when listing models fails);
        UnusableReply when what answers is not the API."""

    def complete(
        self, system: Sequence[Part], turns: Sequence[Turn], *, purpose: str = "propose",
        deadline: float | None = None,
    ) -> Completion:
        """The model's reply, retried through transient faults. `deadline` (a `time.time()`: the
        session's time limit) bounds the whole of it, pauses included: an attempt is cut there
        and a pause that would end past it is not taken (OutOfTime)."""
        sdk = self._sdk()
        if self._client is None:
            self._client = self._make_client(sdk)
        s = self.settings
        last: Fault | None = None
        only_refused = True
        made = 0  # attempts actually made (a long retry-after ends them early)
        for attempt in range(s.max_retries + 1):
            if attempt:
                assert last is not None
                delay = min(s.retry_max_seconds, s.retry_base_seconds * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2  # jitter: parallel workers do not retry in step
                if last.retry_after is not None:
                    if last.retry_after > s.retry_max_seconds:
                        break  # the server asks for a long pause: that is the session's to take
                    delay = max(delay, last.retry_after)
                if deadline is not None and time.time() + delay >= deadline:
                    raise OutOfTime(f"{last.message}; the session's time limit comes before "
                                    "the next attempt", where=s.describe())
                log.warning("%s; retrying in %.1f s (attempt %d)", last.message, delay, attempt + 1)
                self._sleep(delay)
            made += 1
            try:
                raw = self._call_within_deadline(system, turns, deadline)
            except OutOfTime:
                raise
            except Exception as exc:
                fault = classify(exc, sdk, s)
                if fault is None:
                    raise
                if fault.kind == "fatal":
                    raise FatalProposerError(
                        fault.message,
                        where="[proposer] in autoresearch.toml and the environment",
                        fix=s.fix_hint(fault.status),
                    ) from None
                if fault.kind == "context":
                    raise ContextTooLong(fault.message, where=s.describe(),
                                         sizes=fault.sizes) from None
                if fault.kind == "refused":
                    raise FailedProposal(fault.message) from None
                only_refused = only_refused and fault.refused_connection
                last = fault
                continue
            self._refused_outages = 0
            if not raw.counted:
                self._warn_uncounted()
            usage = self._usage(raw.input_tokens, raw.output_tokens, raw.cache_read_tokens,
                                raw.cache_write_tokens, purpose)
            if raw.empty is not None:
                # Billed (the reply says what it cost) but nothing in it: this proposal failed.
                raise FailedProposal(f"{s.describe()} {raw.empty}", usage=[usage])
            return Completion(without_reasoning(raw.text), usage, raw.truncated)
        assert last is not None
        self._refused_outages = self._refused_outages + 1 if only_refused else 0
        if self._refused_outages >= REFUSED_OUTAGES:
            self._refused_outages = 0
            raise FatalProposerError(
                f"{last.message}, in each of the last {REFUSED_OUTAGES} pauses' "
                f"{s.max_retries + 1} attempts: the session stops instead of waiting for ever",
                where=f"[proposer] base_url in autoresearch.toml (now {s.base_url!r})",
                fix="start the model server, or correct base_url (and check that "
                    "`autoresearch check` reaches it); then `autoresearch run` resumes the session",
            )
        wait = max(s.outage_retry_after or 0.0, last.retry_after or 0.0)
        asked = (f"; the server asked for a pause of {last.retry_after:g} s"
                 + (f", more than the {MAX_PROVIDER_PAUSE_S / 3600:g} h a pause may last"
                    if last.retry_after > MAX_PROVIDER_PAUSE_S else "")
                 if last.retry_after is not None and made < s.max_retries + 1 else "")
        raise ProposerOutage(
            f"{last.message} (gave up after {made} attempt{'s' * (made != 1)}{asked})",
            retry_after_s=wait,
            where=s.describe(),
            fix="the session pauses and asks again later; nothing is lost",
        )

    def _call_within_deadline(self, system: Sequence[Part], turns: Sequence[Turn],
                              session_deadline: float | None = None) -> Raw:
        """One call that ends within [proposer] timeout_seconds, whatever the server does, and
        by the session's time limit (`session_deadline`) when that comes first (OutOfTime).

        The SDKs' timeout bounds each read, not the call: a server that sends a byte every few
        seconds (a stalled proxy, a stream that never ends) would hold the session past every
        limit. The call runs in a thread; past the deadline its client is closed, which ends
        the connection under it, and a new client is made for the next call."""
        wait = self.settings.timeout_seconds + DEADLINE_GRACE_S
        left = None if session_deadline is None else session_deadline - time.time()
        cut_by_limit = left is not None and left < wait
        if left is not None and cut_by_limit:
            if left <= 0:
                raise OutOfTime("the session's time limit came before the model was asked",
                                where=self.settings.describe())
            wait = left
        client = self._client
        outcome: list[tuple[bool, Any]] = []

        def call() -> None:
            try:
                outcome.append((True, self._call(client, system, turns)))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append((False, exc))

        worker = threading.Thread(target=call, name="autoresearch-model-call", daemon=True)
        worker.start()
        worker.join(wait)
        if not outcome:
            self._client = self._make_client(self._sdk())
            with contextlib.suppress(Exception):
                client.close()
            if cut_by_limit:
                raise OutOfTime(f"the session's time limit came during a call to the model "
                                f"(cut after {wait:.0f} s)", where=self.settings.describe())
            raise CallDeadline(self.settings.timeout_seconds)
        ok, value = outcome[0]
        if not ok:
            raise value
        raw: Raw = value
        return raw

    def probe(self) -> str:
        """Ask the endpoint whether it would answer, for `check` and the start of `run`
        (`probe.probe_endpoint`); one line saying what it found."""
        from autoresearch.proposers.llm.probe import probe_endpoint

        return probe_endpoint(self)

    def _warn_uncounted(self) -> None:
        """A reply without token counts is recorded as 0 tokens and $0: say so once, louder where
        tokens cost money (the spending limit cannot see these calls)."""
        if self._warned_uncounted:
            return
        self._warned_uncounted = True
        s = self.settings
        if s.is_metered and self.prices.price_for(s.model) is not None:
            log.warning("%s reports no token usage: its calls are recorded with 0 tokens and cost "
                        "0 (the real cost is unknown), so [limits] max_usd cannot stop them",
                        s.describe())
        else:
            log.info("%s reports no token usage: its calls are recorded with 0 tokens",
                     s.describe())

    def _usage(self, inp: int, out: int, c_read: int, c_write: int, purpose: str) -> Usage:
        model = self.settings.model
        price = self.prices.price_for(model)
        if price is None and not self._warned_price and self.settings.is_metered:
            self._warned_price = True
            log.warning(
                "no price known for %s: its calls are recorded with cost 0, so [limits] max_usd "
                "cannot stop them; add it under [proposer] prices "
                "(e.g. prices = { \"%s\" = { input = 2, output = 10 } }, USD per million tokens)",
                model, model,
            )
        cost = 0.0 if price is None else price.cost(inp, out, c_read, c_write)
        return Usage(
            provider=self.settings.label, model=model, input_tokens=inp, output_tokens=out,
            cache_read_tokens=c_read, cache_write_tokens=c_write, cost_usd=cost, purpose=purpose,
        )

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and hasattr(client, "close"):
            client.close()


class AnthropicProvider(Provider):
    sdk_module = "anthropic"
    client_class = "Anthropic"

    def _call(self, client: Any, system: Sequence[Part], turns: Sequence[Turn]) -> Raw:
        def blocks(parts: Sequence[Part]) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for p in parts:
                block: dict[str, Any] = {"type": "text", "text": p.text}
                if p.cache and self.settings.prompt_caching:
                    block["cache_control"] = {"type": "ephemeral"}
                out.append(block)
            return out

        s = self.settings
        extra: dict[str, Any] = dict(s.extra_body)
        if s.temperature is not None:
            extra["temperature"] = s.temperature
        response = client.messages.create(
            model=s.model,
            max_tokens=s.max_tokens,
            system=blocks(system),
            messages=[{"role": t.role, "content": blocks(t.parts)} for t in turns],
            extra_body=extra or None,
        )
        content = getattr(response, "content", None)
        if not isinstance(content, list):
            raise UnusableReply(snippet(response))
        text = "".join(
            str(getattr(b, "text", "") or "") for b in content if getattr(b, "type", "") == "text"
        )
        u = getattr(response, "usage", None)
        return Raw(
            text,
            tokens(u, "input_tokens"),
            tokens(u, "output_tokens"),
            tokens(u, "cache_read_input_tokens"),
            tokens(u, "cache_creation_input_tokens"),
            getattr(response, "stop_reason", None) == "max_tokens",
        )

    def _ping(self, client: Any) -> None:
        response = client.messages.create(model=self.settings.model, max_tokens=1,
                                          messages=[{"role": "user", "content": "ping"}])
        if not isinstance(getattr(response, "content", None), list):
            raise UnusableReply(snippet(response))


class OpenAIProvider(Provider):
    sdk_module = "openai"
    client_class = "OpenAI"

    def _call(self, client: Any, system: Sequence[Part], turns: Sequence[Turn]) -> Raw:
        s = self.settings
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "\n\n".join(p.text for p in system)}
        ]
        messages += [{"role": t.role, "content": t.text} for t in turns]
        kwargs: dict[str, Any] = {"model": s.model, "messages": messages,
                                  **token_limit(s.max_tokens_field, s.max_tokens, s.extra_body)}
        if s.temperature is not None:
            kwargs["temperature"] = s.temperature
        response = client.chat.completions.create(**kwargs)
        choices = getattr(response, "choices", None)
        if isinstance(response, str) or (choices is not None and not isinstance(choices, list)):
            raise UnusableReply(snippet(response))
        # The usage is read first: a reply with no choices is billed all the same.
        u = getattr(response, "usage", None)
        prompt = tokens(u, "prompt_tokens")
        completion = tokens(u, "completion_tokens")
        details = getattr(u, "prompt_tokens_details", None)
        cached = tokens(details, "cached_tokens")
        # prompt_tokens includes the cached ones; normalize to Anthropic's convention.
        fresh = max(prompt - cached, 0)
        counted = prompt + completion > 0  # no usage object, or zeros: nothing was counted
        if not choices:
            return Raw("", fresh, completion, cached, empty="returned no choices",
                       counted=counted)
        choice = choices[0]
        message = getattr(choice, "message", None)
        # Only the content is the answer: a reasoning_content beside it (vLLM's reasoning
        # parsers, DeepSeek) is the model's thinking, drafts included.
        text = getattr(message, "content", None) or ""
        return Raw(str(text), fresh, completion, cached, 0,
                   getattr(choice, "finish_reason", None) == "length", counted=counted)

    def _ping(self, client: Any) -> None:
        s = self.settings
        response = client.chat.completions.create(
            model=s.model, messages=[{"role": "user", "content": "ping"}],
            **token_limit(s.max_tokens_field, 1, {}))
        if isinstance(response, str) or not isinstance(getattr(response, "choices", None), list):
            raise UnusableReply(snippet(response))


# The token-limit fields the OpenAI SDK's chat.completions.create takes as keywords. Any other
# (llama.cpp's older n_predict, a proxy's own) goes in extra_body: the SDK refuses an unknown
# keyword with a TypeError before anything is sent.
SDK_TOKEN_FIELDS = frozenset({"max_tokens", "max_completion_tokens"})


def token_limit(field: str, limit: int, extra_body: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords that send `limit` in the request field `field`, with [proposer] extra_body
    (which wins over it, as it does over every field the SDK writes)."""
    if field in SDK_TOKEN_FIELDS:
        return {field: limit, **({"extra_body": dict(extra_body)} if extra_body else {})}
    return {"extra_body": {field: limit, **extra_body}}


def tokens(usage: object, name: str) -> int:
    """A token count of a reply's usage: a whole number of at least 0, or UnusableReply (a count
    the server got wrong must not bill a negative or garbled spend)."""
    value = getattr(usage, name, 0) or 0
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise UnusableReply(f"usage {name} = {snippet(value)}") from None
    return max(count, 0)


def make_provider(
    settings: ProviderSettings, prices: PriceTable, *, sleep: Callable[[float], None] = time.sleep
) -> Provider:
    cls: type[Provider] = AnthropicProvider if settings.provider == "anthropic" else OpenAIProvider
    return cls(settings, prices, sleep=sleep)
