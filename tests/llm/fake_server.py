"""A fake model server speaking the Anthropic Messages and OpenAI Chat Completions wire formats.

It listens on 127.0.0.1 (a free port) in a thread, so the real SDK clients can be pointed at it
with `base_url` and a dummy key. Each request takes the next scripted `Reply` (or asks a handler
function), which can be a text reply with token usage, an HTTP error in the provider's error
format, a delay (to trip client timeouts), a dropped connection, a raw body that is not the
API's (an HTML page, a cut-off JSON), or an OpenAI reply with no choices. Local servers' quirks
too: an OpenAI reply without a `usage` object, a `reasoning_content` beside `content`, an error
`type` of their own (llama.cpp's `exceed_context_size_error`). `GET /v1/models` lists `models`
(the probe `check` makes) as each API does: to the Anthropic SDK in pages of 20 (`limit`,
`after_id`, `has_more`), to the OpenAI SDK in one; `models=None` answers it 404, as servers
without the route do, and `models_body` answers it with a listing in another shape.
`refuses_unlisted=True` answers a request naming a model not listed 404, as the real APIs do.

    with FakeModelServer([Reply(text="HYPOTHESIS: ..."), Reply(status=429)]) as server:
        base = server.anthropic_url      # POST {base}/v1/messages
        base = server.openai_url         # POST {base}/chat/completions (includes /v1)
        server.requests                  # what the clients sent, for assertions
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    text: str = ""
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    input_tokens: int = 1200
    output_tokens: int = 300
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    stop: str = "end"  # "end" or "length" (cut off at max tokens)
    error: str = "scripted failure"
    drop: bool = False  # close the connection without answering
    raw: str | None = None  # send this body as it is, with `content_type`, instead of the API's
    raw_bytes: bytes | None = None  # the same, as bytes (a body that is not UTF-8)
    drip: float = 0.0  # send the body one byte every `drip` seconds (a stalled proxy)
    content_type: str = "application/json"
    empty_choices: bool = False  # OpenAI: a reply with "choices": [] (its usage still reported)
    usage: bool = True  # False: no "usage" object at all (llama.cpp forks, proxies, old Ollama)
    reasoning: str | None = None  # OpenAI: a "reasoning_content" beside "content" (vLLM, DeepSeek)
    error_type: str | None = None  # the error body's "type" (llama.cpp: exceed_context_size_error)
    error_fields: dict[str, Any] = field(default_factory=dict)  # more keys in the error object


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def prompt_text(self) -> str:
        """Every text the client sent (system and messages), joined; for assertions."""
        texts: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, str):
                texts.append(node)
            elif isinstance(node, list):
                for item in node:
                    walk(item)
            elif isinstance(node, dict):
                for key in ("text", "content", "system"):
                    if key in node:
                        walk(node[key])

        walk(self.body.get("system", ""))
        walk(self.body.get("messages", []))
        return "\n".join(texts)


Handler = Callable[[Recorded], Reply]
MODELS = ["claude-sonnet-4-6", "gpt-4.1"]  # the models the test configurations name


class FakeModelServer:
    def __init__(self, replies: Iterable[Reply] = (), handler: Handler | None = None,
                 models: list[str] | None = MODELS,
                 models_body: dict[str, Any] | None = None,
                 refuses_unlisted: bool = False) -> None:
        self._queue: deque[Reply] = deque(replies)
        self._handler = handler
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # ends a dripping reply when the server stops
        self.requests: list[Recorded] = []
        self.models = models
        # GET /v1/models answers this body as it is, when set (a listing in another shape).
        self.models_body = models_body
        self.listings = 0  # GET /v1/models requests served
        # A POST naming a model `models` does not list (nor the alias of one) is answered 404,
        # as OpenAI, Anthropic, vLLM and Ollama answer it.
        self.refuses_unlisted = refuses_unlisted
        self.answered = 0  # POST requests whose reply was sent whole (or dropped, or cut)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._make_handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeModelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def anthropic_url(self) -> str:
        return self.url

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            if self._handler is not None:
                return self._handler(recorded)
            if self._queue:
                return self._queue.popleft()
        return Reply(status=500, error="fake server: no scripted reply left")

    # --- HTTP -------------------------------------------------------------------------------

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                if not urlsplit(self.path).path.rstrip("/").endswith("/v1/models"):
                    self._send(404, {"error": {"type": "not_found", "message": self.path}})
                    return
                with server._lock:
                    server.listings += 1
                if server.models_body is not None:
                    self._send(200, server.models_body)
                    return
                if server.models is None:
                    self._send(404, {"error": {"type": "not_found", "message": self.path}})
                    return
                if "anthropic-version" in {k.lower() for k in self.headers}:
                    self._send(200, _anthropic_listing(server.models, self.path))
                else:
                    self._send(200, _openai_listing(server.models))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                if self.path.endswith("/v1/messages"):
                    kind = "anthropic"
                elif self.path.endswith("/chat/completions"):
                    kind = "openai"
                else:
                    self._send(404, {"error": {"type": "not_found", "message": self.path}})
                    return
                if server.refuses_unlisted and not _serves(server.models, body.get("model")):
                    # As the real APIs refuse a model they do not serve (counted as a request).
                    with server._lock:
                        server.requests.append(recorded)
                    self._send(404, _unknown_model(kind, str(body.get("model"))))
                    return
                try:
                    self._answer(kind, body, server._next(recorded))
                finally:
                    with server._lock:
                        server.answered += 1

            def _answer(self, kind: str, body: dict[str, Any], reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                if reply.status != 200:
                    self._send(reply.status, _error_body(kind, reply), reply.headers)
                    return
                if reply.raw_bytes is not None or reply.raw is not None:
                    data = reply.raw_bytes if reply.raw_bytes is not None else str(reply.raw).encode()
                    self._send_raw(200, data, reply.content_type, drip=reply.drip)
                    return
                payload = _anthropic(body, reply) if kind == "anthropic" else _openai(body, reply)
                self._send_raw(200, json.dumps(payload).encode(), "application/json",
                               reply.headers, drip=reply.drip)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

            def _send_raw(self, status: int, data: bytes, content_type: str,
                          headers: dict[str, str] | None = None, drip: float = 0.0) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(data)))
                    self.send_header("request-id", "req_fake")
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    if not drip:
                        self.wfile.write(data)
                        return
                    for i in range(len(data)):
                        if server._stopping.is_set():
                            return
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        return _Handler


def _error_body(kind: str, reply: Reply) -> dict[str, Any]:
    if kind == "anthropic":
        types = {400: "invalid_request_error", 401: "authentication_error",
                 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error",
                 529: "overloaded_error"}
        return {"type": "error",
                "error": {"type": types.get(reply.status, "api_error"), "message": reply.error}}
    return {"error": {"message": reply.error, "type": reply.error_type or "fake_error",
                      "param": None, "code": str(reply.status), **reply.error_fields}}


ANTHROPIC_PAGE = 20  # Anthropic's GET /v1/models: 20 models a page unless `limit` says


def _anthropic_listing(models: list[str], path: str) -> dict[str, Any]:
    """A page of Anthropic's GET /v1/models: `limit` models (20 by default) after `after_id`,
    with has_more and the first and last ids, which the SDK pages on."""
    query = parse_qs(urlsplit(path).query)
    limit = int(query.get("limit", [ANTHROPIC_PAGE])[0])
    after = query.get("after_id", [None])[0]
    start = models.index(after) + 1 if after in models else 0
    page = models[start:start + limit]
    return {"data": [{"type": "model", "id": m, "display_name": m,
                      "created_at": "2026-01-01T00:00:00Z"} for m in page],
            "has_more": start + limit < len(models),
            "first_id": page[0] if page else None, "last_id": page[-1] if page else None}


def _openai_listing(models: list[str]) -> dict[str, Any]:
    """OpenAI's GET /v1/models (vLLM, Ollama and LM Studio answer the same): one page."""
    return {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                        "owned_by": "fake"} for m in models]}


def _serves(models: list[str] | None, model: object) -> bool:
    """Whether a server listing `models` serves `model`: listed, or the alias a listed id begins
    with (Anthropic takes claude-sonnet-4-5 for claude-sonnet-4-5-20250929). A server that lists
    nothing (models=None) is not judged."""
    if models is None:
        return True
    return isinstance(model, str) and any(m == model or m.startswith(model) for m in models)


def _unknown_model(kind: str, model: str) -> dict[str, Any]:
    """The 404 body each API answers a request naming a model it does not serve with."""
    if kind == "anthropic":
        return {"type": "error", "error": {"type": "not_found_error", "message": f"model: {model}"}}
    return {"error": {"message": f"The model `{model}` does not exist or you do not have access "
                                 "to it.", "type": "invalid_request_error", "param": None,
                      "code": "model_not_found"}}


def _anthropic(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": "max_tokens" if reply.stop == "length" else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
            "cache_read_input_tokens": reply.cache_read_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
        },
    }


def _openai(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    prompt = reply.input_tokens + reply.cache_read_tokens
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    payload: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [] if reply.empty_choices else [{
            "index": 0,
            "message": message,
            "finish_reason": "length" if reply.stop == "length" else "stop",
        }],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": reply.output_tokens,
            "total_tokens": prompt + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cache_read_tokens},
        },
    }
    if not reply.usage:
        del payload["usage"]
    return payload


def sigterm_once_asked(proc: subprocess.Popen[str], server: FakeModelServer, requests: int,
                       what: str, within_s: float = 60,
                       settled: Callable[[], bool] | None = None) -> str:
    """SIGTERM `proc` once `server` has received `requests` requests and sent whole the replies
    of all but one (held), and once `settled()` says `proc` has taken them in (without it: a
    second later), and return its stderr; `proc` never outlives the call."""
    try:
        deadline = time.monotonic() + within_s
        while len(server.requests) < requests and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert len(server.requests) == requests, f"{what} never sent {requests} requests"
        # The replies that were coming are back, counted from when they were sent, not from the
        # last request (the first reply may still be on its way then, on a loaded machine).
        while server.answered < requests - 1:
            assert proc.poll() is None and time.monotonic() < deadline, (
                f"{what}: {requests - 1} replies were never sent")
            time.sleep(0.05)
        if settled is None:
            time.sleep(1.0)  # nothing outside `proc` shows it has read them: a grace period
        else:
            while not settled():
                assert proc.poll() is None and time.monotonic() < deadline, (
                    f"{what} never took in the replies that were back")
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        return stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def first_answered_then(first: Reply, later: Callable[[], Reply]) -> Callable[[Recorded], Reply]:
    """A handler that answers the first request with `first` and every later one with `later()`
    (which may hold it: a call still in flight while the first has returned)."""
    answered = [0]
    lock = threading.Lock()

    def handler(rec: Recorded) -> Reply:
        with lock:
            answered[0] += 1
            is_first = answered[0] == 1
        return first if is_first else later()

    return handler
