"""The caller's current OpenTelemetry span as a ``traceparent`` for the runs it triggers.

A run triggered inside a span continues that span's trace when the engine exports spans
(``durable-nb serve --otlp-endpoint``). No OpenTelemetry is imported here: a process that
has a current span has already imported ``opentelemetry.trace``.
"""

from __future__ import annotations

import sys

from ..core.tracecontext import checked_traceparent, format_traceparent


def current_traceparent() -> str | None:
    """The traceparent of the caller's current, valid OpenTelemetry span, or None."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format_traceparent(ctx.trace_id, ctx.span_id, int(ctx.trace_flags) & 0xFF)
    except Exception:  # a broken or foreign tracing setup never stops a trigger
        return None


def trigger_traceparent(given: str | None) -> str | None:
    """The traceparent a trigger sends: the one given (checked), else the current span's."""
    if given is not None:
        try:
            return checked_traceparent(given)
        except ValueError as exc:
            raise ValueError(f"trigger(traceparent=...): {exc}") from None
    return current_traceparent()
