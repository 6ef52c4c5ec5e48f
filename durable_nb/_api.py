"""The engine's REST API as plain data: routes, handlers and the OpenAPI document.

Both the standalone server (``_server``) and the Jupyter server extension mount these
routes under ``<base_url>/durable/api/``; they differ only in how they authenticate.
Binary values (pickles) travel base64-encoded in fields ending in ``_b64``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import __version__
from ._engine import Engine, summarize
from ._errors import Forbidden, PayloadTooLarge, RunNotFound, StoreUnavailable, WaitConflict
from ._serial import b64

PREFIX = "durable/api"
MAX_BODY = 512 * 1024 * 1024


class BadRequest(ValueError):
    """A malformed request body or parameter (HTTP 400)."""


async def _allow_all(action: str) -> None:
    return None


@dataclass
class Request:
    engine: Engine
    args: tuple
    query: dict[str, str]
    body: dict
    user: str | None  # the identity the host authenticated; never taken from the body
    # ``await authorize(action)`` raises Forbidden when the caller may not ``action``
    # ("read", "write" or "execute"); hosts without finer permissions allow everything
    authorize: Callable[[str], Awaitable[None]] = _allow_all


@dataclass
class Route:
    method: str
    path: str  # OpenAPI style, e.g. /runs/{run_id}
    summary: str
    handler: Callable[[Request], Awaitable[tuple[int, Any]]]
    # the permission a caller needs: "read", "write", or "execute" (runs code); a handler
    # may ask for more with ``await r.authorize(...)`` (an event with a pickled payload)
    action: str = "read"

    @property
    def regex(self) -> str:
        return re.sub(r"\{[a-z_]+\}", r"([^/]+)", self.path)


def unb64(body: dict, name: str, required: bool = True) -> bytes | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"field '{name}' is required (base64 string)")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"field '{name}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise BadRequest(f"field '{name}' is not valid base64") from None


def field(body: dict, name: str, kind: type | tuple, required: bool = False, default=None):
    value = body.get(name, default)
    if value is None:
        if required:
            raise BadRequest(f"field '{name}' is required")
        return default
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadRequest(f"field '{name}' must be {names}, got {type(value).__name__}")
    return value


def qint(req: Request, name: str, default: int, lo: int = 0, hi: int = 100_000) -> int:
    raw = req.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter '{name}' must be an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter '{name}' must be between {lo} and {hi}")
    return value


def qfloat(req: Request, name: str, default: float, hi: float = 300.0) -> float:
    raw = req.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"query parameter '{name}' must be a number") from None
    return max(0.0, min(value, hi))


# ---------------------------------------------------------------------- handlers

async def health(r: Request):
    return 200, {**r.engine.health(), "version": __version__}


async def put_task(r: Request):
    spec = {
        "hash": r.args[0],
        "task_id": field(r.body, "task_id", str, required=True),
        "code": unb64(r.body, "code_b64"),
        "sys_path": field(r.body, "sys_path", list, default=[]),
        "options": field(r.body, "options", dict, default={}),
    }
    info = r.engine.register_task(spec)
    return 200, {"hash": info.hash, "task_id": info.task_id}


async def post_run(r: Request):
    b = r.body
    delay = field(b, "delay", (int, float))
    ttl = field(b, "ttl", (int, float))
    if (delay is not None and delay < 0) or (ttl is not None and ttl <= 0):
        raise BadRequest("delay must be >= 0 and ttl > 0")
    try:
        run_id, created = await r.engine.trigger(
            field(b, "task_hash", str, required=True), unb64(b, "payload_b64"),
            idempotency_key=field(b, "idempotency_key", str), delay=delay,
            tags=field(b, "tags", list, default=[]),
            concurrency_key=field(b, "concurrency_key", str), ttl=ttl,
        )
    except LookupError as exc:
        return 409, {"error": str(exc), "code": "unknown_task"}
    return (201 if created else 200), {"id": run_id, "created": created}


async def list_runs(r: Request):
    runs = await r.engine.list_runs(
        status=r.query.get("status"), task=r.query.get("task"),
        limit=qint(r, "limit", 100, 1, 10_000), offset=qint(r, "offset", 0, 0, 10**9),
    )
    return 200, {"runs": runs}


async def get_run(r: Request):
    return 200, await r.engine.run_detail(r.args[0])


async def get_result(r: Request):
    row = await r.engine.wait_result(r.args[0], qfloat(r, "timeout", 0.0))
    return 200, {**summarize(row), "output_b64": b64(row["output"])}


async def cancel_run(r: Request):
    await r.engine.cancel(r.args[0])
    return 200, {"id": r.args[0], "canceled": True}


async def replay_run(r: Request):
    new_id = await r.engine.replay(r.args[0])
    return 201, {"id": new_id, "replay_of": r.args[0]}


async def _decide(r: Request, approved: bool):
    # who decided is the identity the host authenticated; a name in the body is only a note
    out = await r.engine.resolve_approval(
        r.args[0], approved, name=field(r.body, "wait", str),
        comment=field(r.body, "comment", str), by=r.user, note=field(r.body, "by", str),
    )
    return 200, out


async def approve(r: Request):
    return await _decide(r, True)


async def reject(r: Request):
    return await _decide(r, False)


async def get_checkpoint(r: Request):
    names = r.query.get("names")
    out = await r.engine.checkpoint(
        r.args[0], names.split(",") if names else None,
        values=r.query.get("values", "0") in ("1", "true"))
    out["values_b64"] = {n: b64(v) for n, v in out.pop("values").items()}
    return 200, out


async def run_spans(r: Request):
    return 200, {"spans": await r.engine.spans(r.args[0])}


async def run_logs(r: Request):
    rows = await r.engine.logs(r.args[0], qint(r, "limit", 1000, 1, 100_000))
    return 200, {"logs": rows[::-1]}


async def send_event(r: Request):
    data = unb64(r.body, "data_b64", required=False)
    if data is not None:  # a pickle is unpickled by a worker: sending one runs code
        await r.authorize("execute")
    if data is None and "data" in r.body:
        import cloudpickle

        data = cloudpickle.dumps(r.body["data"])
    n = await r.engine.send_event(r.args[0], data)
    return 200, {"key": r.args[0], "resumed": n}


async def list_queues(r: Request):
    return 200, {"queues": r.engine.queues()}


async def put_queue(r: Request):
    if "concurrency_limit" not in r.body:
        raise BadRequest("field 'concurrency_limit' is required (integer or null)")
    limit = field(r.body, "concurrency_limit", int)
    return 200, r.engine.set_queue(r.args[0], limit)


async def list_workers(r: Request):
    return 200, {"workers": r.engine.workers()}


async def post_sql(r: Request):
    cols, rows = await r.engine.sql(field(r.body, "query", str, required=True),
                                    field(r.body, "limit", int, default=10_000))
    return 200, {"columns": cols, "rows": [list(map(_jsonable, row)) for row in rows]}


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": len(v)}
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


async def openapi(r: Request):
    return 200, openapi_document()


ROUTES: list[Route] = [
    Route("GET", "/health", "Engine status: pid, database, active runs", health),
    Route("GET", "/openapi.json", "This document", openapi),
    Route("PUT", "/tasks/{hash}", "Register a task's code (cloudpickled, base64)", put_task, action="execute"),
    Route("POST", "/runs", "Trigger a run of a registered task", post_run, action="execute"),
    Route("GET", "/runs", "List runs (filters: status, task; paging: limit, offset)", list_runs),
    Route("GET", "/runs/{run_id}", "A run with its attempts, steps, waits and children", get_run),
    Route("GET", "/runs/{run_id}/result",
          "Wait up to `timeout` seconds for the run to finish; its status and output", get_result),
    Route("POST", "/runs/{run_id}/cancel", "Cancel a run that has not finished", cancel_run, action="write"),
    Route("POST", "/runs/{run_id}/replay", "Start a new run with the same task and payload",
          replay_run, action="execute"),
    Route("POST", "/runs/{run_id}/approve", "Approve the run's pending approval", approve, action="write"),
    Route("POST", "/runs/{run_id}/reject", "Reject the run's pending approval", reject, action="write"),
    Route("GET", "/runs/{run_id}/spans", "The run's trace spans", run_spans),
    Route("GET", "/runs/{run_id}/checkpoint",
          "A cell run's latest checkpoint: variables and sizes (values with values=1, "
          "a subset with names=a,b)", get_checkpoint),
    Route("GET", "/runs/{run_id}/logs", "The run's log lines (stdout and stderr)", run_logs),
    Route("POST", "/events/{key}", "Send an event; resumes runs waiting on its key", send_event, action="write"),
    Route("GET", "/queues", "Queues with their limits and load", list_queues),
    Route("PUT", "/queues/{name}", "Set a queue's concurrency limit (applies at once)", put_queue, action="write"),
    Route("GET", "/workers", "Worker processes and the run each executes", list_workers),
    Route("POST", "/sql", "A read-only SQL query over the store", post_sql, action="read"),
]
WS_PATH = "/events"
COMPILED = [(rt, re.compile(rt.regex + "$")) for rt in ROUTES]


def match(method: str, path: str) -> tuple[Route | None, tuple, bool]:
    """The route for ``path`` (relative to the API root); third item: path known."""
    known = False
    for rt, rx in COMPILED:
        m = rx.match(path)
        if m:
            known = True
            if rt.method == method:
                return rt, m.groups(), True
    return None, (), known


async def dispatch(engine: Engine, method: str, path: str, query: dict[str, str],
                   body: bytes | None, user: str | None,
                   authorize: Callable[[str], Awaitable[None]] | None = None) -> tuple[int, Any]:
    """Answer one API request; errors become JSON with a fitting status code.

    ``user`` is the identity the host authenticated. ``authorize(action)`` raises
    `Forbidden` when the caller may not do ``action``; the route's own action is checked
    here, before its handler runs (hosts without permissions pass None)."""
    route, args, known = match(method, path)
    if route is None:
        if known:
            return 405, {"error": f"{method} is not allowed on {path}", "code": "bad_method"}
        return 404, {"error": f"no API route {path}; see /{PREFIX}/openapi.json",
                     "code": "no_route"}
    parsed: dict = {}
    if body:
        if len(body) > MAX_BODY:
            return 413, {"error": f"request body is {len(body)} bytes, over {MAX_BODY}",
                         "code": "too_large"}
        import json

        try:
            parsed = json.loads(body)
        except ValueError as exc:
            return 400, {"error": f"request body is not valid JSON: {exc}", "code": "bad_request"}
        if not isinstance(parsed, dict):
            return 400, {"error": "request body must be a JSON object", "code": "bad_request"}
    check = authorize or _allow_all
    try:
        await check(route.action)
        return await route.handler(Request(engine, args, query, parsed, user, check))
    except Forbidden as exc:
        return 403, {"error": str(exc), "code": "forbidden"}
    except StoreUnavailable as exc:
        return 507, {"error": str(exc), "code": "store_unavailable"}
    except RunNotFound as exc:
        return 404, {"error": str(exc), "code": "run_not_found"}
    except WaitConflict as exc:
        return 409, {"error": str(exc), "code": "conflict"}
    except PayloadTooLarge as exc:
        return 413, {"error": str(exc), "code": "too_large"}
    except BadRequest as exc:
        return 400, {"error": str(exc), "code": "bad_request"}
    except ValueError as exc:
        return 422, {"error": str(exc), "code": "invalid"}


def openapi_document() -> dict:
    paths: dict[str, dict] = {}
    for rt in ROUTES:
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in re.findall(r"\{([a-z_]+)\}", rt.path)]
        op: dict[str, Any] = {
            "summary": rt.summary, "operationId": rt.handler.__name__,
            "responses": {"200": {"description": "OK", "content": {"application/json": {}}},
                          "4XX": {"description": "Error, as {\"error\": message}"}},
        }
        if params:
            op["parameters"] = params
        if rt.method in ("POST", "PUT"):
            op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
        paths.setdefault(rt.path, {})[rt.method.lower()] = op
    paths[WS_PATH] = {"get": {
        "summary": "WebSocket: a stream of run events (status, step, wait, log, warning)",
        "operationId": "events_ws", "responses": {"101": {"description": "Switching protocols"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "durable_nb API", "version": __version__},
        "servers": [{"url": "/" + PREFIX}],
        "paths": paths,
    }
