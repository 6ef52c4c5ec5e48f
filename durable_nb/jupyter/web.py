"""Web pieces of an `EngineHost` that do not need jupyter-server.

The events WebSocket that streams the local engine's events or relays the owner's
(proxy mode), and a private 127.0.0.1 listener for Jupyter
servers that plain HTTP on loopback cannot reach (unix socket, TLS, a LAN address).
"""

from __future__ import annotations

import asyncio
import json

import tornado.web
import tornado.websocket

from ..core.auth import ScrubbedLogMixin, server_owner, token_matches
from ..server import api as _api
from ..server.standalone import AuthFirstBodyMixin, EventSocketMixin
from .host import EngineHost


class HostEventsMixin(EventSocketMixin):
    """The events WebSocket of a host: the local engine's stream, or the owner's relayed."""

    host: EngineHost
    _upstream: tornado.websocket.WebSocketClientConnection | None = None

    async def prepare_stream(self) -> bool:
        """Before the upgrade: pick the source; False when a 503 answer was written."""
        await self.host.wait_ready()
        if self.host.mode == "unavailable":
            await self.host.recover(None)
        if self.host.mode == "proxy":
            self._upstream = await self.host.connect_events(self.get_query_argument("run_id", None))
        if self.host.mode == "owner" and self.host.engine is not None:
            self.engine = self.host.engine
            return True
        if self._upstream is not None:
            return True
        self.set_status(503)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": self.host.problem, "code": "engine_unavailable"}))
        return False

    def open(self, *args) -> None:
        if self._upstream is None:
            super().open(*args)
        else:
            asyncio.ensure_future(self._relay(self._upstream))

    async def _relay(self, upstream: tornado.websocket.WebSocketClientConnection) -> None:
        while True:
            msg = await upstream.read_message()
            if msg is None or self.ws_connection is None:
                break
            try:
                self.write_message(msg)
            except tornado.websocket.WebSocketClosedError:
                break
        if self.ws_connection is not None:
            self.close(1001, "the engine's event stream ended")

    def on_close(self) -> None:
        super().on_close()
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None


@tornado.web.stream_request_body
class PrivateApiHandler(ScrubbedLogMixin, AuthFirstBodyMixin, tornado.web.RequestHandler):
    """The durable API on the host's private loopback port (kernel token only, checked
    before the body is read; its holder is the server's owner)."""

    def initialize(self, host: EngineHost) -> None:
        self.host = host

    def check_xsrf_cookie(self) -> None:  # token auth only; no cookies are issued
        pass

    def prepare(self) -> None:
        if not token_matches(self.request, self.host.token):
            self.refuse(403, "missing or wrong token: send 'Authorization: token <token>' "
                        "($DURABLE_NB_TOKEN; never in the URL)", "forbidden")
            return
        self.accept_body()

    async def _any(self, path: str) -> None:
        query = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        status, body = await self.host.request(self.request.method or "GET", "/" + path, query,
                                               self.body_bytes, server_owner())
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    get = post = put = delete = _any


class PrivateEventsHandler(ScrubbedLogMixin, HostEventsMixin, tornado.websocket.WebSocketHandler):
    """The events WebSocket on the host's private loopback port (kernel token only)."""

    def initialize(self, host: EngineHost) -> None:
        self.host = host

    async def get(self, *args, **kwargs) -> None:
        if not token_matches(self.request, self.host.token):
            self.set_status(403)
            self.finish({"error": "missing or wrong token"})
            return
        if await self.prepare_stream():
            await super().get(*args, **kwargs)


def listen_private(host: EngineHost) -> str:
    """Serve ``host``'s durable API on a free 127.0.0.1 port; returns its URL."""
    kw = {"host": host}
    app = tornado.web.Application([
        (rf"/{_api.PREFIX}{_api.WS_PATH}", PrivateEventsHandler, kw),
        (rf"/{_api.PREFIX}/(.*)", PrivateApiHandler, kw),
    ], websocket_ping_interval=20)
    server = app.listen(0, address="127.0.0.1", max_body_size=_api.MAX_BODY)
    host.private_server = server  # stopped with the host
    port = next(iter(server._sockets.values())).getsockname()[1]
    return f"http://127.0.0.1:{port}/"
