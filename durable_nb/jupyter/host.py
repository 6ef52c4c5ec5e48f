"""The engine as a long-lived server (the Jupyter server extension) hosts it.

DuckDB allows one writing process per file, so for one database exactly one process runs
the engine. An `EngineHost` either *owns* the engine (it started it), or, when another
process holds the file, *proxies* the durable API to that owner over loopback, or is
*unavailable* and answers 503 with a message naming the file and the owning pid. A proxy
whose owner goes away takes the database over on the next request.

This module knows tornado but not jupyter-server: `jupyter.web` holds the WebSocket relay and
a private loopback listener, `jupyter.extension` the Jupyter handlers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import tornado.httpclient
import tornado.httpserver
import tornado.websocket

from ..core import runtime as _runtime
from ..core.auth import server_owner
from ..core.errors import EngineLocked, Forbidden
from ..core.runtime import pid_alive
from ..core.status import BUSY, csv
from ..engine.engine import Engine, EngineConfig
from ..server import api as _api
from ..server.unix import LocalServer

ACTIVE_STATUSES = csv(BUSY)  # runs that keep the server from being idle
ACTIVITY_KEY = "durable_nb"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _is_loopback(url: str) -> bool:
    return urllib.parse.urlparse(url).hostname in LOOPBACK_HOSTS


def _json(status: int, obj: Any) -> tuple[int, bytes]:
    return status, json.dumps(obj).encode()


Authorize = Callable[[str], Awaitable[None]]


async def _authorize_forward(method: str, path: str, body: bytes | None,
                             authorize: Authorize | None) -> None:
    """The permissions a request forwarded to another process's engine needs, checked here
    (that engine only knows our token): the route's, and "execute" for an event whose
    payload is a pickle (a worker unpickles it) or a bulk replay or resume (they run code),
    as `server.api.dispatch` asks locally."""
    if authorize is None:
        return
    route, _, _ = _api.match(method, path)
    if route is None:
        return
    await authorize(route.action)
    if route.path in ("/events/{key}", "/runs/bulk") and body:
        try:
            b = json.loads(body)
            runs_code = (b.get("data_b64") is not None if route.path == "/events/{key}"
                         else b.get("action") != "cancel")
        except (ValueError, AttributeError, RecursionError):
            return  # the engine answers 400
        if runs_code:
            await authorize("execute")


class EngineHost:
    """Runs, proxies to, or explains the absence of the engine for one database.

    ``token`` is a dedicated random credential handed to kernels and written to the
    runtime file, so the Jupyter server's own login token never leaves the server.
    ``activity`` is jupyter-server's ``last_activity_times`` dict: while runs are QUEUED
    or EXECUTING the host stamps it, so idle culling does not stop a busy server.
    """

    private_server: tornado.httpserver.HTTPServer | None = None

    def __init__(self, config: EngineConfig, log: logging.Logger | None = None,
                 activity: dict | None = None, activity_interval: float = 5.0,
                 owner_wait: float = 2.0):
        self.config = config
        self.log = log or logging.getLogger("durable_nb")
        self.activity = activity if activity is not None else {}
        self.activity_interval = activity_interval
        self.owner_wait = owner_wait
        self.token = secrets.token_urlsafe(32)
        self.mode = "starting"  # starting | owner | proxy | unavailable | stopped
        self.engine: Engine | None = None
        self.owner: _runtime.RuntimeInfo | None = None
        self.problem = "the durable_nb engine is starting"
        self.url: str | None = None
        # the Jupyter server's root, so kernels record notebooks relative to it
        self.root_dir: str | None = None
        self.busy = False
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._last_try = 0.0
        self._watcher: asyncio.Task | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._saved_env: dict[str, str | None] = {}
        self._http: tornado.httpclient.AsyncHTTPClient | None = None
        # kernels reach an owned engine faster through this socket (absent when proxying)
        self.local = LocalServer(self.token, config.db_path, user=server_owner())
        self._stopping: asyncio.Future | None = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self, url: str) -> None:
        """Export ``url`` and the token for kernels, then own or find the engine."""
        self.url = url if url.endswith("/") else url + "/"
        env = self.env()
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # kernels started by this server inherit it
        self._started = True
        try:
            async with self._lock:
                await self._acquire(settle=self.owner_wait)
        finally:
            self._ready.set()

    def env(self) -> dict[str, str]:
        """What kernels and workers need to reach this host's engine."""
        env = {"DURABLE_NB_URL": self.url or "", "DURABLE_NB_TOKEN": self.token,
               "DURABLE_NB_DB": str(self.config.db_path),
               "DURABLE_NB_SOCKET": str(self.local.path)}
        if self.root_dir:
            env["DURABLE_NB_ROOT_DIR"] = self.root_dir
        return env

    async def stop(self) -> None:
        """Stop the owned engine, remove its runtime file, restore the environment.

        A second call (a second SIGTERM) waits for the first one to finish.
        """
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        was_owner, self.mode = self.mode == "owner", "stopped"
        self.problem = "the Jupyter server hosting the durable_nb engine is shutting down"
        self.busy = False
        self._ready.set()
        if self._watcher:
            self._watcher.cancel()
        if self._unsubscribe:
            self._unsubscribe()
        if self.private_server is not None:
            self.private_server.stop()
        await self.local.close()
        if self.engine is not None:
            try:
                await self.engine.stop()
                self.log.info("durable_nb engine for %s stopped", self.config.db_path)
            except Exception:  # never break the server's own shutdown
                self.log.exception("durable_nb: stopping the engine failed")
            finally:
                if was_owner:
                    _runtime.remove(self.config.db_path, self.token)
        for k, old in self._saved_env.items():
            if os.environ.get(k) == self.env()[k]:
                if old is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = old
        if self._http is not None:
            self._http.close()

    async def _acquire(self, settle: float) -> None:
        """Own the engine if the database is free, else proxy to its owner (caller locks)."""
        self._last_try = time.monotonic()
        db = self.config.db_path
        engine = Engine(self.config)
        engine.worker_env.update(self.env())
        try:
            await engine.start()
        except EngineLocked as exc:
            await self._find_owner(str(exc), settle)
            return
        except Exception as exc:
            self.log.exception("durable_nb engine for %s failed to start", db)
            try:
                await engine.stop()
            except Exception:
                pass
            self._unavailable(f"the durable_nb engine for {db} could not start: "
                              f"{type(exc).__name__}: {exc}")
            return
        if self.mode == "stopped":  # the server shut down while the engine started
            await engine.stop()
            return
        self.engine, self.owner, self.mode, self.problem = engine, None, "owner", ""
        assert self.url is not None  # set by start() before the first _acquire
        info: _runtime.RuntimeInfo = {"url": self.url, "token": self.token,
                                      "pid": os.getpid(), "db": str(db),
                                      "started_at": time.time(), "host": "jupyter-server"}
        try:
            info["socket"] = str(await self.local.start(engine))
        except OSError as exc:  # HTTP still works; only slower
            self.log.warning("durable_nb: no local socket for the engine (%s)", exc)
        _runtime.write(db, info)
        self._unsubscribe = engine.subscribe(self._on_event)
        self._watcher = asyncio.ensure_future(self._watch_activity())
        self.log.info("durable_nb engine for %s runs in this server (pid %d); API at %s%s/",
                      db, os.getpid(), self.url, _api.PREFIX)

    async def _find_owner(self, reason: str, settle: float) -> None:
        """The database is locked: proxy to its owner if it answers, else be unavailable."""
        db = self.config.db_path
        rt = _runtime.path(db)
        deadline = time.monotonic() + settle
        while True:  # an owner that is starting writes its runtime file a moment later
            info = _runtime.read(db)
            if info and await self._healthy(info):
                if self.mode == "stopped":
                    return
                self.mode, self.owner, self.problem = "proxy", info, ""
                self.log.info("durable_nb: %s is owned by the engine of process %s at %s; this "
                              "server forwards the durable API to it", db, info["pid"],
                              info["url"])
                return
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        if info is None:
            why = f"no runtime file ({rt}) names a running engine for it"
        elif not pid_alive(info["pid"]):
            why = f"its runtime file {rt} names process {info['pid']}, which is not running"
        else:
            why = (f"its runtime file {rt} names process {info['pid']}, whose engine does "
                   "not answer on loopback")
        self._unavailable(f"{reason} This Jupyter server cannot use that engine: {why}. Stop the "
                          "process holding the file, or point this server at another database "
                          "(--DurableApp.db_path).")

    def _unavailable(self, problem: str) -> None:
        if self.mode == "stopped":
            return
        self.mode, self.owner, self.problem = "unavailable", None, problem
        self.log.error("durable_nb: %s", problem)

    # ------------------------------------------------------------------ activity

    def _stamp(self) -> None:
        self.activity[ACTIVITY_KEY] = datetime.now(timezone.utc)

    def _on_event(self, event: dict) -> None:
        if event.get("type") == "run" and event.get("status") in BUSY:
            self.busy = True
            self._stamp()

    async def _watch_activity(self) -> None:
        """Every ``activity_interval`` s: are runs QUEUED or EXECUTING? Then report activity."""
        while self.mode == "owner" and self.engine is not None:
            try:
                busy = bool(await self.engine.list_runs(status=ACTIVE_STATUSES, limit=1))
            except Exception:
                self.log.debug("durable_nb: activity check failed", exc_info=True)
                busy = self.busy
            self.busy = busy
            if busy:
                self._stamp()
            await asyncio.sleep(self.activity_interval)

    # ------------------------------------------------------------------ requests

    async def request(self, method: str, path: str, query: dict[str, str], body: bytes | None,
                      user: str | None, authorize: Authorize | None = None
                      ) -> tuple[int, bytes]:
        """Answer one durable API request (``path`` relative to the API root) as JSON bytes.

        ``user`` is the identity the server authenticated; ``authorize(action)`` raises
        `Forbidden` when the caller may not (None: everything is allowed)."""
        await self.wait_ready()
        for _ in range(2):
            if self.mode == "unavailable":
                await self.recover(None)
            if self.mode == "owner" and self.engine is not None:
                status, obj = await _api.dispatch(self.engine, method, path, query, body, user,
                                                  authorize)
                return _json(status, obj)
            if self.mode == "proxy" and self.owner is not None:
                owner = self.owner
                try:
                    await _authorize_forward(method, path, body, authorize)
                except Forbidden as exc:
                    return _json(403, {"error": str(exc), "code": "forbidden"})
                try:
                    return await self._forward(owner, method, path, query, body)
                except (OSError, tornado.httpclient.HTTPClientError) as exc:
                    self.log.warning("durable_nb: the engine at %s did not answer (%s)",
                                     owner["url"], type(exc).__name__)
                    await self.recover(owner)
                    continue
            break
        return _json(503, {"error": self.problem, "code": "engine_unavailable"})

    async def wait_ready(self) -> None:
        if not self._started:  # e.g. a test server that never ran the extension's start hook
            self.problem = ("the durable_nb engine was not started: the server extension's "
                            "start hook has not run")
            return
        try:
            await asyncio.wait_for(self._ready.wait(), 120)
        except asyncio.TimeoutError:
            pass

    async def recover(self, failed_owner: _runtime.RuntimeInfo | None) -> None:
        """After the owner stopped answering (or while unavailable): try to own or re-find."""
        async with self._lock:
            if self.mode in ("owner", "stopped"):
                return
            if self.mode == "proxy" and self.owner is not failed_owner:
                return  # another request already recovered
            if self.mode == "unavailable" and time.monotonic() - self._last_try < 1.0:
                return
            await self._acquire(settle=2.0 if failed_owner else 0.0)

    def _client(self) -> tornado.httpclient.AsyncHTTPClient:
        if self._http is None:
            self._http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=256)
        return self._http

    async def _healthy(self, info: _runtime.RuntimeInfo) -> bool:
        """Does the engine in ``info`` answer on loopback, for this database?"""
        if not _is_loopback(info["url"]) or info.get("pid") == os.getpid():
            return False
        try:
            resp = await self._client().fetch(
                info["url"].rstrip("/") + f"/{_api.PREFIX}/health", raise_error=False,
                headers={"Authorization": f"token {info['token']}"}, request_timeout=5,
                connect_timeout=5)
            return resp.code == 200 and json.loads(resp.body).get("db") == str(
                self.config.db_path)
        except (OSError, ValueError, tornado.httpclient.HTTPClientError):
            return False

    async def _forward(self, owner: _runtime.RuntimeInfo, method: str, path: str,
                       query: dict[str, str], body: bytes | None) -> tuple[int, bytes]:
        url = owner["url"].rstrip("/") + f"/{_api.PREFIX}" + urllib.parse.quote(path, safe="/")
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            wait = min(max(float(query.get("timeout", 0)), 0.0), 300.0)
        except ValueError:
            wait = 0.0
        has_body = method in ("POST", "PUT", "PATCH")
        resp = await self._client().fetch(tornado.httpclient.HTTPRequest(
            url, method=method, body=(body or b"") if has_body else None,
            headers={"Authorization": f"token {owner['token']}",
                     "Content-Type": "application/json"},
            allow_nonstandard_methods=True, follow_redirects=False, connect_timeout=5,
            request_timeout=wait + 60), raise_error=False)
        return resp.code, resp.body or b""

    async def connect_events(self, run_id: str | None
                             ) -> tornado.websocket.WebSocketClientConnection | None:
        """A WebSocket to the owner's event stream (proxy mode), recovering once if needed."""
        for _ in range(2):
            owner = self.owner
            if self.mode != "proxy" or owner is None:
                return None
            url = _runtime.events_url(owner["url"], run_id)
            try:
                return await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
                    url, headers={"Authorization": f"token {owner['token']}"},
                    connect_timeout=5, request_timeout=10))
            except (OSError, tornado.httpclient.HTTPClientError):
                await self.recover(owner)
        return None
