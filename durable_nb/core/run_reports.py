"""What a run reports about itself while it executes, as the worker checks it and the
engine applies it: ``dn.metadata`` (a JSON object of at most ``MAX_METADATA_BYTES``) and
``dn.progress`` ({done, total, text}).

Both sides use these rules: the worker refuses a bad value in the user's code, before
anything is sent; the engine checks again what arrives (a worker of another release, a
peer on Dask) and applies changes to the run's current metadata.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_METADATA_BYTES = 256 * 1024  # the run's metadata as stored JSON (UTF-8)
MAX_KEY_CHARS = 200
MAX_TEXT_CHARS = 500  # a progress text longer than this is cut
CHANGES = ("set", "increment", "append")
PROGRESS_INTERVAL = 0.1  # seconds between two progress messages of a worker (about 10/s)


def fmt_bytes(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


def check_key(key: Any) -> str:
    """A metadata key: a non-empty string of at most ``MAX_KEY_CHARS`` characters."""
    if not isinstance(key, str):
        raise TypeError(f"a metadata key is a string, not {type(key).__name__} ({key!r:.60})")
    if not key:
        raise ValueError("a metadata key cannot be empty")
    if len(key) > MAX_KEY_CHARS:
        raise ValueError(f"a metadata key has at most {MAX_KEY_CHARS} characters; "
                         f"{key[:40]!r}… has {len(key)}")
    return key


def check_json(key: str, value: Any, path: str = "") -> None:
    """Raise TypeError or ValueError, naming the metadata key and where in the value, when
    ``value`` is not plain JSON: str, int, float (finite), bool, None, and lists (tuples)
    and dicts with string keys of those."""
    where = f"metadata {key!r}" + (f" at {path}" if path else "")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}, which JSON cannot hold: use a finite "
                             "number, or None")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_json(key, item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has the key {k!r} ({type(k).__name__}): keys of "
                                "JSON objects are strings")
            check_json(key, item, f"{path}[{k!r}]")
        return
    t = type(value)
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    raise TypeError(f"{where} is of type {name}, which is not JSON: use str, int, float, bool, "
                    "None, lists and dicts with string keys (e.g. convert with float(), "
                    "str() or .tolist())")


def encode(value: Any) -> str:
    """JSON text of a value already checked (``check_json``), as the store keeps it (ASCII:
    its length is its size in bytes)."""
    return json.dumps(value, allow_nan=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(text: str) -> Any:
    """A value the worker sent as JSON text (NaN and Infinity refused)."""
    return json.loads(text, parse_constant=_no_constant)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def apply_change(metadata: dict, change: str, key: str, value: Any) -> dict:
    """The metadata after ``change`` (set, increment by ``value``, append ``value``);
    TypeError when the current value does not allow it. ``metadata`` is not modified."""
    new = dict(metadata)
    if change == "set":
        new[key] = value
    elif change == "increment":
        current = new.get(key, 0)
        if not is_number(current):
            raise TypeError(f"metadata {key!r} holds {_kind(current)}, so it cannot be "
                            "incremented: increment works on numbers (set it to a number "
                            "first, or use another key)")
        if not is_number(value):
            raise TypeError(f"metadata.increment({key!r}, n) takes a number n, "
                            f"not {_kind(value)}")
        total = current + value
        if isinstance(total, float) and not math.isfinite(total):
            raise ValueError(f"metadata {key!r} would be {total}, which JSON cannot hold")
        new[key] = total
    elif change == "append":
        current = new.get(key, [])
        if not isinstance(current, list):
            raise TypeError(f"metadata {key!r} holds {_kind(current)}, so nothing can be "
                            "appended to it: append works on lists (set it to a list first, "
                            "or use another key)")
        new[key] = [*current, value]
    else:
        raise ValueError(f"unknown metadata change {change!r}: one of {', '.join(CHANGES)}")
    return new


def _kind(value: Any) -> str:
    text = json.dumps(value)
    return f"{type(value).__name__} {text[:60]}{'…' if len(text) > 60 else ''}"


def size_error(key: str, size: int) -> str:
    """Why a change that would make the metadata ``size`` bytes is refused."""
    return (f"the metadata of this run would be {fmt_bytes(size)} after this change of "
            f"{key!r}, over the limit of {fmt_bytes(MAX_METADATA_BYTES)}; the change is "
            "refused and the metadata keeps its earlier value. Keep metadata small "
            "(counts, names, short lists) and store larger data in a step's output or a file")


def progress_fields(done: Any, total: Any = None, text: Any = None) -> dict:
    """{done, total, text} checked: done a finite number >= 0, total None or a finite
    number > 0, text None or a string (cut to ``MAX_TEXT_CHARS``). TypeError or
    ValueError say what is wrong."""
    if not is_number(done):
        raise TypeError(f"progress(done, ...) takes a number, not {type(done).__name__}")
    if not math.isfinite(done) or done < 0:
        raise ValueError(f"progress done is {done}: a finite number of 0 or more")
    if total is not None:
        if not is_number(total):
            raise TypeError(f"progress total is a number or None, not {type(total).__name__}")
        if not math.isfinite(total) or total <= 0:
            raise ValueError(f"progress total is {total}: a finite number above 0, or None "
                             "when the total is not known")
    if text is not None and not isinstance(text, str):
        raise TypeError(f"progress text is a string or None, not {type(text).__name__}")
    return {"done": done, "total": total, "text": (text[:MAX_TEXT_CHARS] or None) if text
            else None}
