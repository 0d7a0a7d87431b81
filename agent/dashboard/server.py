"""The dashboard's HTTP side: the page, /api/state, /events (server-sent events) and /metrics,
GET only, behind a token when one is set.

A token is taken from ``Authorization: Bearer TOKEN``, from the ``shoal_dashboard`` cookie, or
once from ``?token=TOKEN`` (which sets that cookie, so the page and its event stream carry it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from agent.dashboard import metrics
from agent.dashboard.state import Change, ClusterState

__all__ = ["COOKIE", "Hub", "is_loopback", "make_app"]

COOKIE = "shoal_dashboard"
_QUEUE = 1000  # changes a slow page may fall behind by before its stream is ended
_PING_S = 15.0

STATE_KEY = web.AppKey("state", ClusterState)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Hub:
    """Hands every change to each open event stream; a stream that falls behind is ended (the
    browser reconnects and starts again from the whole state)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Change | None]] = set()

    def publish(self, change: Change) -> None:
        for q in list(self._queues):
            try:
                q.put_nowait(change)
            except asyncio.QueueFull:
                self._queues.discard(q)
                q.get_nowait()
                q.put_nowait(None)

    def close(self) -> None:
        for q in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)

    def subscribe(self) -> asyncio.Queue[Change | None]:
        q: asyncio.Queue[Change | None] = asyncio.Queue(_QUEUE)
        self._queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Change | None]) -> None:
        self._queues.discard(q)

    @property
    def streams(self) -> int:
        return len(self._queues)


HUB_KEY = web.AppKey("hub", Hub)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guard(token: str | None) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        if token is None:
            return await handler(request)
        given = request.query.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise web.HTTPUnauthorized(text="wrong token\n")
            response = await handler(request)
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            return response
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else request.cookies.get(COOKIE, "")
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise web.HTTPUnauthorized(
                text="this dashboard needs its token: ?token=TOKEN once, or"
                " 'Authorization: Bearer TOKEN'\n"
            )
        return await handler(request)

    return guard


async def _page(request: web.Request) -> web.Response:
    html = resources.files("agent.dashboard").joinpath("static/index.html").read_text()
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def _api_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].snapshot())


async def _metrics(request: web.Request) -> web.Response:
    body = metrics.render(request.app[STATE_KEY])
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _events(request: web.Request) -> web.StreamResponse:
    """The whole state first (event ``state``), then each change (event ``change``)."""
    state, hub = request.app[STATE_KEY], request.app[HUB_KEY]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    q = hub.subscribe()
    try:
        await response.write(_sse("state", state.snapshot()))
        while True:
            try:
                change = await asyncio.wait_for(q.get(), _PING_S)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if change is None:
                break
            await response.write(_sse("change", change.to_dict()))
    except ConnectionResetError:
        pass  # the page went away
    finally:
        hub.unsubscribe(q)
    return response


def make_app(state: ClusterState, hub: Hub, token: str | None = None) -> web.Application:
    app = web.Application(middlewares=[_guard(token)])
    app[STATE_KEY] = state
    app[HUB_KEY] = hub
    app.router.add_get("/", _page)
    app.router.add_get("/api/state", _api_state)
    app.router.add_get("/events", _events)
    app.router.add_get("/metrics", _metrics)

    async def end_streams(app: web.Application) -> None:
        hub.close()

    app.on_shutdown.append(end_streams)
    return app
