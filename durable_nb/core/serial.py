"""Serialization at the durability boundary: cloudpickle, with errors that name the value."""

from __future__ import annotations

import base64
import hashlib
import pickle
from typing import Any

import cloudpickle

from .errors import NotPicklable, PayloadTooLarge

DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024


def fmt_size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def type_name(value: Any) -> str:
    """``value``'s class as errors and previews name it: ``int``, ``pandas.core.frame.DataFrame``."""
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def dumps(value: Any, what: str, limit: int | None = None) -> bytes:
    """Pickle ``value``; ``what`` names it in errors (e.g. "return value of task 'x'")."""
    try:
        data = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # pickling raises many types
        raise NotPicklable(
            f"{what} cannot be stored: {type_name(value)} — {exc}. "
            "Return or pass plain data (numbers, strings, lists, dicts, dataclasses, arrays), "
            "or re-create the object where it is used."
        ) from None
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge(
            f"{what} is {fmt_size(len(data))}, over the limit of {fmt_size(limit)} "
            "(max_payload_bytes). Store large data in a file and pass its path, "
            "or raise the limit with `durable-nb serve --max-payload-mb N`."
        )
    return data


def loads(data: bytes | None) -> Any:
    return None if data is None else pickle.loads(data)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def task_hash(code: bytes, task_id: str, options: dict) -> str:
    """A task version's identity: its code, id and declared options."""
    import json

    return digest(code + task_id.encode() + json.dumps(options, sort_keys=True).encode())


def b64(data: bytes | None) -> str | None:
    """Base64 text of ``data`` for JSON bodies (None stays None)."""
    return None if data is None else base64.b64encode(data).decode()


def clean_text(text: str) -> str:
    """``text`` without lone surrogates (which no UTF-8 store can hold), each made '?'."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")
