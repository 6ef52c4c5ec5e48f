"""The views' requests that go through the kernel: a view calls the engine's REST API
itself when the kernel uses its Jupyter server's engine (`engine_info` tells it), else it
sends the request over the widget's comm and `ApiMixin` answers it, for a few read routes
(a run, its logs, spans, result, steps grouped by name, a page of one name's steps and one
step's tries; a step key comes URL-encoded) and the approval decisions only."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from ..client.client import Client
from ..client.tasks import RunHandle
from ..core.errors import ApiError, DurableError, RunNotFound, WaitConflict

_GET_PATH = re.compile(
    r"^/runs/[A-Za-z0-9_.\-]+(/(logs|spans|result|steps|step_groups)"
    r"|/steps/[A-Za-z0-9_.\-~%!*'()]+)?$")
_POST_PATH = re.compile(r"^/runs/([A-Za-z0-9_.\-]+)/(approve|reject)$")


def _error_status(exc: Exception) -> int:
    if isinstance(exc, WaitConflict):
        return 409
    if isinstance(exc, RunNotFound):
        return 404
    if isinstance(exc, ApiError):
        return exc.status
    return 503 if isinstance(exc, DurableError) else 500


def engine_info(client: Client) -> dict:
    """What the browser needs to decide whether it can call the engine's API itself."""
    try:
        instance = client.request("GET", "/health", timeout=5).get("instance")
    except DurableError:
        instance = None
    env_url = os.environ.get("DURABLE_NB_URL", "")
    server = bool(os.environ.get("JPY_PARENT_PID")) and bool(env_url) and (
        client.url.rstrip("/") == env_url.rstrip("/"))
    return {"instance": instance, "server": server}


class ApiMixin:
    """Answers the views' requests that go through the kernel (no Jupyter server)."""

    client: Client
    send: Callable[..., None]  # the widget's comm message

    def _answer(self, _widget: Any, content: dict, _buffers: list) -> None:
        if not isinstance(content, dict) or content.get("type") != "api":
            return
        method, raw = content.get("method"), str(content.get("path") or "")
        path, _, qs = raw.partition("?")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(qs).items()}
        body = content.get("body") or {}
        try:
            if method == "GET" and _GET_PATH.match(path):
                status, out = 200, self.client.request("GET", path, query=query or None)
            elif method == "POST" and (posted := _POST_PATH.match(path)):
                run_id, verb = posted.groups()
                out = self._decide(run_id, verb == "approve", body.get("wait"),
                                   body.get("comment"), values=body.get("values"))
                status = 200
            else:
                status, out = 403, {"error": f"{method} {path} is not available to widgets"}
        except Exception as exc:
            status, out = _error_status(exc), {"error": str(exc)}
        self.send({"type": "api_reply", "id": content.get("id"), "status": status, "body": out})

    def _decide(self, run_id: str, approved: bool, wait: str | None, comment: str | None,
                by: str | None = None, values: dict | None = None) -> dict:
        handle = RunHandle(run_id, self.client)
        fn = handle.approve if approved else handle.reject
        out = fn(wait, comment or None, by, values if isinstance(values, dict) else None)
        self._after_decision(run_id)
        return out

    def _after_decision(self, run_id: str) -> None:
        pass

