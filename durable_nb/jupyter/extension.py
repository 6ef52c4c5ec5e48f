"""The jupyter-server extension: the Jupyter server hosts the durable_nb engine.

Enabled on install by ``etc/jupyter/jupyter_server_config.d/durable_nb.json``. At server
start it starts the engine for ``DurableApp.db_path`` on the server's event loop (or
proxies to the process that already owns that database, see `jupyter.host`), serves the
REST API and the events WebSocket under ``<base_url>/durable/api/``, and exports
``DURABLE_NB_URL`` / ``DURABLE_NB_TOKEN`` so kernels started by the server find it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from jupyter_server.auth import User
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import ensure_async
from tornado import web
from tornado.websocket import WebSocketHandler

from ..core.auth import ScrubbedLogMixin, server_owner, token_matches
from ..core.config import SETTINGS, engine_config, jupyter_trait
from ..core.errors import Forbidden
from ..core.version import __version__
from ..server import api as _api
from ..server.standalone import AuthFirstBodyMixin
from .host import EngineHost
from .labext import warn_if_panel_missing
from .web import HostEventsMixin, listen_private

FuncT = TypeVar("FuncT", bound=Callable[..., Any])

try:
    from jupyter_server.auth.decorator import ws_authenticated
except ImportError:  # jupyter-server < 2.13

    def ws_authenticated(method: FuncT) -> FuncT:
        """Refuse a WebSocket upgrade without an authenticated user (403)."""

        async def wrapper(self, *args, **kwargs):
            if self.current_user is None:
                raise web.HTTPError(403)
            return await method(self, *args, **kwargs)

        return cast(FuncT, wrapper)


if TYPE_CHECKING:
    # DurableHandlerMixin is only ever combined with jupyter-server's handlers
    _JupyterBase = JupyterHandler
else:
    _JupyterBase = object


AUTH_RESOURCE = "durable"
KERNEL_USER = User(username="durable_nb-kernel", name="durable_nb kernel token")


class KernelTokenIdentity:
    """The server's identity provider, which also accepts the extension's kernel token.

    Kernels get a dedicated random token (``DURABLE_NB_TOKEN``) valid for the durable API
    only, instead of the server's login token. A request carrying it counts as
    token-authenticated (no XSRF or origin checks, like any token request).
    """

    def __init__(self, inner: Any, token: str):
        self._inner = inner
        self._token = token

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_user(self, handler: web.RequestHandler) -> Any:
        if token_matches(handler.request, self._token):
            handler._token_authenticated = True  # type: ignore[attr-defined]
            handler._durable_kernel = True  # type: ignore[attr-defined]
            return KERNEL_USER
        return self._inner.get_user(handler)

    def is_token_authenticated(self, handler: web.RequestHandler) -> bool:
        return getattr(handler, "_durable_kernel", False) or bool(
            self._inner.is_token_authenticated(handler))

    def should_check_origin(self, handler: web.RequestHandler) -> bool:
        if getattr(handler, "_durable_kernel", False):
            return False
        return bool(self._inner.should_check_origin(handler))


DEFAULT_PROVIDERS = ("IdentityProvider", "PasswordIdentityProvider", "LegacyIdentityProvider")


def is_single_user(provider: Any) -> bool:
    """Whether ``provider`` is one of jupyter-server's own (token, password, anonymous):
    whoever gets in is the server's owner. Other providers name each person."""
    from jupyter_server.auth import identity

    return any(type(provider) is getattr(identity, n, None) for n in DEFAULT_PROVIDERS)


class DurableHandlerMixin(ScrubbedLogMixin, _JupyterBase):
    """Auth shared by the API and WebSocket handlers: Jupyter's, or the kernel token."""

    host: EngineHost

    def initialize(self, host: EngineHost) -> None:
        self.host = host

    @property
    def identity_provider(self) -> Any:
        return KernelTokenIdentity(super().identity_provider, self.host.token)

    def durable_user(self) -> str | None:
        """The identity recorded for approvals (see `durable_nb._auth`): the server's owner
        for the kernel token and for jupyter-server's own single-user providers, else the
        username the identity provider gives."""
        if getattr(self, "_durable_kernel", False):
            return server_owner()
        user = self.current_user
        if user is None:
            return None
        if is_single_user(super().identity_provider):
            return server_owner()
        return user.username or user.name

    async def authorize(self, action: str) -> None:
        """Ask jupyter-server's authorizer (the kernel token is always allowed)."""
        if getattr(self, "_durable_kernel", False):
            return
        ok = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE))
        if not ok:
            raise Forbidden(f"not authorized to {action} {AUTH_RESOURCE}: ask the server's "
                            "administrator for that permission")


@web.stream_request_body
class DurableApiHandler(DurableHandlerMixin, AuthFirstBodyMixin, APIHandler):
    """``<base_url>/durable/api/<path>``: the engine's REST API (`server.api.ROUTES`).

    jupyter-server authenticates in ``prepare`` (refusing a request without a user and a
    cookie session without its XSRF token); then the route's permission is checked, all
    before a byte of the body is read."""

    async def prepare(self, **kwargs: Any) -> None:
        await super().prepare(**kwargs)
        if self._finished:
            return
        if self.current_user is None:  # servers that allow unauthenticated access
            raise web.HTTPError(403)
        route, _, _ = _api.match(self.request.method or "GET", "/" + self.path_args[0])
        if route is not None:
            try:
                await self.authorize(route.action)
            except Forbidden as exc:
                self.refuse(403, str(exc), "forbidden")
                return
        self.accept_body()

    async def _any(self, path: str) -> None:
        method = self.request.method or "GET"
        query = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        status, body = await self.host.request(method, "/" + path, query, self.body_bytes,
                                               self.durable_user(), self.authorize)
        self.set_status(status)
        self.finish(body)

    get = post = put = delete = _any

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors raised by jupyter-server (403, ...) in the API's shape: {"error", "code"}."""
        _write_json_error(self, status_code, **kwargs)


def _write_json_error(handler: web.RequestHandler, status_code: int, **kwargs: Any) -> None:
    """Answer an error (``write_error``'s arguments) as the API's JSON {"error", "code"}."""
    exc = kwargs.get("exc_info", (None, None, None))[1]
    message = getattr(exc, "log_message", None) or handler._reason
    if status_code == 403:
        message = (f"{message}: send 'Authorization: token <token>' (the Jupyter server's "
                   "token or $DURABLE_NB_TOKEN), or a login cookie with its XSRF token")
    handler.set_header("Content-Type", "application/json")
    handler.finish(json.dumps({"error": message, "code": f"http_{status_code}",
                               "message": message}))


class DurableEventsHandler(DurableHandlerMixin, HostEventsMixin, WebSocketMixin,
                           WebSocketHandler, JupyterHandler):
    """``<base_url>/durable/api/events``: a WebSocket streaming the engine's events."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """JSON, not Jupyter's HTML error page (which asks for the user again and fails)."""
        _write_json_error(self, status_code, **kwargs)

    def set_default_headers(self) -> None:
        """No page headers (CSP and such) on a WebSocket upgrade."""

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        try:
            await self.authorize("read")
        except Forbidden as exc:
            raise web.HTTPError(403, str(exc)) from None
        if await self.prepare_stream():
            await super().get(*args, **kwargs)

    def open(self, *args: Any) -> None:
        WebSocketMixin.open(self)  # jupyter-server's keep-alive pings
        HostEventsMixin.open(self, *args)


def loopback_url(serverapp: Any) -> str | None:
    """The server's own URL on loopback, or None when plain HTTP there cannot reach it."""
    if getattr(serverapp, "sock", "") or serverapp.certfile:
        return None
    ip = serverapp.ip
    if ip in ("", "*", "0.0.0.0", "localhost"):
        host = "127.0.0.1"
    elif ip == "::":
        host = "[::1]"
    else:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if not addr.is_loopback:
            return None
        host = f"[{ip}]" if addr.version == 6 else ip
    return f"http://{host}:{serverapp.port}{serverapp.base_url}"


class DurableApp(ExtensionApp):
    """Hosts the durable_nb engine in the Jupyter server (configure as ``DurableApp``)."""

    name = "durable_nb"
    description = "Durable execution for Jupyter: the engine and its REST/WebSocket API"
    version = __version__
    load_other_extensions = True

    # One trait per setting of durable_nb.core.config.SETTINGS (type, default, help and
    # environment variable come from there).
    db_path = jupyter_trait("db_path")
    max_workers = jupyter_trait("max_workers")
    min_idle_workers = jupyter_trait("min_idle_workers")
    wait_grace = jupyter_trait("wait_grace")
    max_payload_mb = jupyter_trait("max_payload_mb")
    max_checkpoint_mb = jupyter_trait("max_checkpoint_mb")
    prune_after = jupyter_trait("prune_after")
    activity_interval = jupyter_trait("activity_interval")
    executor = jupyter_trait("executor")
    dask_scheduler = jupyter_trait("dask_scheduler")
    executor_bind = jupyter_trait("executor_bind")
    executor_cert = jupyter_trait("executor_cert")
    executor_key = jupyter_trait("executor_key")
    otlp_endpoint = jupyter_trait("otlp_endpoint")

    host: EngineHost | None = None

    def initialize_settings(self) -> None:
        """Create the engine host (the engine starts with the server's event loop)."""
        if self.serverapp is None:
            raise RuntimeError("DurableApp needs the Jupyter server that loads it (serverapp)")
        settings = self.serverapp.web_app.settings
        config = engine_config({s.name: getattr(self, s.name) for s in SETTINGS if s.jupyter})
        self.host = EngineHost(config, self.log, settings.setdefault("last_activity_times", {}),
                               self.activity_interval)
        self.host.root_dir = str(getattr(self.serverapp, "root_dir", "") or "") or None
        self.settings["durable_nb_host"] = self.host

    def initialize_handlers(self) -> None:
        kw = {"host": self.host}
        self.handlers.extend([
            (rf"/{_api.PREFIX}{_api.WS_PATH}", DurableEventsHandler, kw),
            (rf"/{_api.PREFIX}/(.*)", DurableApiHandler, kw),
        ])

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Server start (its event loop runs): start or find the engine, export its URL."""
        assert self.host is not None
        warn_if_panel_missing(self.log)
        url = loopback_url(serverapp)
        if url is None:
            url = listen_private(self.host)
            self.log.info("durable_nb: the server is not reachable by plain HTTP on loopback; "
                          "kernels use the durable API at %s", url)
        await self.host.start(url)

    async def stop_extension(self) -> None:
        """Server shutdown: stop the engine (runs resume at the next start)."""
        if self.host is not None:
            await self.host.stop()

    def current_activity(self) -> bool:
        """True while runs are QUEUED or EXECUTING (jupyter-server's idle shutdown asks)."""
        return bool(self.host is not None and self.host.busy)
