"""What a route of the REST API is: the request a handler gets, the route (method, path,
schemas, permission) and the small readers of validated values the handlers share.

``server.api`` lists the routes; the modules beside it that add routes of a feature
(schedules, bulk actions) build theirs from these.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.debounce import debounce_of
from ..core.durations import parse_duration
from ..core.tracecontext import checked_traceparent
from ..engine.engine import Engine
from . import apischema as S
from .apischema import BadRequest, Param

__all__ = ["Request", "Route", "allow_all", "as_float", "as_int", "duration_param", "jsonable",
           "out", "required_b64", "trigger_context", "unb64", "STR", "NUM"]


async def allow_all(action: str) -> None:
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
    authorize: Callable[[str], Awaitable[None]] = allow_all
    # the route's query parameters, read as their schemas say, defaults filled in
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Route:
    method: str
    path: str  # OpenAPI style, e.g. /runs/{run_id}
    summary: str
    handler: Callable[[Request], Awaitable[tuple[int, Any]]]
    # the permission a caller needs: "read", "write", or "execute" (runs code); a handler
    # may ask for more with ``await r.authorize(...)`` (an event with a pickled payload)
    action: str = "read"
    body: dict | None = None  # JSON Schema of the body (None: the route takes none)
    query: tuple[Param, ...] = ()
    response: dict = field(default_factory=lambda: {"type": "object"})
    status: int = 200  # the status of success

    @property
    def regex(self) -> str:
        # a step key may hold "/" (it is the route's last part); other parameters may not
        path = self.path.replace("{step_key}", "(.+)")
        return re.sub(r"\{[a-z_]+\}", r"([^/]+)", path)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"\{([a-z_]+)\}", self.path)


def unb64(body: dict, name: str) -> bytes | None:
    """The bytes of a base64 field the schema has checked (None when absent or null)."""
    value = body.get(name)
    return None if value is None else base64.b64decode(value, validate=True)


def required_b64(body: dict, name: str) -> bytes:
    """The bytes of a base64 field the schema requires (a string, never null)."""
    return base64.b64decode(body[name], validate=True)


def trigger_context(body: dict) -> tuple[Any, str | None]:
    """The checked ``debounce`` and ``traceparent`` of a trigger's body; BadRequest (400)
    for what the schema cannot say: a blank key, an all-zero id, debounce with
    idempotency_key or delay."""
    try:
        debounce = debounce_of(body.get("debounce"))
    except ValueError as exc:
        raise BadRequest(str(exc), field="debounce") from None
    if debounce is not None and (body.get("idempotency_key") is not None
                                 or body.get("delay") is not None):
        raise BadRequest("debounce cannot be combined with idempotency_key or delay: the "
                         "debounce key already picks the run, and its delay sets the start",
                         field="debounce")
    try:
        return debounce, checked_traceparent(body.get("traceparent"))
    except ValueError as exc:
        raise BadRequest(str(exc), field="traceparent") from None


def as_int(value: Any) -> int | None:
    """A validated JSON integer (2.0 is one too) as a Python int."""
    return None if value is None else int(value)


def as_float(value: Any) -> float | None:
    return None if value is None else float(value)



def duration_param(params: dict, name: str) -> float | None:
    """Seconds of a duration query parameter ("1h", "90m", "2d" or seconds; None when
    absent); BadRequest naming it when it does not read as one."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise S.BadRequest(f"query parameter '{name}': {exc}", field=name,
                           rule="format") from None


def jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": len(v)}
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # "nan", "inf": JSON has no such numbers
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return str(v)



# ---------------------------------------------------------------------- responses

def out(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return S.obj(properties, required, closed=False)


STR = {"type": "string"}
NUM = {"type": "number"}
