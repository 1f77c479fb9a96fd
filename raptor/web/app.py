"""``raptor web``'s ASGI application: read-only pages and a JSON API over Redis.

Routes (all relative: the app works the same under a reverse proxy's path prefix):

- ``/``: the page (``static/index.html``); which view it shows is in its query string:
  the fleet, ``?view=host&host=H``, ``?view=process&host=H&process=P``, and the filter
  ``host`` (glob), ``app``, ``state``, ``q`` (text).
- ``/api/fleet[?host=GLOB&app=NAME]``: ``raptor status --json``, plus ``position`` (the
  history stream's last entry id, taken *before* the snapshots were read: follow
  ``/api/events?after=position`` and nothing falls between), ``server_time`` and
  ``stale_after`` (``--stale-after``). ``?procs=0``: the same without the process
  lists, at most :data:`SUMMARY_TTL` s old (pages poll it for snapshot ages, restarts
  and listener health).
- ``/api/hosts/{host}``: one host, the same shape (its ``duplicates`` list is empty:
  pairs are a fleet question).
- ``/api/history?host=H[&program=P][&since=24h|ENTRY_ID]``: ``raptor history --json``.
- ``/api/events?after=ID``: server-sent events from the history stream after entry ID
  (a reconnecting EventSource's ``Last-Event-ID`` takes precedence): ``entries`` (a JSON
  list of messages, as ``raptor tail`` prints them, with ``entry_id``; the event's id is
  the last one), ``reset`` (reload ``/api/fleet`` and follow on from there; see
  :mod:`raptor.web.hub`) and ``status`` (Redis reachable or not).
- ``/healthz``: 200 when Redis answers, 503 otherwise.

Every response carries a Content-Security-Policy without inline script or style, and
is refused without the token when one is configured (:mod:`raptor.web.auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, MutableMapping, Optional, Tuple, Union

import redis
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import keys
from ..config import redact_url
from ..consumer.cli import history_report, since_argument, status_report
from ..consumer.fleet import STALE_AFTER
from ..consumer.history import report
from ..consumer.stream import REDIS_DOWN, parse_id
from .auth import REALM, authorized
from .hub import Batch, Hub, Reset, catch_up

STATIC = Path(__file__).parent / "static"
SUMMARY_TTL = 5.0  # seconds a ?procs=0 answer is shared between pages
PING = 15.0  # seconds between keep-alive comments on an idle event stream
COALESCE = 0.05  # seconds an event stream waits after a wake-up, to send more per event
RETRY_MS = 1000  # the EventSource's reconnection delay

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class Guard:
    """ASGI middleware: the security headers on every response, and the token check
    when one is configured. Plain ASGI, not BaseHTTPMiddleware: that one buffers
    nothing but would hold the event streams in a task group."""

    def __init__(self, app: ASGIApp, token: Optional[str]) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if self.token is not None:
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
            if not authorized(header, self.token):
                response = JSONResponse(
                    {"error": "authentication required"}, status_code=401, headers={"WWW-Authenticate": REALM}
                )
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


class Prefix:
    """ASGI middleware: the application under a reverse proxy's path prefix (``--root-path``),
    whether the proxy strips it (``/raptor/api/fleet`` arrives as ``/api/fleet``) or
    forwards the path as it came: a leading prefix is taken off, and the bare prefix is
    redirected to prefix + ``/``, under which the page's relative URLs resolve.
    Not uvicorn's ``root_path``: that one prepends the prefix to every path, so only a
    stripping proxy works with it."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            if path == self.prefix:
                query = scope.get("query_string", b"").decode("latin-1")
                location = self.prefix + "/" + ("?" + query if query else "")
                await RedirectResponse(location, status_code=308)(scope, receive, send)
                return
            scope = dict(scope, path=path[len(self.prefix) :])
            raw = scope.get("raw_path")
            if raw is not None and raw.startswith(self.prefix.encode("latin-1") + b"/"):
                scope["raw_path"] = raw[len(self.prefix) :]
        await self.app(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


def _json(payload: Any) -> Response:
    # Non-ASCII escaped, so the bytes are ASCII whatever names Redis holds.
    return Response(json.dumps(payload), media_type="application/json", headers={"Cache-Control": "no-store"})


def stream_position(client: redis.Redis) -> str:
    """The history stream's last entry id ("0-0" when it does not exist yet)."""
    try:
        info = client.xinfo_stream(keys.FLEET_HISTORY)
    except redis.exceptions.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return "0-0"
        raise
    last = info["last-generated-id"]
    return last.decode() if isinstance(last, bytes) else str(last)


class Web:
    """The application's state and handlers; :func:`create_app` wires them."""

    def __init__(self, client: redis.Redis, url: str, stale_after: float) -> None:
        self.client = client
        self.url = url
        self.stale_after = stale_after
        self.hub = Hub(client)
        self._summary: Optional[Tuple[float, Dict[str, Any]]] = None
        self._summary_lock = asyncio.Lock()

    async def _redis(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking Redis call off the event loop."""
        return await run_in_threadpool(function, *args)

    def _unreachable(self, exc: Exception) -> JSONResponse:
        return _error(503, f"Redis at {redact_url(self.url)} is unreachable: {type(exc).__name__}: {exc}")

    def _fleet(self, host: Optional[str], app: Optional[str]) -> Dict[str, Any]:
        position = stream_position(self.client)  # first: see the module's docstring
        found = status_report(self.client, host, app)
        return {"position": position, "server_time": time.time(), "stale_after": self.stale_after, **found}

    async def fleet(self, request: Request) -> Response:
        params = request.query_params
        host, app = params.get("host") or None, params.get("app") or None
        try:
            if params.get("procs") == "0" and host is None and app is None:
                return _json(await self._cached_summary())
            return _json(await self._redis(self._fleet, host, app))
        except REDIS_DOWN as exc:
            return self._unreachable(exc)

    async def _cached_summary(self) -> Dict[str, Any]:
        async with self._summary_lock:  # one reload for every page that asks at once
            now = time.monotonic()
            if self._summary is None or now - self._summary[0] > SUMMARY_TTL:
                found = await self._redis(self._fleet, None, None)
                for record in found["hosts"]:
                    del record["procs"]
                self._summary = (now, found)
            return self._summary[1]

    def _host(self, host: str) -> Optional[Dict[str, Any]]:
        if not self.client.exists(keys.snapshot_key(host), keys.meta_key(host)):
            return None
        position = stream_position(self.client)
        found = status_report(self.client, host, exact=True)
        return {"position": position, "server_time": time.time(), "stale_after": self.stale_after, **found}

    async def host(self, request: Request) -> Response:
        name = request.path_params["host"]
        try:
            found = await self._redis(self._host, name)
        except REDIS_DOWN as exc:
            return self._unreachable(exc)
        if found is None:
            return _error(404, f"unknown host {name!r}: no snapshot or meta record of it in this Redis")
        return _json(found)

    async def history(self, request: Request) -> Response:
        params = request.query_params
        host = params.get("host")
        if not host:
            return _error(400, "host: required (the host's name)")
        program = params.get("program") or None
        try:
            since = since_argument(params.get("since") or "24h")
        except Exception as exc:  # argparse.ArgumentTypeError: its text names the forms
            return _error(400, f"since: {exc}")
        try:
            found = await self._redis(history_report, self.client, host, program, since)
        except REDIS_DOWN as exc:
            return self._unreachable(exc)
        if found is None:
            return _error(404, f"unknown host {host!r}: no history, snapshot or meta record of it in this Redis")
        transitions, start, until, earlier = found
        return _json(report(host, program, transitions, start, until, earlier=earlier))

    async def healthz(self, request: Request) -> Response:
        try:
            await self._redis(self.client.ping)
        except REDIS_DOWN as exc:
            return self._unreachable(exc)
        return _json({"redis": "up", "hub_connected": self.hub.connected})

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def events(self, request: Request) -> Response:
        after = request.headers.get("last-event-id") or request.query_params.get("after") or ""
        try:
            parse_id(after)
        except ValueError:
            return _error(400, "after: a history entry id (from /api/fleet's position) is required")
        response: Response = EventSourceResponse(
            self._events(after), ping=int(PING), headers={"Cache-Control": "no-store"}
        )
        return response

    async def _events(self, position: str) -> AsyncIterator[Union[Dict[str, Any], bytes]]:
        hub = self.hub
        told: Optional[bool] = None  # the Redis state this page was last told
        generation = hub.generation
        while True:
            if told is not hub.connected:
                told = hub.connected
                status = {"redis": "up" if told else "down", "error": hub.last_error}
                yield {"event": "status", "data": json.dumps(status), "retry": RETRY_MS}
            if hub.generation != generation:
                yield {"event": "reset", "data": json.dumps({"why": hub.why()}), "id": hub.floor or position}
                return
            if hub.floor is None:  # the hub has no position yet (Redis away since start)
                await hub.changed(PING)
                continue
            if not hub.covers(position):
                try:
                    update = await self._redis(catch_up, self.client, keys.FLEET_HISTORY, position)
                except REDIS_DOWN:
                    await hub.changed(1.0)  # the hub's reconnection says when Redis is back
                    continue
                if isinstance(update, Reset):
                    yield {"event": "reset", "data": json.dumps({"why": update.why}), "id": update.position}
                    return
                if update.last_id != position:
                    position = update.last_id
                    yield _entries_event(update)
                    continue
            batch = hub.after(position)
            if batch is not None:
                position = batch.last_id
                yield _entries_event(batch)
                continue
            await hub.changed(PING)
            await asyncio.sleep(COALESCE)  # what else arrives meanwhile goes in the same event


def _entries_event(batch: Batch) -> bytes:
    # Encoded once per batch (the hub hands the same batch to every page at the live edge).
    event = batch.encoded.get("sse")
    if event is None:
        data = "[" + ",".join(batch.items) + "]"
        event = batch.encoded["sse"] = ServerSentEvent(data=data, event="entries", id=batch.last_id).encode()
    return event


def create_app(
    client: redis.Redis,
    url: str,
    *,
    token: Optional[str] = None,
    stale_after: float = STALE_AFTER,
    root_path: str = "",
) -> ASGIApp:
    """The application, reading Redis through *client* (*url* only for error messages,
    redacted); with *token*, every request must carry it; a host whose snapshot is
    older than *stale_after* s shows STALE; served under *root_path* too (:class:`Prefix`)."""
    web = Web(client, url, stale_after)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        web.hub.start()
        try:
            yield
        finally:
            web.hub.stop()

    routes = [
        Route("/", web.index),
        Route("/api/fleet", web.fleet),
        Route("/api/hosts/{host:path}", web.host),
        Route("/api/history", web.history),
        Route("/api/events", web.events),
        Route("/healthz", web.healthz),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    # No redirect to the path with or without a trailing slash: its Location would be
    # absolute and leave out a reverse proxy's prefix. Such a path is a 404.
    app.router.redirect_slashes = False
    app.state.web = web
    return Guard(Prefix(app, root_path), token)


Handler = Callable[[Request], Awaitable[Response]]
