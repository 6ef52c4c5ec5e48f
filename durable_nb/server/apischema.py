"""The API's request schemas: one definition for the OpenAPI document and for validation.

Every route carries the JSON Schema of its body and of its query and path parameters
(`server.api.ROUTES`); `server.api.dispatch` checks a request against them (`check_path`, `read_query`,
`parse_body`, `validate`, the last with fastjsonschema) before its handler runs, and
`server.api.openapi_document` publishes the same schemas. The bounds are those of the store:
integers fit their DuckDB column, numbers are finite, durations at most ten years, strings
valid Unicode of bounded length, so nothing the API accepts can fail to be stored.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
from dataclasses import dataclass
from typing import Any

from ..core.debounce import MAX_DELAY as MAX_DEBOUNCE
from ..core.debounce import MODES as DEBOUNCE_MODES
from ..core.tracecontext import TRACEPARENT_PATTERN
from ..core.versions import MAX_SOURCE
from ..store.readonly_sql import MAX_ROWS

INT32_MAX = 2**31 - 1  # a DuckDB INTEGER column
MAX_SECONDS = 10 * 365 * 86400  # delays, timeouts and durations: ten years at most
MAX_DEPTH = 64  # JSON nesting of a request body
MAX_INT_DIGITS = 40  # longer integer literals are refused while parsing
MAX_SQL_ROWS = MAX_ROWS

_HEX64 = "^[0-9a-f]{64}$"
_INTEGER = re.compile(rf"[+-]?[0-9]{{1,{MAX_INT_DIGITS}}}")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f]*$"  # names shown in tables and logs


class BadRequest(ValueError):
    """A malformed request body or parameter (HTTP 400); names the field and the rule."""

    def __init__(self, message: str, field: str | None = None, rule: str | None = None):
        super().__init__(message)
        self.field = field
        self.rule = rule

    def answer(self) -> dict:
        out = {"error": str(self), "code": "bad_request"}
        if self.field is not None:
            out["field"] = self.field
        if self.rule is not None:
            out["rule"] = self.rule
        return out


# ---------------------------------------------------------------------- schema pieces

def string(max_length: int, min_length: int = 0, **extra: Any) -> dict:
    return {"type": "string", "minLength": min_length, "maxLength": max_length, **extra}


def nullable(schema: dict) -> dict:
    """``schema`` or null (JSON Schema 2020-12 spelling, as OpenAPI 3.1 uses)."""
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def obj(properties: dict, required: tuple[str, ...] = (), closed: bool = True) -> dict:
    out: dict = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


B64 = {"type": "string", "format": "byte", "contentEncoding": "base64",
       "maxLength": 1 << 30, "description": "base64 of the bytes (a cloudpickle)"}
SECONDS = {"type": "number", "minimum": 0, "maximum": MAX_SECONDS,
           "description": f"seconds, at most {MAX_SECONDS} (ten years)"}
POSITIVE_SECONDS = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS,
                    "description": f"seconds, more than 0 and at most {MAX_SECONDS}"}
LIMIT = {"type": "integer", "minimum": 1, "maximum": INT32_MAX,
         "description": "a positive integer (a DuckDB INTEGER)"}
TASK_HASH = {"type": "string", "pattern": _HEX64,
             "description": "sha256 of the task's code, id and options (64 hex digits)"}
NAME = string(200, 1, pattern=_NO_CONTROL)
KEY = string(1000)
TAGS = {"type": "array", "maxItems": 100, "items": string(200),
        "description": "at most 100 tags of at most 200 characters"}

RETRY = obj({
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": 1000},
    "factor": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
    "min_timeout": SECONDS,
    "max_timeout": SECONDS,
    "randomize": {"type": "boolean"},
})
RATE = obj({"limit": LIMIT, "per": {"type": "number", "exclusiveMinimum": 0,
                                     "maximum": 366 * 86400, "description": "seconds"}},
           required=("limit", "per"))
RATE["description"] = "at most `limit` attempt starts in any window of `per` seconds"
QUEUE = obj({"name": NAME, "concurrency_limit": nullable(LIMIT),
             "rate_limit": nullable(RATE)}, required=("name",))
ORIGIN = obj({
    "notebook": nullable(string(1024)),
    "cell_id": nullable(string(1024)),
    "execution_count": nullable({"type": "integer", "minimum": 0, "maximum": INT32_MAX}),
})
ORIGIN["description"] = ("the notebook cell that started the run: its notebook's path, "
                         "cell id and execution count")
TASK_OPTIONS = obj({
    "retry": nullable(RETRY),
    "queue": nullable(QUEUE),
    "max_duration": nullable(SECONDS),
    "kill_after": nullable(SECONDS),
    "kind": {"type": "string", "enum": ["task", "cell"]},
    "resources": {"type": "object", "maxProperties": 32,
                  "propertyNames": {"minLength": 1, "maxLength": 100},
                  "additionalProperties": {"type": "number", "exclusiveMinimum": 0,
                                           "maximum": 1e15},
                  "description": "Dask worker resources each attempt needs, e.g. {\"GPU\": 1}"},
    "executor": {"type": "string", "enum": ["local", "dask"],
                 "description": "local: always on the engine's own worker processes"},
    "on_divergence": {"type": "string", "enum": ["raise", "warn"],
                      "description": "a replay divergence (a re-executed step call that "
                      "differs from the record) fails the run (raise) or only warns"},
    "hooks": {**obj({k: TASK_HASH for k in ("on_success", "on_failure", "on_cancel")}),
              "description": "lifecycle hooks: the registered task whose run starts when a "
              "run of this task ends (on_success: COMPLETED; on_failure: FAILED, CRASHED, "
              "TIMED_OUT, EXPIRED; on_cancel: CANCELED)"},
    "source_hash": {**string(64, 64, pattern=_HEX64),
                    "description": "a %%durable cell's version: the sha256 of its text"},
    "lineage": {**string(2100, 1),
                "description": "whose versions an unnamed %%durable cell is: "
                "<notebook>#<cell id>"},
})

UPLOAD_MODULE = obj({
    "filename": string(103, 4, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}\.(py|zip)$"),
    "data_b64": B64,
}, required=("filename", "data_b64"))
PUT_TASK = obj({
    "task_id": string(1000, 1),
    "code_b64": B64,
    "sys_path": {"type": "array", "maxItems": 1000, "items": string(4096)},
    "options": TASK_OPTIONS,
    "source": {**nullable(string(MAX_SOURCE)),
               "description": "the function's (or cell's) source text, kept for diffs "
               "between versions; not part of the hash"},
}, required=("task_id", "code_b64"))
DEBOUNCE = obj({
    "key": NAME,
    "delay": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DEBOUNCE,
              "description": "seconds, more than 0 and at most a day"},
    "mode": {"type": "string", "enum": list(DEBOUNCE_MODES), "default": "trailing"},
}, required=("key", "delay"))
DEBOUNCE["description"] = (
    "collapse triggers of this task with the same key into one run: trailing (the default) "
    "starts it `delay` seconds after the latest trigger, with the latest payload; leading "
    "starts it at once and folds in the triggers within `delay` of the latest one. Not "
    "with idempotency_key or delay")
TRACEPARENT = string(55, 55, pattern=TRACEPARENT_PATTERN)
TRACEPARENT["description"] = ("W3C trace context the run's exported spans continue: "
                              "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>")
POST_RUN = obj({
    "task_hash": string(200, 1),  # an unknown hash answers 409: the client registers it
    "payload_b64": B64,
    "idempotency_key": nullable(string(1000)),
    "delay": nullable(SECONDS),
    "ttl": nullable(POSITIVE_SECONDS),
    "tags": TAGS,
    "concurrency_key": nullable(string(1000)),
    "origin": {**ORIGIN, "type": ["object", "null"]},
    "priority": nullable({"type": "integer", "minimum": -1000, "maximum": 1000,
                          "description": "higher starts first within its queue; each level "
                          "counts as a minute of waiting (aging), so none starves"}),
    "debounce": {**DEBOUNCE, "type": ["object", "null"]},
    "traceparent": nullable(TRACEPARENT),
}, required=("task_hash", "payload_b64"))
DECIDE = obj({
    "wait": nullable(string(1000)),
    "comment": nullable(string(10_000)),
    "by": nullable(string(200)),
    "values": {"type": ["object", "null"], "maxProperties": 1000,
               "description": "field -> value of the approval's typed form; checked against "
               "its JSON schema (the wait's `form`), 422 invalid_form names the field"},
})
EVENT = obj({
    "data_b64": nullable(B64),
    "data": {"description": "any JSON value (stored pickled); ignored when data_b64 is given"},
})
PUT_QUEUE = obj({"concurrency_limit": nullable(LIMIT), "rate_limit": nullable(RATE)},
                required=("concurrency_limit",))
SQL = obj({
    "query": string(100_000, 1),
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_SQL_ROWS, "default": 10_000},
}, required=("query",))
EMPTY = obj({})
CHILDREN_TEXT = ("cancel (default): the run's unfinished descendants are canceled too; "
                 "abandon: they go on running")
CHILDREN = {"type": "string", "enum": ["cancel", "abandon"], "description": CHILDREN_TEXT}
CANCEL = obj({"children": CHILDREN})


@dataclass(frozen=True)
class Param:
    """A query parameter: its schema says how the text is read (integer, number, boolean)."""

    name: str
    schema: dict
    description: str = ""


RUN_ID = string(200, 1)
PATH_PARAMS = {"run_id": RUN_ID, "hash": TASK_HASH, "name": NAME,
               "key": string(1000, 1, pattern=_NO_CONTROL),
               "step_key": string(3000, 1, pattern=_NO_CONTROL),
               "schedule_id": string(1000, 1, pattern=_NO_CONTROL)}
VALUES = Param("values", {"type": "boolean", "default": False},
               "include the values (base64 pickles)")
STATUS_FILTER = Param("status", string(1000), "one status or several, comma-separated")
TASK_FILTER = Param("task", string(1000), "a task id")
SEARCH = Param("q", string(200), "text in the run id, task or cell name, tags or notebook "
               "(any case)")
TAGS_FILTER = Param("tags", string(2000), "tags joined by commas: runs that have them all")
SINCE_FILTER = Param("since", string(50, 1), "runs created within this long before now: "
                     "a duration such as 1h, 30m, 2d, or seconds")


def int_param(name: str, lo: int, hi: int, default: int, description: str) -> Param:
    return Param(name, {"type": "integer", "minimum": lo, "maximum": hi, "default": default},
                 description)


# ---------------------------------------------------------------------- parsing bodies

def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send finite numbers only")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range; send finite numbers only")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits is out of range")
    return int(text)


def parse_body(raw: bytes) -> dict:
    """The JSON object of a request body; BadRequest when it is not UTF-8 JSON, holds
    NaN or Infinity, is nested more than MAX_DEPTH levels, or holds text that is not
    valid Unicode (an unpaired surrogate such as \\ud800 cannot be stored)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not UTF-8: byte 0x{raw[exc.start]:02x} at offset "
                         f"{exc.start}; send JSON encoded as UTF-8", rule="encoding") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                           parse_int=_bounded_int)
    except RecursionError:
        raise BadRequest(f"request body is nested too deeply (more than {MAX_DEPTH} levels)",
                         rule="depth") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {str(exc)[:300]}",
                         rule="json") from None
    if not isinstance(value, dict):
        raise BadRequest(f"request body must be a JSON object, not {_json_type(value)}",
                         rule="type")
    _check_tree(value)
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _bad_text(s: str) -> bool:
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _check_tree(root: Any) -> None:
    """Depth and text of a parsed body, without recursion (a deep body stays an error)."""
    stack: list[tuple[Any, int, tuple]] = [(root, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"request body is nested too deeply (more than {MAX_DEPTH} "
                             f"levels, at {_where(path)})", field=_dotted(path), rule="depth")
        if isinstance(value, dict):
            for k, v in value.items():
                if _bad_text(k):
                    raise _unicode_error(path + (k,))
                if isinstance(v, (dict, list)):
                    stack.append((v, depth + 1, path + (k,)))
                elif isinstance(v, str) and _bad_text(v):
                    raise _unicode_error(path + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if isinstance(v, (dict, list)):
                    stack.append((v, depth + 1, path + (i,)))
                elif isinstance(v, str) and _bad_text(v):
                    raise _unicode_error(path + (i,))


def _unicode_error(path: tuple) -> BadRequest:
    safe = tuple(p.encode("utf-8", "backslashreplace").decode() if isinstance(p, str) else p
                 for p in path)
    return BadRequest(f"{_where(safe)} is not valid Unicode text (it holds an unpaired "
                      "surrogate such as \\ud800); send text that encodes as UTF-8",
                      field=_dotted(safe), rule="unicode")


def _dotted(path: tuple | list) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _where(path: tuple | list, kind: str = "field") -> str:
    return f"{kind} '{_dotted(path)}'" if path else "the request body"


# ---------------------------------------------------------------------- validation

def _is_base64(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


_lock = threading.Lock()
_validators: dict[int, tuple] = {}


def _without_required(schema: Any) -> Any:
    """``schema`` with every ``required`` removed: checks only the values that are there."""
    if isinstance(schema, dict):
        return {k: _without_required(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [_without_required(v) for v in schema]
    return schema


def _validators_for(schema: dict) -> tuple:
    """Compiled validators of ``schema``: (values present, whole schema), kept for the
    process (fastjsonschema generates Python code once per schema)."""
    key = id(schema)
    v = _validators.get(key)
    if v is None:
        import fastjsonschema

        formats = {"byte": _is_base64}
        with _lock:
            v = _validators.get(key)
            if v is None:
                v = _validators[key] = (
                    fastjsonschema.compile(_without_required(schema), formats=formats),
                    fastjsonschema.compile(schema, formats=formats), schema)
    return v


def validate(schema: dict, value: Any, kind: str = "field", prefix: tuple = ()) -> None:
    """BadRequest naming the field and the rule when ``value`` does not match ``schema``:
    a value that is there and wrong first, then a field that is missing."""
    present, whole, _ = _validators_for(schema)
    wrong, missing = _first_error(present, value, kind, prefix), None
    if wrong is None or wrong.rule != "required":
        missing = _first_error(whole, value, kind, prefix)
    if wrong is None:
        wrong, missing = missing, None
    if wrong is None:
        return
    if missing is not None and missing.rule == "required":
        wrong.args = (f"{wrong}; {missing}",)
    raise wrong


def _first_error(check: Any, value: Any, kind: str, prefix: tuple) -> BadRequest | None:
    import fastjsonschema

    try:
        check(value)
    except fastjsonschema.JsonSchemaValueException as e:
        return _explain(e, kind, prefix)
    return None


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else json.dumps(value[:60])
    return text if len(text) <= 80 else text[:77] + "..."


_TYPES = {"integer": "an integer", "number": "a number", "string": "a string",
          "boolean": "a boolean", "array": "an array", "object": "an object", "null": "null"}


# messages of the rules that compare a value with one bound ({v}); {shown} is the value,
# {n} its length
_BOUNDS = {
    "minimum": "must be at least {v}, not {shown}",
    "maximum": "must be at most {v}, not {shown}",
    "exclusiveMinimum": "must be greater than {v}, not {shown}",
    "exclusiveMaximum": "must be less than {v}, not {shown}",
    "minLength": "must have at least {v} characters",
    "maxLength": "must have at most {v} characters, not {n}",
    "maxItems": "must have at most {v} items, not {n}",
    "pattern": "must match {v}, not {shown}",
}


def _size(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def _path(e: Any) -> list:
    """The path of a fastjsonschema error below the value (its name is like data.a[0])."""
    out: list = []
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", e.name[len("data"):]):
        out.append(part[0] if part[0] else int(part[1]))
    return out


def _explain(e: Any, kind: str, prefix: tuple) -> BadRequest:
    path = list(prefix) + _path(e)
    rule, v, inst = e.rule, e.rule_definition, e.value
    if rule == "required":
        missing = [p for p in v if isinstance(inst, dict) and p not in inst] or ["?"]
        path.append(missing[0])
        more = ", ".join(f"'{m}'" for m in missing[1:])
        text = "is required" + (f" (and so is {more})" if more else "")
    elif rule == "additionalProperties":
        known = sorted((e.definition or {}).get("properties", {}))
        extra = sorted(str(k) for k in inst if k not in known)[:1] or ["?"]
        path.append(extra[0])
        text = f"is not a known field (allowed: {', '.join(known) or 'none'})"
    elif rule == "type":
        types: list[str] = v if isinstance(v, list) else [v]  # JSON Schema type names
        text = f"must be {' or '.join(_TYPES.get(t, t) for t in types)}, not {_show(inst)}"
    elif rule in _BOUNDS:
        text = _BOUNDS[rule].format(v=v, shown=_show(inst), n=_size(inst))
    elif rule == "enum":
        text = f"must be one of {', '.join(_show(x) for x in v)}, not {_show(inst)}"
    elif rule == "format" and v == "byte":
        text = "must be base64 text (RFC 4648, with padding)"
    else:
        text = f"is invalid ({rule})"
    where = _where(path, kind)
    return BadRequest(f"{where} {text}", field=_dotted(path) or None, rule=rule)


def read_query(params: tuple[Param, ...], query: dict) -> dict[str, Any]:
    """The typed values of the known query parameters (defaults filled in); unknown
    parameters are ignored. BadRequest when a value does not read as its type or is out
    of range."""
    if not isinstance(query, dict):
        raise BadRequest("the query must map parameter names to text", rule="type")
    out: dict[str, Any] = {}
    for p in params:
        raw = query.get(p.name)
        if raw is None:
            if "default" in p.schema:
                out[p.name] = p.schema["default"]
            continue
        where = f"query parameter '{p.name}'"
        if not isinstance(raw, str) or _bad_text(raw):
            raise BadRequest(f"{where} must be text", field=p.name, rule="type")
        value = _read(raw, p.schema["type"])
        if value is None:
            rng = ""
            if "minimum" in p.schema and "maximum" in p.schema:
                rng = f" between {p.schema['minimum']} and {p.schema['maximum']}"
            raise BadRequest(f"{where} must be {_TYPES.get(p.schema['type'])}{rng}, "
                             f"not {_show(raw)}", field=p.name, rule="type")
        validate(p.schema, value, "query parameter", (p.name,))
        out[p.name] = value
    return out


def _read(raw: str, kind: str) -> Any:
    text = raw.strip()
    if kind == "integer":
        if not _INTEGER.fullmatch(text):
            return None
        return int(text)
    if kind == "number":
        if len(text) > 100 or not _NUMBER.fullmatch(text):
            return None
        value = float(text)
        return value if math.isfinite(value) else None
    if kind == "boolean":
        return {"1": True, "true": True, "0": False, "false": False}.get(text.lower())
    return raw


def check_path(names: list[str], values: tuple) -> None:
    """BadRequest when a path parameter is not what its route accepts."""
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, str) or _bad_text(value):
            raise BadRequest(f"path parameter '{name}' must be text", field=name, rule="type")
        validate(PATH_PARAMS.get(name, RUN_ID), value, "path parameter", (name,))
