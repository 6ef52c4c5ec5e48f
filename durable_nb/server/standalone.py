"""The standalone engine server (`durable-nb serve`): loopback only, token required."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import tornado.httputil
import tornado.web
import tornado.websocket

from ..core import runtime as _runtime
from ..core.auth import ScrubbedLogMixin, same_token, server_owner, token_in_header, token_matches
from ..core.errors import EngineLocked, StoreUnavailable
from ..engine.engine import Engine, EngineConfig
from . import api as _api
from .unix import LocalServer

log = logging.getLogger("durable_nb")

if TYPE_CHECKING:
    # the mixins below are only ever combined with these tornado handlers
    _RequestBase = tornado.web.RequestHandler
    _SocketBase = tornado.websocket.WebSocketHandler
else:
    _RequestBase = _SocketBase = object


class EventSocketMixin(_SocketBase):
    """Streams engine events as JSON text messages; ``?run_id=`` filters to one run."""

    engine: Engine
    _unsubscribe: Callable[[], None] | None

    def open(self, *args) -> None:
        only = self.get_query_argument("run_id", None)
        loop = asyncio.get_running_loop()

        def push(event: dict) -> None:
            if event.get("type") == "stopping":  # the engine stops: say goodbye, close
                loop.call_soon(self._going_away)
            elif only is None or event.get("run_id") == only:
                loop.call_soon(self._push, json.dumps(event))

        self._unsubscribe = self.engine.subscribe(push)
        self._push(json.dumps({"type": "hello", "instance": self.engine.instance}))

    def _push(self, text: str) -> None:
        try:
            self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            self.on_close()

    def _going_away(self) -> None:
        if self.ws_connection is not None:
            self.close(1001, "the engine stopped")

    def on_message(self, message) -> None:
        pass  # the stream is one-way

    def on_close(self) -> None:
        unsub = getattr(self, "_unsubscribe", None)
        if unsub:
            unsub()
            self._unsubscribe = None


AUTH_MESSAGE_TIMEOUT = 10.0  # seconds a WebSocket may take to send its token message


class AuthFirstBodyMixin(_RequestBase):
    """Authenticates in ``prepare``, before a byte of the body is read, then reads the body
    with the size limit (``@tornado.web.stream_request_body`` handlers). A refused request
    gets its answer at once; the rest of its body is read and dropped, never kept."""

    request: tornado.httputil.HTTPServerRequest
    _chunks: bytearray | None = None

    def accept_body(self) -> bool:
        """After authentication: keep the body if it fits (else answer 413); False when
        an answer was written."""
        limit = _api.MAX_BODY
        try:
            length = int(self.request.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > limit:
            self.refuse(413, f"request body is {length} bytes, over {limit}", "too_large")
            return False
        # a request served by tornado's HTTPServer always has its HTTP/1 connection
        self.request.connection.set_max_body_size(limit)  # type: ignore[union-attr]
        self._chunks = bytearray()
        return True

    def data_received(self, chunk: bytes) -> None:
        if self._chunks is not None:
            self._chunks += chunk

    @property
    def body_bytes(self) -> bytes:
        return bytes(self._chunks or b"")

    def refuse(self, status: int, message: str, code: str) -> None:
        self._chunks = None
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "code": code}))


NO_TOKEN = ("missing or wrong token: send 'Authorization: token <token>' (the token is in the "
            "engine's runtime file; it is never accepted in the URL)")


@tornado.web.stream_request_body
class ApiHandler(ScrubbedLogMixin, AuthFirstBodyMixin, tornado.web.RequestHandler):
    def initialize(self, engine: Engine, token: str) -> None:
        self.engine = engine
        self.token = token

    def check_xsrf_cookie(self) -> None:  # token auth only; no cookies are issued
        pass

    def prepare(self) -> None:
        if not token_matches(self.request, self.token):
            self.refuse(403, NO_TOKEN, "forbidden")
            return
        self.accept_body()

    async def _any(self, path: str) -> None:
        query = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        status, obj = await _api.dispatch(self.engine, self.request.method, "/" + path, query,
                                          self.body_bytes, user=server_owner())
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))

    get = post = put = delete = _any


class EventsHandler(ScrubbedLogMixin, EventSocketMixin, tornado.websocket.WebSocketHandler):
    """The events stream. Scripts send the token in the Authorization header; a browser,
    which cannot set headers on a WebSocket, sends ``{"token": "<token>"}`` as its first
    message instead, and no event is sent before it."""

    _authed = False
    _timer: asyncio.TimerHandle | None = None

    def initialize(self, engine: Engine, token: str) -> None:
        self.engine = engine
        self.token = token

    async def get(self, *args, **kwargs):
        given = token_in_header(self.request)
        if given and not same_token(given, self.token):
            self.set_status(403)
            self.finish({"error": NO_TOKEN, "code": "forbidden"})
            return
        self._authed = bool(given)
        return await super().get(*args, **kwargs)

    def open(self, *args) -> None:
        if self._authed:
            super().open(*args)
            return
        self._timer = asyncio.get_running_loop().call_later(
            AUTH_MESSAGE_TIMEOUT, self._refuse, "no token message")

    def on_message(self, message) -> None:
        if self._authed:
            return  # the stream is one-way
        try:
            given = json.loads(message).get("token")
        except (ValueError, AttributeError, TypeError):
            given = None
        if not isinstance(given, str) or not same_token(given, self.token):
            self._refuse("missing or wrong token")
            return
        self._authed = True
        if self._timer is not None:
            self._timer.cancel()
        EventSocketMixin.open(self)

    def _refuse(self, why: str) -> None:
        if self.ws_connection is not None:
            self.close(4403, f"{why}: send {{\"token\": <token>}} as the first message")

    def on_close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().on_close()


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Errors at warning level; successful calls at debug (one per step of a busy client)."""
    status = handler.get_status()
    level = logging.DEBUG if status < 400 else logging.WARNING
    access = logging.getLogger("tornado.access")
    if access.isEnabledFor(level):
        r = handler.request
        access.log(level, "%d %s %s %.2fms", status, r.method, r.path, 1000 * r.request_time())


def make_app(engine: Engine, token: str) -> tornado.web.Application:
    kw = {"engine": engine, "token": token}
    return tornado.web.Application([
        (r"/durable/api/events", EventsHandler, kw),
        (r"/durable/api/(.*)", ApiHandler, kw),
    ], websocket_ping_interval=20, log_function=_log_request)


async def run_server(config: EngineConfig, port: int = 0, ready=None) -> None:
    """Serve the engine for ``config.db_path`` on 127.0.0.1 until SIGTERM or SIGINT."""
    token = secrets.token_urlsafe(32)
    engine = Engine(config)
    app = make_app(engine, token)
    server = app.listen(port, address="127.0.0.1", max_body_size=_api.MAX_BODY)
    actual = next(iter(server._sockets.values())).getsockname()[1]
    url = f"http://127.0.0.1:{actual}/"
    local = LocalServer(token, config.db_path, user=server_owner())
    engine.worker_env.update({"DURABLE_NB_URL": url, "DURABLE_NB_TOKEN": token,
                              "DURABLE_NB_DB": str(config.db_path),
                              "DURABLE_NB_SOCKET": str(local.path)})
    try:
        await engine.start()
    except BaseException:
        server.stop()
        await local.close()
        raise
    info: _runtime.RuntimeInfo = {"url": url, "token": token, "pid": os.getpid(),
                                  "db": str(config.db_path), "started_at": time.time()}
    try:
        info["socket"] = str(await local.start(engine))
    except OSError as exc:  # HTTP still works; only slower
        log.warning("durable_nb: no local socket for the engine (%s)", exc)
    _runtime.write(config.db_path, info)
    log.info("durable_nb engine %s serving %s at %s", os.getpid(), config.db_path, url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready:
        ready(url)
    try:
        await stop.wait()
    finally:
        server.stop()
        await local.close()
        await engine.stop()
        _runtime.remove(config.db_path, token)
        log.info("durable_nb engine %s stopped", os.getpid())


def serve(config: EngineConfig, port: int = 0) -> int:
    """Entry point of `durable-nb serve`; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    os.umask(0o077)  # the database, its WAL and journal are private to the user
    try:
        asyncio.run(run_server(config, port, ready=lambda url: print(
            f"durable_nb engine serving {config.db_path} at {url} (pid {os.getpid()})",
            flush=True)))
    except EngineLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:  # e.g. a full disk while replaying the journal
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0

