"""The engine's REST API as plain data: routes, handlers and the OpenAPI document.

Both the standalone server (``server.standalone``) and the Jupyter server extension mount these
routes under ``<base_url>/durable/api/``; they differ only in how they authenticate.
Binary values (pickles) travel base64-encoded in fields ending in ``_b64``. Each route
carries the schemas of its body and parameters (``server.apischema``): requests are validated
against them before a handler runs, and the OpenAPI document publishes the same ones.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.errors import (
    Forbidden,
    FormInvalid,
    PayloadTooLarge,
    RunNotFound,
    StoreUnavailable,
    WaitConflict,
)
from ..core.runtime import API_PREFIX, EVENTS_PATH
from ..core.serial import b64
from ..core.version import __version__
from ..engine import step_groups
from ..engine.engine import KEEP, Engine, summarize
from . import apischema as S
from . import routes_bulk, routes_debug, routes_forks, routes_schedules, routes_versions
from .apischema import BadRequest, Param
from .routing import (
    STR,
    Request,
    Route,
    allow_all,
    as_float,
    as_int,
    duration_param,
    jsonable,
    out,
    required_b64,
    trigger_context,
    unb64,
)

PREFIX = API_PREFIX  # the REST API below a server's base URL (one definition)
MAX_BODY = 512 * 1024 * 1024

__all__ = ["BadRequest", "ROUTES", "Request", "Route", "dispatch", "match", "openapi_document"]


# ---------------------------------------------------------------------- handlers

async def health(r: Request):
    return 200, {**r.engine.health(), "version": __version__}


async def upload_module(r: Request):
    return 200, await r.engine.upload_module(r.body["filename"],
                                             required_b64(r.body, "data_b64"))


async def put_task(r: Request):
    spec = {
        "hash": r.args[0],
        "task_id": r.body["task_id"],
        "code": unb64(r.body, "code_b64"),
        "sys_path": list(r.body.get("sys_path") or []),
        "options": r.body.get("options") or {},
        "source": r.body.get("source"),  # kept for diffs between versions; not hashed
    }
    info = r.engine.register_task(spec)
    return 200, {"hash": info.hash, "task_id": info.task_id}


async def post_run(r: Request):
    b = r.body
    debounce, traceparent = trigger_context(b)
    try:
        run_id, created = await r.engine.trigger(
            b["task_hash"], required_b64(b, "payload_b64"),
            idempotency_key=b.get("idempotency_key"), delay=as_float(b.get("delay")),
            tags=list(b.get("tags") or []), concurrency_key=b.get("concurrency_key"),
            ttl=as_float(b.get("ttl")), origin=b.get("origin"), priority=b.get("priority"),
            debounce=debounce, traceparent=traceparent,
        )
    except LookupError as exc:
        return 409, {"error": str(exc), "code": "unknown_task"}
    return (201 if created else 200), {"id": run_id, "created": created}


async def list_runs(r: Request):
    p = r.params
    tags = [t for t in (p.get("tags") or "").split(",") if t] or None
    since = duration_param(p, "since")
    runs = await r.engine.list_runs(status=p.get("status"), task=p.get("task"),
                                    limit=p["limit"], offset=p["offset"], q=p.get("q"),
                                    tags=tags, since=since)
    total = await r.engine.count_runs(status=p.get("status"), task=p.get("task"), q=p.get("q"),
                                      tags=tags, since=since)
    return 200, {"runs": runs, "total": total}


async def get_run(r: Request):
    detail = await r.engine.run_detail(r.args[0])
    return 200, step_groups.trimmed(detail, r.params.get("steps"))


async def get_result(r: Request):
    row = await r.engine.wait_result(r.args[0], float(r.params["timeout"]))
    return 200, {**summarize(row), "output_b64": b64(row["output"])}


async def cancel_run(r: Request):
    below = await r.engine.cancel(r.args[0], children=r.body.get("children"))
    return 200, {"id": r.args[0], "canceled": True, "children": below}


async def resume_run(r: Request):
    row = await r.engine.resume(r.args[0], by=r.user)
    return 200, {"id": r.args[0], "status": row["status"], "generation": row["generation"]}


async def replay_run(r: Request):
    new_id = await r.engine.replay(r.args[0])
    return 201, {"id": new_id, "replay_of": r.args[0]}


async def _decide(r: Request, approved: bool):
    # who decided is the identity the host authenticated; a name in the body is only a note
    out = await r.engine.resolve_approval(
        r.args[0], approved, name=r.body.get("wait"), comment=r.body.get("comment"),
        by=r.user, note=r.body.get("by"), values=r.body.get("values"))
    return 200, out


async def approve(r: Request):
    return await _decide(r, True)


async def reject(r: Request):
    return await _decide(r, False)


async def get_checkpoint(r: Request):
    names = r.params.get("names")
    try:
        out = await r.engine.checkpoint(
            r.args[0], names.split(",") if names else None, values=r.params["values"])
    except LookupError as exc:
        return 409, {"error": str(exc), "code": "damaged_checkpoint"}
    out["pieces_b64"] = {h: b64(v) for h, v in out.pop("pieces").items()}
    return 200, out


async def get_piece(r: Request):
    """One piece of a run's latest checkpoint, for a client that cannot read its file."""
    try:
        data = await r.engine.piece(r.args[0], r.args[1])
    except LookupError as exc:
        return 404, {"error": str(exc)}
    return 200, {"hash": r.args[1], "data_b64": b64(data)}


async def get_step(r: Request):
    """Every try of one step: status, times, error, previews; pickles with values=1."""
    run_id, key = r.args[0], r.args[1]
    values = r.params["values"]
    rows = await r.engine.step_tries(run_id, key, values)
    if not rows:
        return 404, {"error": f"run {run_id} has no step {key!r}; its steps are listed by "
                     f"GET /runs/{run_id}", "code": "step_not_found"}
    tries = []
    for row in rows:
        t = {k: row[k] for k in ("attempt", "generation", "run_attempt", "status", "started_at",
                                 "ended_at", "retry_delay", "args_preview", "output_preview",
                                 "has_args")}
        t["error"] = None if row["error_type"] is None else {
            "type": row["error_type"], "message": row["error_message"],
            "traceback": row["traceback"]}
        if values:
            t["args_b64"], t["output_b64"] = b64(row["args"]), b64(row["output"])
        tries.append(t)
    return 200, {"run_id": run_id, "step_key": key, "name": rows[0]["name"], "tries": tries}


async def run_step_groups(r: Request):
    return 200, await step_groups.step_groups(r.engine, r.args[0])


async def run_step_page(r: Request):
    name = r.params.get("name")
    if not name:
        raise BadRequest("query parameter 'name' is required: the steps of which name "
                         f"(GET /runs/{r.args[0]}/step_groups lists them)", field="name",
                         rule="required")
    return 200, await step_groups.step_page(r.engine, r.args[0], name, r.params["offset"],
                                            r.params["limit"])


async def run_spans(r: Request):
    return 200, {"spans": await r.engine.spans(r.args[0])}


async def run_logs(r: Request):
    rows = await r.engine.logs(r.args[0], r.params["limit"])
    return 200, {"logs": rows[::-1]}


async def send_event(r: Request):
    data = unb64(r.body, "data_b64")
    if data is not None:  # a pickle is unpickled by a worker: sending one runs code
        await r.authorize("execute")
    elif "data" in r.body:
        import cloudpickle

        data = cloudpickle.dumps(r.body["data"])
    limit = r.engine.config.max_payload
    if data is not None and len(data) > limit:
        raise PayloadTooLarge(f"the data of event '{r.args[0]}' is {len(data)} bytes, over the "
                              f"limit of {limit} (max_payload_bytes)")
    n = await r.engine.send_event(r.args[0], data)
    return 200, {"key": r.args[0], "resumed": n}


async def list_queues(r: Request):
    return 200, {"queues": r.engine.queues()}


async def put_queue(r: Request):
    rate = r.body["rate_limit"] if "rate_limit" in r.body else KEEP  # absent: unchanged
    return 200, r.engine.set_queue(r.args[0], as_int(r.body["concurrency_limit"]), rate)


async def list_workers(r: Request):
    return 200, {"workers": r.engine.workers()}


async def post_sql(r: Request):
    cols, rows = await r.engine.sql(r.body["query"], int(r.body.get("limit", 10_000)))
    return 200, {"columns": cols, "rows": [list(map(jsonable, row)) for row in rows]}


async def post_prune(r: Request):
    b = r.body
    out = await r.engine.prune(b["older_than"], b.get("status"), bool(b.get("dry_run")))
    return 200, out


# POST /prune: older_than a duration ("30d", "12h", or seconds); status a list or "A,B"
_PRUNE = S.obj({
    "older_than": {"oneOf": [S.string(50, 1), S.SECONDS]},
    "status": {"oneOf": [S.string(1000), {"type": "array", "maxItems": 20,
                                           "items": S.string(50, 1)}, {"type": "null"}]},
    "dry_run": {"type": "boolean"},
}, required=("older_than",))


async def openapi(r: Request):
    return 200, openapi_document()


_RUN = out({"id": STR, "status": STR, "task_id": STR, "kind": STR,
             "origin": {**S.ORIGIN, "type": ["object", "null"]}}, ("id", "status"))
_RUN_CREATED = out({"id": STR, "created": {"type": "boolean"}}, ("id",))

# ---------------------------------------------------------------------- routes

ROUTES: list[Route] = [
    Route("GET", "/health", "Engine status: pid, database, active runs", health,
          response=out({"ok": {"type": "boolean"}, "pid": {"type": "integer"},
                         "version": STR}, ("ok",))),
    Route("GET", "/openapi.json", "This document", openapi,
          response=out({"openapi": STR, "paths": {"type": "object"}}, ("openapi", "paths"))),
    Route("POST", "/executor/modules", "Ship a Python module (NAME.py) or package (NAME.zip, "
          "the package's folder inside) to every Dask worker, also to those that join later "
          "(409 when the engine's executor is local)", upload_module, action="execute",
          body=S.UPLOAD_MODULE,
          response=out({"filename": STR, "workers": {"type": "integer"},
                         "failed": {"type": "object"}}, ("filename",))),
    Route("PUT", "/tasks/{hash}", "Register a task's code (cloudpickled, base64)", put_task,
          action="execute", body=S.PUT_TASK,
          response=out({"hash": STR, "task_id": STR}, ("hash", "task_id"))),
    Route("POST", "/runs", "Trigger a run of a registered task (201 created, 200 when the "
          "idempotency key names an existing run or the trigger was folded into its "
          "debounce window's run; 409 when the task is not registered)",
          post_run, action="execute", body=S.POST_RUN, response=_RUN_CREATED, status=201),
    Route("GET", "/runs", "List runs, newest first (filters: status, task, q (search); "
          "paging: limit, offset)", list_runs,
          query=(S.STATUS_FILTER, S.TASK_FILTER, S.SEARCH, S.TAGS_FILTER, S.SINCE_FILTER,
                 S.int_param("limit", 1, 10_000, 100, "at most this many runs"),
                 S.int_param("offset", 0, 10**9, 0, "skip this many runs")),
          response=out({"runs": {"type": "array", "items": _RUN},
                         "total": {"type": "integer", "minimum": 0}}, ("runs", "total"))),
    Route("GET", "/runs/{run_id}", "A run with its attempts, steps, waits and children (with "
          "steps=N: at most N step rows, the newest, and when there are more, `step_groups`, "
          "every step grouped by name, as GET /runs/{run_id}/step_groups)", get_run,
          query=(Param("steps", {"type": "integer", "minimum": 0, "maximum": 10**9},
                       "at most this many step rows"),),
          response=out({**_RUN["properties"], "attempt_list": {"type": "array"},
                         "steps": {"type": "array"}, "waits": {"type": "array"},
                         "children": {"type": "array"}}, ("id", "status"))),
    Route("GET", "/runs/{run_id}/result",
          "Wait up to `timeout` seconds for the run to finish; its status and output", get_result,
          query=(Param("timeout", {"type": "number", "minimum": 0, "maximum": 300,
                                   "default": 0}, "seconds to wait, 0 to 300"),),
          response=out({**_RUN["properties"], "output_b64": {"type": ["string", "null"]}},
                        ("id", "status"))),
    Route("POST", "/runs/{run_id}/cancel", "Cancel a run that has not finished, and every "
          "unfinished run below it (children=abandon leaves those running); `children` in "
          "the answer lists the descendants canceled", cancel_run,
          action="write", body=S.CANCEL,
          response=out({"id": STR, "canceled": {"type": "boolean"},
                         "children": {"type": "array", "items": STR}}, ("id",))),
    Route("POST", "/runs/{run_id}/resume", "Continue a FAILED, CRASHED, CANCELED or "
          "TIMED_OUT run in a new attempt, after its last recorded step or checkpoint",
          resume_run, action="execute", body=S.EMPTY,
          response=out({"id": STR, "status": STR, "generation": {"type": "integer"}},
                        ("id", "status"))),
    Route("POST", "/runs/{run_id}/replay", "Start a new run with the same task and payload",
          replay_run, action="execute", body=S.EMPTY, status=201,
          response=out({"id": STR, "replay_of": STR}, ("id",))),
    Route("POST", "/runs/{run_id}/approve", "Approve the run's pending approval (`wait` picks "
          "one by name); the decider is the authenticated user, `by` only a note; `values` "
          "fill its typed form (422 invalid_form naming the field when they do not match)",
          approve,
          action="write", body=S.DECIDE,
          response=out({"run_id": STR, "wait": STR, "outcome": STR}, ("outcome",))),
    Route("POST", "/runs/{run_id}/reject", "Reject the run's pending approval", reject,
          action="write", body=S.DECIDE,
          response=out({"run_id": STR, "wait": STR, "outcome": STR}, ("outcome",))),
    Route("GET", "/runs/{run_id}/steps/{step_key}",
          "Every try of one step (key like name#1, URL-encoded): status, error, previews of "
          "its arguments and output; with values=1 the pickled call (args_b64, (args, kwargs)) "
          "and output (output_b64) as base64", get_step, query=(S.VALUES,),
          response=out({"run_id": STR, "step_key": STR, "name": STR,
                         "tries": {"type": "array", "items": {"type": "object"}}},
                        ("run_id", "step_key", "tries"))),
    Route("GET", "/runs/{run_id}/step_groups", "The run's steps grouped by name: per name, "
          "how many steps, how they ended (completed, failed, retrying), their total and "
          "median duration", run_step_groups,
          response=out({"run_id": STR, "steps": {"type": "integer"},
                         "groups": {"type": "array", "items": {"type": "object"}}},
                        ("run_id", "groups"))),
    Route("GET", "/runs/{run_id}/steps", "A page of the steps named `name` (every try, as in "
          "GET /runs/{run_id}), in the order of their first start", run_step_page,
          query=(Param("name", S.string(1000, 1), "the steps' name"),
                 S.int_param("offset", 0, 10**9, 0, "skip this many steps"),
                 S.int_param("limit", 1, 10_000, 100, "at most this many steps")),
          response=out({"run_id": STR, "name": STR, "total": {"type": "integer"},
                         "offset": {"type": "integer"}, "steps": {"type": "array"}},
                        ("run_id", "total", "steps"))),
    Route("GET", "/runs/{run_id}/spans", "The run's trace spans", run_spans,
          response=out({"spans": {"type": "array"}}, ("spans",))),
    Route("GET", "/runs/{run_id}/checkpoint",
          "A cell run's latest checkpoint: variables with sizes and their pieces (with "
          "values=1, the small pieces as base64 and the folder of the large ones; a subset "
          "with names=a,b)", get_checkpoint,
          query=(Param("names", S.string(2000), "variable names, comma-separated"),
                 Param("values", {"type": "boolean", "default": False},
                       "include what is needed to load the values")),
          response=out({"run_id": STR, "variables": {"type": "object"},
                         "sizes": {"type": "object"}, "pieces_b64": {"type": "object"},
                         "blob_dir": {"type": ["string", "null"]}}, ("run_id",))),
    Route("GET", "/runs/{run_id}/checkpoint/pieces/{piece}",
          "One piece of a cell run's latest checkpoint as base64 (data_b64)", get_piece,
          response=out({"hash": STR, "data_b64": STR}, ("hash", "data_b64"))),
    Route("GET", "/runs/{run_id}/logs", "The run's last log lines (stdout and stderr)",
          run_logs, query=(S.int_param("limit", 1, 100_000, 1000, "at most this many lines"),),
          response=out({"logs": {"type": "array"}}, ("logs",))),
    Route("POST", "/events/{key}", "Send an event; resumes runs waiting on its key. A pickled "
          "payload (data_b64) needs the execute permission, JSON data only write",
          send_event, action="write", body=S.EVENT,
          response=out({"key": STR, "resumed": {"type": "integer"}}, ("resumed",))),
    Route("GET", "/queues", "Queues with their limits and load", list_queues,
          response=out({"queues": {"type": "array"}}, ("queues",))),
    Route("PUT", "/queues/{name}", "Set a queue's concurrency limit (applies at once)",
          put_queue, action="write", body=S.PUT_QUEUE,
          response=out({"name": STR, "concurrency_limit": {"type": ["integer", "null"]}},
                        ("name",))),
    Route("GET", "/workers", "Worker processes and the run each executes", list_workers,
          response=out({"workers": {"type": "array"}}, ("workers",))),
    Route("POST", "/prune", "Delete finished runs that finished more than `older_than` ago "
          "(e.g. 30d), in `status` (finished statuses; default all), with their rows and "
          "the checkpoint values no other run refers to; `dry_run` only counts", post_prune,
          action="write", body=_PRUNE,
          response=out({"runs": {"type": "integer"}, "rows": {"type": "integer"},
                         "blobs": {"type": "integer"}, "blob_bytes": {"type": "integer"},
                         "files": {"type": "integer"}, "dry_run": {"type": "boolean"}},
                        ("runs", "blob_bytes"))),
    Route("POST", "/sql", "A read-only SQL query over the store (one SELECT)", post_sql,
          action="read", body=S.SQL,
          response=out({"columns": {"type": "array", "items": STR},
                         "rows": {"type": "array", "items": {"type": "array"}}},
                        ("columns", "rows"))),
]
ROUTES += routes_bulk.ROUTES  # POST /runs/bulk
ROUTES += routes_schedules.ROUTES  # /schedules
ROUTES += routes_versions.ROUTES  # /versions, /runs/{id}/source, /runs/{id}/compare/{other}
ROUTES += routes_debug.ROUTES  # GET /runs/{run_id}/code (%durable debug)
ROUTES += routes_forks.ROUTES  # POST /runs/{id}/fork, GET /runs/{id}/forks
WS_PATH = EVENTS_PATH
COMPILED = [(rt, re.compile(rt.regex + "$")) for rt in ROUTES]


def match(method: str, path: str) -> tuple[Route | None, tuple, bool]:
    """The route for ``path`` (relative to the API root); third item: path known."""
    known = False
    if not isinstance(path, str):
        return None, (), False
    for rt, rx in COMPILED:
        m = rx.match(path)
        if m:
            known = True
            if rt.method == method:
                return rt, m.groups(), True
    return None, (), known


def _validated(route: Route, args: tuple, query: dict, body: bytes | None) -> tuple[dict, dict]:
    """The parsed body and query parameters of a request that matches ``route``'s schemas."""
    S.check_path(route.path_params, args)
    params = S.read_query(route.query, query if query is not None else {})
    parsed: dict = {}
    if route.body is not None:  # a body sent to a route that takes none is ignored
        if body:
            parsed = S.parse_body(body)
        S.validate(route.body, parsed)
    return parsed, params


async def dispatch(engine: Engine, method: str, path: str, query: dict[str, str],
                   body: bytes | None, user: str | None,
                   authorize: Callable[[str], Awaitable[None]] | None = None) -> tuple[int, Any]:
    """Answer one API request; errors become JSON with a fitting status code.

    ``user`` is the identity the host authenticated. ``authorize(action)`` raises
    `Forbidden` when the caller may not do ``action``; the route's own action is checked
    here, then the request is validated against the route's schemas, before its handler
    runs (hosts without permissions pass None)."""
    route, args, known = match(method, path)
    if route is None:
        if known:
            return 405, {"error": f"{method} is not allowed on {path}", "code": "bad_method"}
        return 404, {"error": f"no API route {str(path)[:200]}; see /{PREFIX}/openapi.json",
                     "code": "no_route"}
    if body and len(body) > MAX_BODY:
        return 413, {"error": f"request body is {len(body)} bytes, over {MAX_BODY}",
                     "code": "too_large"}
    check = authorize or allow_all
    try:
        await check(route.action)
        parsed, params = _validated(route, args, query, body)
        return await route.handler(Request(engine, args, query, parsed, user, check, params))
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
    except FormInvalid as exc:
        return 422, exc.answer()
    except BadRequest as exc:
        return 400, exc.answer()
    except ValueError as exc:
        return 422, {"error": str(exc), "code": "invalid"}


# ---------------------------------------------------------------------- OpenAPI

_ERROR = S.obj({"error": {"type": "string"}, "code": {"type": "string"},
                "field": {"type": "string", "description": "the field at fault (400; 422 "
                          "invalid_form: the approval form's field)"},
                "rule": {"type": "string", "description": "the schema rule it broke (400, "
                         "422 invalid_form)"}},
               required=("error",), closed=False)
_ERRORS = {
    "400": "The body or a parameter does not match its schema: `field` and `rule` say where",
    "403": "Not authenticated, or not allowed this route's action",
    "404": "No such run, or no such route",
    "409": "A conflict: a wait already resolved, an event already sent, a run finished, or "
           "an unknown task hash (code unknown_task)",
    "413": "A payload over the engine's max_payload",
    "422": "Valid in form but refused by the engine (an unknown status, a hash that does not "
           "match the code, SQL that is not one read-only query; code invalid_form: values "
           "that do not match an approval's typed form, `field` names the field)",
    "507": "The store cannot write now (a full disk); reads still work",
}


def _json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def openapi_document() -> dict:
    paths: dict[str, dict] = {}
    for rt in ROUTES:
        params: list[dict] = [
            {"name": n, "in": "path", "required": True, "schema": S.PATH_PARAMS.get(n, S.RUN_ID)}
            for n in rt.path_params]
        params += [{"name": p.name, "in": "query", "required": False, "schema": p.schema,
                    "description": p.description} for p in rt.query]
        ok = {"description": "OK", "content": _json_content(rt.response)}
        responses = {str(rt.status): ok}
        if rt.path == "/runs" and rt.method == "POST":
            responses["200"] = {"description": "An existing run with this idempotency key, "
                                "or the run of the debounce window the trigger joined",
                                "content": _json_content(rt.response)}
        for code, text in _ERRORS.items():
            responses[code] = {"description": text, "content": _json_content(_ERROR)}
        op: dict[str, Any] = {"summary": rt.summary, "operationId": rt.handler.__name__,
                              "x-action": rt.action, "responses": responses}
        if params:
            op["parameters"] = params
        if rt.body is not None:
            required = bool(rt.body.get("required"))
            op["requestBody"] = {"required": required, "content": _json_content(rt.body)}
        paths.setdefault(rt.path, {})[rt.method.lower()] = op
    paths[WS_PATH] = {"get": {
        "summary": "WebSocket: a stream of run events (status, step, wait, log, warning)",
        "operationId": "events_ws", "responses": {"101": {"description": "Switching protocols"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "durable_nb API", "version": __version__,
                 "description": "Requests are validated against these schemas; a 400 names "
                                "the field and the rule."},
        "servers": [{"url": "/" + PREFIX}],
        "components": {"securitySchemes": {"token": {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": "`token <token>`: the engine's token, or the Jupyter server's"}}},
        "security": [{"token": []}],
        "paths": paths,
    }
