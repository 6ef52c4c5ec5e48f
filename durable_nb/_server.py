"""The standalone engine server (`durable-nb serve`): loopback only, token required."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import tornado.web
import tornado.websocket

from . import _api
from ._engine import Engine, EngineConfig
from ._errors import EngineLocked
from ._localapi import LocalServer
from ._paths import runtime_file, write_private

log = logging.getLogger("durable_nb")


class EventSocketMixin:
    """Streams engine events as JSON text messages; ``?run_id=`` filters to one run."""

    engine: Engine

    def open(self, *args) -> None:
        only = self.get_argument("run_id", None)
        loop = asyncio.get_running_loop()

        def push(event: dict) -> None:
            if only is None or event.get("run_id") == only:
                loop.call_soon(self._push, json.dumps(event))

        self._unsubscribe = self.engine.subscribe(push)
        self._push(json.dumps({"type": "hello", "instance": self.engine.instance}))

    def _push(self, text: str) -> None:
        try:
            self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            self.on_close()

    def on_message(self, message) -> None:
        pass  # the stream is one-way

    def on_close(self) -> None:
        unsub = getattr(self, "_unsubscribe", None)
        if unsub:
            unsub()
            self._unsubscribe = None


def _token_ok(handler: tornado.web.RequestHandler, token: str) -> bool:
    auth = handler.request.headers.get("Authorization", "")
    given = auth.split(" ", 1)[1] if " " in auth else handler.get_argument("token", "")
    return bool(given) and hmac.compare_digest(given.strip(), token)


class ApiHandler(tornado.web.RequestHandler):
    def initialize(self, engine: Engine, token: str) -> None:
        self.engine = engine
        self.token = token

    def check_xsrf_cookie(self) -> None:  # token auth only; no cookies are issued
        pass

    async def _any(self, path: str) -> None:
        if not _token_ok(self, self.token):
            self.set_status(403)
            self.finish({"error": "missing or wrong token: send 'Authorization: token <token>' "
                         "(the token is in the engine's runtime file)"})
            return
        query = {k: self.get_argument(k) for k in self.request.arguments}
        query.pop("token", None)
        status, obj = await _api.dispatch(self.engine, self.request.method, "/" + path, query,
                                          self.request.body, user=os.environ.get("USER"))
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))

    get = post = put = delete = _any


class EventsHandler(EventSocketMixin, tornado.websocket.WebSocketHandler):
    def initialize(self, engine: Engine, token: str) -> None:
        self.engine = engine
        self.token = token

    async def get(self, *args, **kwargs):
        if not _token_ok(self, self.token):
            self.set_status(403)
            self.finish({"error": "missing or wrong token"})
            return
        return await super().get(*args, **kwargs)


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
    local = LocalServer(token, config.db_path, user=os.environ.get("USER"))
    engine.worker_env.update({"DURABLE_NB_URL": url, "DURABLE_NB_TOKEN": token,
                              "DURABLE_NB_DB": str(config.db_path),
                              "DURABLE_NB_SOCKET": str(local.path)})
    try:
        await engine.start()
    except BaseException:
        server.stop()
        await local.close()
        raise
    info = {"url": url, "token": token, "pid": os.getpid(), "db": str(config.db_path),
            "started_at": time.time()}
    try:
        info["socket"] = str(await local.start(engine))
    except OSError as exc:  # HTTP still works; only slower
        log.warning("durable_nb: no local socket for the engine (%s)", exc)
    rt = runtime_file(config.db_path)
    write_private(rt, json.dumps(info))
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
        try:
            if json.loads(rt.read_text()).get("pid") == os.getpid():
                rt.unlink()
        except (OSError, ValueError):
            pass
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
    return 0


def read_runtime(db: Path) -> dict | None:
    try:
        return json.loads(runtime_file(db).read_text())
    except (OSError, ValueError):
        return None
