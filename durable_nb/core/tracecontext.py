"""W3C trace context (``traceparent``): the trace a run's exported spans continue.

A trigger may name the span it was made in (``00-<32 hex trace id>-<16 hex span id>-<2
hex flags>``); the run's span becomes its child in that trace when the engine exports
spans over OTLP (``engine.otlp``). Checked here, alike by the client and the engine.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
TRACEPARENT_PATTERN = "^" + TRACEPARENT.pattern + "$"  # the API schema's


class TraceParent(NamedTuple):
    trace_id: int
    span_id: int
    flags: int


def parse_traceparent(text: str) -> TraceParent:
    """The ids of a traceparent; ValueError when it is not one (version 00, lower-case
    hex, ids not all zeros)."""
    m = TRACEPARENT.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"traceparent must be '00-<32 hex digits>-<16 hex digits>-<2 hex "
                         f"digits>' (W3C trace context, lower case), got {text!r:.80}")
    trace_id, span_id = int(m[1], 16), int(m[2], 16)
    if not trace_id or not span_id:
        raise ValueError(f"traceparent has an all-zero trace or span id: {text!r}")
    return TraceParent(trace_id, span_id, int(m[3], 16))


def checked_traceparent(value: Any) -> str | None:
    """``value`` if it is a valid traceparent (None or empty: none); ValueError otherwise."""
    if value is None or value == "":
        return None
    parse_traceparent(value)
    return str(value)


def format_traceparent(trace_id: int, span_id: int, flags: int = 1) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
