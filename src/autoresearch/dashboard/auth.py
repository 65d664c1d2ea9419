"""Access control and response hardening for the dashboard, as one small ASGI middleware.

Without a token the server only answers requests addressed to a loopback name or address (any
loopback literal: 127.0.0.2 and ::1 spelled out count): a page on some other site cannot reach
it through DNS rebinding, whose requests carry the attacker's DNS name. With a token every request must carry it, in
an `Authorization: Bearer` header, an `X-Autoresearch-Token` header, the `token` query parameter
(how the first page load gets it) or the cookie that first load sets. A cookie is needed because
the browser's EventSource cannot send custom headers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autoresearch.dashboard.hosts import LOOPBACK_NAMES, host_name, is_loopback

COOKIE = "autoresearch_token"
LOOPBACK_HOSTS = LOOPBACK_NAMES

# The page loads only its own files; inline styles are allowed because Chart.js sets style
# attributes on its canvas. No inline script, no remote origin, no framing.
_SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    # The token may be in the URL of the first load; never leak it to another site.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class AccessMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_hosts: Sequence[str] | None = None,
    ) -> None:
        self.app = app
        self.token = token
        # The cookie holds a digest, not the token: any token text stays a valid cookie value,
        # and the raw token is not stored in the browser's cookie jar.
        self.cookie_value = (
            hashlib.sha256(b"autoresearch-dashboard\0" + token.encode("utf-8")).hexdigest()
            if token else None
        )
        # With a token, the token is the protection and the host may be anything the user
        # chose to bind; without one, only loopback names and addresses (plus any names the
        # caller adds) are answered.
        self.allowed_hosts = (
            None if allowed_hosts is None and token
            else {h.lower() for h in (*LOOPBACK_HOSTS, *(allowed_hosts or ()))}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.allowed_hosts is not None:
            host = host_name(headers.get("host", ""))
            if host not in self.allowed_hosts and not is_loopback(host):
                await _plain(send, 403, "forbidden host: open the dashboard at http://127.0.0.1")
                return
        set_cookie = False
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            from_query = (query.get("token") or [None])[0]
            presented = [
                _bearer(headers.get("authorization", "")),
                headers.get("x-autoresearch-token"),
                from_query,
            ]
            cookie = _cookie(headers.get("cookie", ""))
            ok = any(p is not None and _same(p, self.token) for p in presented) or (
                cookie is not None and self.cookie_value is not None
                and _same(cookie, self.cookie_value)
            )
            if not ok:
                await _plain(send, 401, "this dashboard needs its access token (?token=...)")
                return
            set_cookie = from_query is not None and _same(from_query, self.token)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(_SECURITY_HEADERS)
                if set_cookie and self.cookie_value is not None:
                    cookie = f"{COOKIE}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
                    extra.append((b"set-cookie", cookie.encode("latin-1")))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _same(presented: str, token: str) -> bool:
    # Constant-time comparison so the token cannot be guessed byte by byte from timings.
    return hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8"))


def _bearer(value: str) -> str | None:
    scheme, _, rest = value.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest.strip() else None


def _cookie(value: str) -> str | None:
    if not value:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(value)
    except Exception:  # a malformed cookie header is just "no token"
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode("utf-8") + b"\n"
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()), *_SECURITY_HEADERS],
    })
    await send({"type": "http.response.body", "body": body})
