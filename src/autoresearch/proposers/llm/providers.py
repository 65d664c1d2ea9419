"""One seam to call a model: `Provider.complete(system, turns) -> Completion(text, usage)`.

Two implementations, both through the official SDKs, imported lazily so that `tune` users never
pay for them: the Anthropic Messages API, and the OpenAI Chat Completions API with a configurable
base URL (which also covers Ollama, vLLM, llama.cpp server, LM Studio and OpenRouter).

The SDKs' own retries are turned off (max_retries=0) and this module retries instead, so that
one table decides what is worth retrying, the backoff is testable, and exhausting the retries
becomes a `ProposerOutage` the session can pause on rather than an exception it cannot tell from
a bug. An invalid key or an unknown model is a `FatalProposerError`: retrying cannot fix it.
"""

from __future__ import annotations

import importlib
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from autoresearch.proposers.base import Usage
from autoresearch.proposers.faults import FailedProposal, FatalProposerError, ProposerOutage
from autoresearch.proposers.llm.prices import PriceTable
from autoresearch.proposers.llm.settings import ProviderSettings

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Fault:
    """How to react to a failed call."""

    kind: Literal["retry", "fatal", "refused"]
    message: str
    retry_after: float | None = None
    status: int | None = None  # the HTTP status, when there was one


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            continue
    return None


def _detail(exc: BaseException) -> str:
    """The server's own error message, without the SDK's "Error code: 401 - {...}" wrapping."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return str(getattr(exc, "message", "") or exc)[:300]


def classify(exc: BaseException, sdk: Any, settings: ProviderSettings) -> Fault | None:
    """The retry table, shared by both SDKs (their exception hierarchies have the same names)."""
    where = settings.describe()
    if isinstance(exc, sdk.APITimeoutError):
        return Fault("retry", f"{where}: no response within {settings.timeout_seconds:g} s")
    if isinstance(exc, sdk.APIConnectionError):
        return Fault("retry", f"{where}: connection failed ({exc})")
    if isinstance(exc, sdk.APIStatusError):
        code = int(exc.status_code)
        detail = _detail(exc)
        if code in (401, 403):
            return Fault(
                "fatal",
                f"{where} refused the API key (HTTP {code}): {detail}",
            )
        if code == 402 or "credit balance" in detail.lower():
            return Fault("fatal", f"{where}: billing problem (HTTP {code}): {detail}")
        if code == 404:
            return Fault(
                "fatal", f"{where}: model or endpoint not found (HTTP 404): {detail}", status=404
            )
        if code in (408, 409, 425, 429) or code >= 500:
            return Fault("retry", f"{where}: HTTP {code}: {detail}", _retry_after(exc))
        return Fault("refused", f"{where} refused the request (HTTP {code}): {detail}")
    if isinstance(exc, sdk.APIError):
        # e.g. a response that does not match the API schema: this call failed, the next may not.
        return Fault("refused", f"{where}: unusable response: {exc}")
    return None


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

    sdk_module: ClassVar[str]  # the official SDK (imported on first use)
    client_class: ClassVar[str]  # its synchronous client

    def _sdk(self) -> Any:
        return importlib.import_module(self.sdk_module)

    def _make_client(self, sdk: Any) -> Any:
        s = self.settings
        return getattr(sdk, self.client_class)(
            api_key=s.api_key, base_url=s.base_url, timeout=s.timeout_seconds, max_retries=0
        )

    @abstractmethod
    def _call(self, client: Any, system: Sequence[Part], turns: Sequence[Turn]) -> tuple[
        str, int, int, int, int, bool
    ]:
        """One API call: (text, input, output, cache_read, cache_write, truncated)."""

    def complete(
        self, system: Sequence[Part], turns: Sequence[Turn], *, purpose: str = "propose"
    ) -> Completion:
        sdk = self._sdk()
        if self._client is None:
            self._client = self._make_client(sdk)
        s = self.settings
        last: Fault | None = None
        for attempt in range(s.max_retries + 1):
            if attempt:
                assert last is not None
                delay = min(s.retry_max_seconds, s.retry_base_seconds * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2  # jitter: parallel workers do not retry in step
                if last.retry_after is not None:
                    if last.retry_after > s.retry_max_seconds:
                        break  # the server asks for a long pause: that is the session's to take
                    delay = max(delay, last.retry_after)
                log.warning("%s; retrying in %.1f s (attempt %d)", last.message, delay, attempt + 1)
                self._sleep(delay)
            try:
                text, inp, out, c_read, c_write, truncated = self._call(self._client, system, turns)
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
                if fault.kind == "refused":
                    raise FailedProposal(fault.message) from None
                last = fault
                continue
            return Completion(text, self._usage(inp, out, c_read, c_write, purpose), truncated)
        assert last is not None
        wait = max(s.outage_retry_after or 0.0, last.retry_after or 0.0)
        raise ProposerOutage(
            f"{last.message} (gave up after {s.max_retries + 1} attempts)",
            retry_after_s=wait,
            where=s.describe(),
            fix="the session pauses and asks again later; nothing is lost",
        )

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

    def _call(self, client: Any, system: Sequence[Part], turns: Sequence[Turn]) -> tuple[
        str, int, int, int, int, bool
    ]:
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
        text = "".join(
            getattr(b, "text", "") for b in response.content if getattr(b, "type", "") == "text"
        )
        u = response.usage
        return (
            text,
            int(u.input_tokens or 0),
            int(u.output_tokens or 0),
            int(getattr(u, "cache_read_input_tokens", 0) or 0),
            int(getattr(u, "cache_creation_input_tokens", 0) or 0),
            response.stop_reason == "max_tokens",
        )


class OpenAIProvider(Provider):
    sdk_module = "openai"
    client_class = "OpenAI"

    def _call(self, client: Any, system: Sequence[Part], turns: Sequence[Turn]) -> tuple[
        str, int, int, int, int, bool
    ]:
        s = self.settings
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "\n\n".join(p.text for p in system)}
        ]
        messages += [{"role": t.role, "content": t.text} for t in turns]
        kwargs: dict[str, Any] = {"model": s.model, "messages": messages}
        kwargs[s.max_tokens_field] = s.max_tokens
        if s.temperature is not None:
            kwargs["temperature"] = s.temperature
        if s.extra_body:
            kwargs["extra_body"] = dict(s.extra_body)
        response = client.chat.completions.create(**kwargs)
        if not response.choices:
            raise FailedProposal(f"{s.describe()} returned no choices")
        choice = response.choices[0]
        text = choice.message.content or ""
        u = response.usage
        prompt = int(getattr(u, "prompt_tokens", 0) or 0)
        completion = int(getattr(u, "completion_tokens", 0) or 0)
        details = getattr(u, "prompt_tokens_details", None)
        cached = int(getattr(details, "cached_tokens", 0) or 0)
        # prompt_tokens includes the cached ones; normalize to Anthropic's convention.
        return text, max(prompt - cached, 0), completion, cached, 0, choice.finish_reason == "length"


def make_provider(
    settings: ProviderSettings, prices: PriceTable, *, sleep: Callable[[float], None] = time.sleep
) -> Provider:
    cls: type[Provider] = AnthropicProvider if settings.provider == "anthropic" else OpenAIProvider
    return cls(settings, prices, sleep=sleep)
