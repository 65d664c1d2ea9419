"""What a failed model call means: retry it, stop the session, send less, or give up on it.

One table (`classify`) for both SDKs (their exception hierarchies have the same names), so that
the provider's retry loop decides nothing by itself; and the markers by which servers say that a
request is longer than the model's context window.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from autoresearch.proposers.faults import ContextSizes
from autoresearch.proposers.llm.settings import ProviderSettings


class UnusableReply(Exception):
    """A 200 reply that is not the API's shape (the SDK hands back a str, or an object without
    the fields every reply has): treated like a bad gateway."""


@dataclass(frozen=True)
class Fault:
    """How to react to a failed call."""

    kind: Literal["retry", "fatal", "refused", "context"]
    message: str
    retry_after: float | None = None
    status: int | None = None  # the HTTP status, when there was one
    refused_connection: bool = False  # nothing listening at the address
    sizes: ContextSizes | None = None  # kind "context": the sizes the server named, if it did


def _retry_after(exc: BaseException, now: float | None = None) -> float | None:
    """The pause the server asks for, in seconds: retry-after-ms, or Retry-After as seconds or
    as an HTTP date (RFC 9110 allows both: "120" or "Wed, 21 Oct 2026 07:28:00 GMT")."""
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
            pass
        if name == "retry-after" and (until := _http_date(raw)) is not None:
            return max(0.0, until - (time.time() if now is None else now))
    return None


def _http_date(text: str) -> float | None:
    """An HTTP date as a `time.time()`, or None when it is not one (garbage is ignored, as a
    missing header is: the backoff's own schedule applies)."""
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # asctime's form ("Sun Nov  6 08:49:37 1994"), one of HTTP's three, names no zone: GMT.
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _error_of(exc: BaseException) -> object:
    """The error the server's body holds: its "error" object (OpenAI, Anthropic, llama.cpp),
    a bare string, or the body itself; None when there is no parsed body."""
    body = getattr(exc, "body", None)
    return body.get("error", body) if isinstance(body, dict) else None


def server_message(exc: BaseException) -> str:
    """The server's own error message, without the SDK's "Error code: 401 - {...}" wrapping."""
    err = _error_of(exc)
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])[:300]
    if isinstance(err, str):
        return err[:300]
    return str(getattr(exc, "message", "") or exc)[:300]


def _connection_refused(exc: BaseException) -> bool:
    """Whether a connection error is a refused connection (the SDK wraps httpx wraps OSError)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or "connection refused" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def snippet(body: object) -> str:
    """The start of an unusable body, for a message."""
    text = " ".join(str(body).split())
    return repr(text[:60] + ("…" if len(text) > 60 else ""))


class CallDeadline(Exception):
    """No complete reply within [proposer] timeout_seconds (the call's whole time)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete reply within {seconds:g} s")
        self.seconds = seconds


def classify(exc: BaseException, sdk: Any, settings: ProviderSettings) -> Fault | None:
    """The retry table, shared by both SDKs (their exception hierarchies have the same names)."""
    where = settings.describe()
    not_api = f"is base_url the API's address? ({settings.base_url_advice()})"
    if isinstance(exc, UnusableReply):
        return Fault("retry", f"{where}: HTTP 200, but the body is not an API reply "
                              f"(it begins {exc}); a proxy or web page answered? {not_api}")
    if isinstance(exc, CallDeadline):
        return Fault("retry", f"{where}: {exc}, though it kept sending (a stalled proxy, or a "
                              "stream that does not end? raise [proposer] timeout_seconds for a "
                              "slow model)")
    if isinstance(exc, UnicodeDecodeError):
        return Fault("retry", f"{where}: HTTP 200, but the body is not valid UTF-8 ({exc.reason} "
                              f"at byte {exc.start}): cut off or garbled on the way, or {not_api}")
    if isinstance(exc, json.JSONDecodeError):
        # The SDK parses a JSON content type itself: a cut-off or garbled body lands here.
        return Fault("retry", f"{where}: HTTP 200, but the body is not valid JSON ({exc.msg} at "
                              f"character {exc.pos}): cut off on the way, or {not_api}")
    if isinstance(exc, sdk.APITimeoutError):
        # A local model loading into memory can take a minute before its first token.
        return Fault("retry", f"{where}: no response within {settings.timeout_seconds:g} s "
                              "(a model still loading, or a slow one? raise [proposer] "
                              "timeout_seconds)")
    if isinstance(exc, sdk.APIConnectionError):
        if _connection_refused(exc):
            return Fault("retry", f"{where}: connection refused: nothing is listening at "
                                  f"{settings.base_url or 'the default address'}",
                         refused_connection=True)
        return Fault("retry", f"{where}: connection failed ({exc})")
    if isinstance(exc, sdk.APIStatusError):
        code = int(exc.status_code)
        detail = server_message(exc)
        if code in (401, 403):
            sent = ("" if settings.api_key_set else
                    f"; no key was sent, since {settings.api_key_env} is not set")
            return Fault(
                "fatal",
                f"{where} refused the API key (HTTP {code}): {detail}{sent}",
            )
        if is_context_overflow(exc, detail):
            # Before the 5xx rule: llama.cpp has answered this with a 500 too.
            return Fault("context", f"{where}: the request is longer than the model's context "
                                    f"window (HTTP {code}): {detail}", status=code,
                         sizes=sizes_of(exc, detail))
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


# How servers say "the prompt plus max_tokens exceeds the context window": vLLM and OpenAI
# ("This model's maximum context length is 16384 tokens. However, you requested ...",
# code context_length_exceeded), llama.cpp's server ("the request exceeds the available context
# size", type exceed_context_size_error; older builds "Context size has been exceeded"), Anthropic
# ("prompt is too long: 210000 tokens > 200000 maximum", or "input length and `max_tokens`
# exceed context limit: 198000 + 8192 > 200000").
CONTEXT_OVERFLOW = ("maximum context length", "context_length_exceeded", "exceed_context_size",
                    "exceeds the available context size", "context size has been exceeded",
                    "prompt is too long", "exceed context limit")


def is_context_overflow(exc: BaseException, detail: str) -> bool:
    err = _error_of(exc)
    said = " ".join(str(err.get(k, "")) for k in ("type", "code")) if isinstance(err, dict) else ""
    return any(marker in f"{detail} {said}".lower() for marker in CONTEXT_OVERFLOW)


# The sizes the servers put in those refusals, as (pattern, the fields its groups fill):
_SIZES = (
    # vLLM and OpenAI: "... maximum context length is 16384 tokens. However, you requested 70000
    # tokens (61808 in the messages, 8192 in the completion)" or "... your messages resulted in
    # 9000 tokens"; newer vLLM: "... is 4096 tokens and your request has 3000 input tokens".
    (r"maximum context length is (\d+) tokens", ("tokens",)),
    (r"\((\d+) in the messages, (\d+) in the completion\)", ("prompt", "completion")),
    (r"messages resulted in (\d+) tokens", ("prompt",)),
    (r"request has (\d+) input tokens", ("prompt",)),
    # Anthropic: "prompt is too long: 210000 tokens > 200000 maximum", or "input length and
    # `max_tokens` exceed context limit: 198000 + 8192 > 200000".
    (r"prompt is too long: (\d+) tokens > (\d+) maximum", ("prompt", "tokens")),
    (r"context limit: (\d+) \+ (\d+) > (\d+)", ("prompt", "completion", "tokens")),
)


def sizes_of(exc: BaseException, detail: str) -> ContextSizes | None:
    """The window's size and the request's, as the refusal states them; None when it names no
    window size (then the proposer can only guess, and halves what it sends). llama.cpp's server
    puts them in the error object (n_ctx, n_prompt_tokens), the others in the message."""
    found: dict[str, int] = {}
    err = _error_of(exc)
    if isinstance(err, dict):
        for key, name in (("n_ctx", "tokens"), ("n_prompt_tokens", "prompt")):
            value = err.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                found[name] = value
    for pattern, names in _SIZES:
        match = re.search(pattern, detail, re.IGNORECASE)
        if match:
            for name, value in zip(names, match.groups(), strict=True):
                found.setdefault(name, int(value))
    if not found.get("tokens"):
        return None
    return ContextSizes(found["tokens"], found.get("prompt"), found.get("completion"))
