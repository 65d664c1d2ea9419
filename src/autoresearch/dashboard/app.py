"""The dashboard: a read-only Starlette app over a repository's ledger.

Routes (all GET; nothing here can change a session):
  /                          the page (static/index.html)
  /static/...                its script, style and the vendored chart library
  /api/sessions              the sessions in the ledger
  /api/session?tag=&since=   the shared read model (views.summary) as JSON; with since= (the
                             `stamp` of the last answer) only what changed since (views.live)
  /api/experiment/{id}       one experiment's diff, decision, runs, log tail, fingerprint and
                             the review gate's review of it
  /api/stream?tag=           Server-Sent Events: one `update` event whenever the ledger changes

Live updates are pushed, not polled by the page: the server looks at the ledger's cheap change
marker about once a second per open page and sends an event only when it moved; the page then
fetches the session once. An idle page costs one tiny query per second and no traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from autoresearch.dashboard.auth import AccessMiddleware
from autoresearch.errors import AutoresearchError
from autoresearch.ledger import Ledger, SessionRow
from autoresearch.views.detail import detail_to_json, experiment_detail
from autoresearch.views.live import LiveView, delta_json
from autoresearch.views.summary import (
    LEDGER_PATH,
    LIVE_SESSION_STATES,
    lock_holder_alive,
    open_ledger,
    resolve_session,
)

STATIC_DIR = Path(__file__).parent / "static"
# Comment lines keep idle connections (and proxies in between) from timing out.
KEEPALIVE_S = 15.0
_NO_STORE = {"Cache-Control": "no-store"}
# The stamps a page sends back (`since`) carry the generation of the ledger file they came from:
# generation * STAMP_EPOCH + the version within it. Versions restart with each file, so a stamp
# from an earlier file is answered with everything rather than read against the new one.
STAMP_EPOCH = 1 << 32


def _file_identity(path: Path) -> tuple[int, int] | None:
    """Which file is at `path` (device, inode), or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class _Source:
    """Opens the ledger lazily, so the page can be up before the first session has written it.

    The file at the ledger's path can be replaced under a running dashboard: the damaged-ledger
    recovery puts another ledger.db there, and `.autoresearch` can be deleted and made again by
    a new run. An open connection would go on reading the old file (its inode) for ever, so
    each use compares the file now at the path with the one opened, and reopens when it changed.
    """

    def __init__(self, repo: Path, tag: str | None) -> None:
        self.repo = repo
        self.tag = tag
        self.generation = 0  # how many times the ledger file was replaced and reopened
        self._ledger: Ledger | None = None
        self._opened: tuple[int, int] | None = None
        # Replaced ledgers, closed at shutdown: a request in another thread may still be
        # reading one, and closing it under that request would fail it.
        self._retired: list[Ledger] = []
        self._live: dict[int, LiveView] = {}
        self._lock = threading.Lock()

    def ledger(self) -> Ledger:
        path = self.repo / LEDGER_PATH
        with self._lock:
            # Looked at before opening: a file replaced in between is then seen next time.
            now = _file_identity(path)
            if self._ledger is not None and now != self._opened:
                self._retired.append(self._ledger)
                self._ledger = None
                self._live.clear()  # their rows and versions are the old file's
                self.generation += 1
            if self._ledger is None:
                self._ledger = open_ledger(self.repo)
                self._opened = now
            return self._ledger

    def session(self, tag: str | None) -> SessionRow:
        return resolve_session(self.ledger(), tag or self.tag)

    def marker(self, tag: str | None) -> str:
        """A string that changes whenever anything the page shows changes."""
        if not (self.repo / LEDGER_PATH).is_file():
            return "no-ledger"
        try:
            session = self.session(tag)
        except AutoresearchError:
            return "no-session"
        ledger = self.ledger()
        # change_marker covers new experiments, runs and events; the open experiments and the
        # session row cover a status change that came without any of those; the session list
        # covers a new session (listed in the page's dropdown, followed when none is picked).
        # Whether the session's process is alive covers a run that was killed (kill -9, a
        # reboot), which writes nothing: the page must stop saying "running" and stop its clock.
        opened = [(e.id, e.status) for e in ledger.open_experiments(session.id)]
        listed = [(s.tag, s.status) for s in ledger.sessions()]
        alive = (session.status in LIVE_SESSION_STATES
                 and lock_holder_alive(ledger.path, session.tag))
        # A review recorded after the experiment's verdict writes no run or event either.
        return json.dumps([session.tag, list(ledger.change_marker(session.id)), opened,
                           session.status, session.updated_at, session.noise, listed, alive,
                           ledger.review_stamp(session.id)])

    def live(self, session: SessionRow) -> LiveView:
        """The session's live read model (one per session, kept between requests)."""
        with self._lock:
            live = self._live.get(session.id)
            if live is None:
                live = self._live[session.id] = LiveView(session.id)
            return live

    def close(self) -> None:
        for ledger in self._retired:
            ledger.close()
        self._retired.clear()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


class _BadQuery(ValueError):
    """A query parameter of /api/session that cannot be read: what is wrong, what it got, what
    it expects, and how to fix it (answered with 400)."""

    def __init__(self, name: str, raw: str, expected: str, fix: str) -> None:
        super().__init__(f"{name}={raw!r} is not {expected}")
        self.name, self.fix = name, fix

    def response(self) -> JSONResponse:
        return JSONResponse({"error": str(self), "where": f"the query parameter {self.name}",
                             "fix": self.fix}, status_code=400, headers=_NO_STORE)


def _since(raw: str | None) -> int:
    """The stamp of the page's last answer (0, or none: everything)."""
    if not raw:
        return 0
    # Digits only: int() also takes "-3", " 3" and "1_000", none of which a page sends.
    if re.fullmatch(r"[0-9]+", raw) is None:
        raise _BadQuery("since", raw, "a stamp: expected a whole number of 0 or more",
                        "send the `stamp` of the last /api/session answer, or leave since out "
                        "to get everything")
    return int(raw)


def _range(raw: str | None) -> tuple[float, float] | None:
    """The chart range the page drew with: "lo,hi", or nothing when everything fit."""
    if not raw:
        return None
    try:
        lo, hi = (float(v) for v in raw.split(","))
    except ValueError:  # not two values, or one that is no number
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise _BadQuery("range", raw, "a chart range: expected two finite numbers lo,hi",
                        "send the y range the chart was drawn with, e.g. range=-1.5,2, or "
                        "leave range out")
    return lo, hi


def _error(exc: AutoresearchError, status: int = 404) -> JSONResponse:
    return JSONResponse({"error": exc.what, "where": exc.where, "fix": exc.fix},
                        status_code=status, headers=_NO_STORE)


def create_app(
    repo: Path,
    tag: str | None,
    token: str | None,
    *,
    poll_interval_s: float = 1.0,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The dashboard for the ledger in `repo`; `tag=None` follows the most recent session."""
    source = _Source(repo, tag)
    # Set by whoever runs the server when it stops, so open event streams end by themselves
    # instead of holding the graceful shutdown until its timeout.
    shutdown = threading.Event()

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=_NO_STORE)

    def sessions(request: Request) -> Response:
        try:
            rows = source.ledger().sessions()
        except AutoresearchError as exc:
            return _error(exc)
        default = tag or (rows and max(rows, key=lambda s: s.updated_at).tag) or None
        return JSONResponse({
            "default": default,
            "sessions": [{"tag": s.tag, "status": s.status, "created_at": s.created_at,
                          "metric": s.metric} for s in rows],
        }, headers=_NO_STORE)

    def session(request: Request) -> Response:
        params = request.query_params
        try:
            since = _since(params.get("since"))
            client_range = _range(params.get("range"))
        except _BadQuery as bad:
            return bad.response()
        try:
            ledger = source.ledger()
            generation = source.generation
            row = resolve_session(ledger, params.get("tag") or source.tag)
            live = source.live(row)
            view = live.refresh(ledger, row)
        except AutoresearchError as exc:
            return _error(exc)
        # A stamp from an earlier ledger file means nothing in this one: everything is sent.
        within = since - generation * STAMP_EPOCH if since // STAMP_EPOCH == generation else 0
        data = delta_json(view, live, within, client_range)
        data["stamp"] += generation * STAMP_EPOCH
        return JSONResponse(data, headers=_NO_STORE)

    def experiment(request: Request) -> Response:
        exp_id = str(request.path_params["exp_id"])
        try:
            detail = experiment_detail(source.ledger(), repo, exp_id)
        except AutoresearchError as exc:
            return _error(exc)
        if detail is None:
            return JSONResponse({"error": f"no experiment {exp_id!r}"}, status_code=404,
                                headers=_NO_STORE)
        return JSONResponse(detail_to_json(detail), headers=_NO_STORE)

    async def stream(request: Request) -> Response:
        wanted = request.query_params.get("tag")

        async def events() -> AsyncIterator[str]:
            # Reconnect after 3 s if the server restarts; the browser does it by itself.
            yield "retry: 3000\n\n"
            last: str | None = None
            quiet = 0.0
            while not shutdown.is_set():
                marker = await run_in_threadpool(source.marker, wanted)
                if marker != last:
                    last = marker
                    quiet = 0.0
                    yield f"event: update\ndata: {json.dumps({'marker': marker})}\n\n"
                elif quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(poll_interval_s)
                quiet += poll_interval_s

        return StreamingResponse(events(), media_type="text/event-stream", headers={
            "Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes: list[Any] = [
        Route("/", index),
        Route("/api/health", health),
        Route("/api/sessions", sessions),
        Route("/api/session", session),
        Route("/api/experiment/{exp_id:str}", experiment),
        Route("/api/stream", stream),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        source.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(AccessMiddleware, token=token, allowed_hosts=allowed_hosts)],
        lifespan=lifespan,
    )
    app.state.shutdown = shutdown
    return app
