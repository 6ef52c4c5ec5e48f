"""Finished runs as OpenTelemetry spans: read from the store, built with the SDK.

One span per run, and one per row of the store's ``spans`` view that belongs to it
(attempts, step tries, waits, retry delays, checkpoints, warnings), with the recorded
start and end and the view's parent links: run -> attempts -> steps, checkpoints and
warnings; waits and retry delays under the run. Status is ERROR for failed outcomes.

Ids are deterministic, so a run exported again (after a crash) keeps them: each span's id
is a hash of its id in the view, and a run's trace is its root run's, that is the run
itself, its parent run's (``parent_run_id``; a hook run: the run it is for), or the trace
of the ``traceparent`` it was triggered with, under whose span it then sits.

Loaded only when the engine exports (``otlp``); runs in the exporter's thread.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from ..core.status import TERMINAL, sql_list
from ..core.tracecontext import parse_traceparent
from ..core.version import __version__
from ..store.store import Store

BATCH_RUNS = 100  # finished runs per export request
MAX_SPANS = 10_000  # spans of one run at most (its earliest); the run span counts the rest
MAX_DEPTH = 64  # parent links followed to find a run's root
MAX_CACHED = 10_000  # run id -> trace id entries kept
ERROR_STATES = frozenset({"FAILED", "CRASHED", "TIMED_OUT", "ERRORED", "timed_out"})
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
A = "durable_nb."  # the prefix of every attribute of ours
Cursor = tuple[float, str]  # (finished_at, run id) of the last run exported
RENAMED = {("step", "key"): "step_key", ("step", "attempt"): "step_attempt",
           ("step", "error"): "error_type", ("wait", "key"): "wait_key",
           ("wait", "kind"): "wait_kind", ("retry_delay", "key"): "wait_key",
           ("retry_delay", "kind"): "wait_kind"}
RUN_FIELDS = ("queue", "attempts", "priority", "concurrency_key", "idempotency_key",
              "parent_run_id", "replay_of", "schedule_id", "schedule_tick", "hook_of",
              "hook_kind", "debounce_key", "generation")


def id_of(text: str, nbytes: int) -> int:
    """A span id (8 bytes) or trace id (16 bytes) made from ``text``, never zero."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:nbytes], "big") or 1


def _ns(t: float) -> int:
    return int(round(t * 1e9))


def _value(v: Any) -> Any:
    """An attribute value OTLP carries (None: left out)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    return json.dumps(v, default=str)


def _attrs(values: dict[str, Any]) -> dict[str, Any]:
    return {k: val for k, v in values.items() if (val := _value(v)) is not None}


def _status(state: Any, description: str | None = None) -> Status:
    if state in ERROR_STATES:
        return Status(StatusCode.ERROR, description or str(state))
    return Status(StatusCode.UNSET)


@dataclass
class Batch:
    """The spans of the next finished runs, and the cursor after the last of them."""

    spans: list[ReadableSpan]
    runs: int
    cursor: Cursor
    full: bool  # as many runs as a batch takes: more may be waiting


class SpanReader:
    """Reads the runs finished after a cursor and builds their spans (in a thread)."""

    def __init__(self, store: Store, resource: Resource):
        self.store = store
        self.resource = resource
        self.scope = InstrumentationScope("durable_nb", __version__)
        self._traces: dict[str, int] = {}

    def batch(self, cursor: Cursor) -> Batch:
        """The next ``BATCH_RUNS`` runs finished after ``cursor``, in the order they
        finished, with all their spans."""
        at, last = cursor
        runs = self.store.query(
            f"SELECT * EXCLUDE (payload, output) FROM runs WHERE finished_at IS NOT NULL "
            f"AND status IN ({sql_list(TERMINAL)}) AND (finished_at > ? OR "
            f"(finished_at = ? AND id > ?)) ORDER BY finished_at, id LIMIT ?",
            [at, at, last, BATCH_RUNS])
        if not runs:
            return Batch([], 0, cursor, False)
        ids = [r["id"] for r in runs]
        rows: dict[str, list[dict]] = defaultdict(list)
        for r in self.store.query(
                "SELECT * FROM spans WHERE kind <> 'run' AND run_id IN "
                "(SELECT unnest(?::VARCHAR[])) ORDER BY start_at NULLS LAST, span_id", [ids]):
            rows[r["run_id"]].append(r)
        errors = {(r["run_id"], r["number"]): r for r in self.store.query(
            "SELECT run_id, number, error_type, error_message FROM attempts WHERE "
            "error_type IS NOT NULL AND run_id IN (SELECT unnest(?::VARCHAR[]))", [ids])}
        spans: list[ReadableSpan] = []
        for run in runs:
            spans.extend(self._run_spans(run, rows[run["id"]], errors))
        end = runs[-1]
        return Batch(spans, len(runs), (end["finished_at"], end["id"]),
                     len(runs) == BATCH_RUNS)

    # ------------------------------------------------------------------ traces

    def _own_trace(self, run: dict) -> int:
        """The trace of a run without a parent: its traceparent's, else its own."""
        tp = self._traceparent(run)
        return tp.trace_id if tp is not None else id_of("trace:" + run["id"], 16)

    @staticmethod
    def _traceparent(run: dict) -> Any:
        try:
            return parse_traceparent(run["traceparent"]) if run.get("traceparent") else None
        except ValueError:
            return None

    def _root_trace(self, run_id: str) -> int:
        """The trace of ``run_id``'s root run (its ancestors read once, then cached)."""
        chain, current, trace = [], run_id, None
        for _ in range(MAX_DEPTH):
            if current in self._traces:
                trace = self._traces[current]
                break
            found = self.store.query("SELECT id, parent_run_id, hook_of, traceparent FROM "
                                     "runs WHERE id = ?", [current], sync=False)
            chain.append(current)
            up = found[0]["parent_run_id"] or found[0]["hook_of"] if found else None
            if not up:
                trace = self._own_trace(found[0] if found else {"id": current})
                break
            current = up
        if trace is None:
            trace = id_of("trace:" + current, 16)
        if len(self._traces) > MAX_CACHED:
            self._traces.clear()
        for r in chain:
            self._traces[r] = trace
        return trace

    def _trace_of(self, run: dict) -> tuple[int, SpanContext | None]:
        """The run's trace and the span its run span is a child of (None: a root)."""
        parent = run.get("parent_run_id") or run.get("hook_of")
        if parent:
            trace = self._root_trace(parent)
            return trace, SpanContext(trace, id_of(parent, 8), False, SAMPLED)
        tp = self._traceparent(run)
        if tp is not None:
            return tp.trace_id, SpanContext(tp.trace_id, tp.span_id, True, TraceFlags(tp.flags))
        return self._own_trace(run), None

    # ------------------------------------------------------------------ spans

    def _span(self, name: str, trace: int, span_key: str, parent: SpanContext | None,
              start: float, end: float | None, status: Status,
              attributes: dict[str, Any]) -> ReadableSpan:
        end = max(end if end is not None else start, start)
        return ReadableSpan(
            name=name, context=SpanContext(trace, id_of(span_key, 8), False, SAMPLED),
            parent=parent, resource=self.resource, attributes=_attrs(attributes),
            kind=SpanKind.INTERNAL, status=status, start_time=_ns(start), end_time=_ns(end),
            instrumentation_scope=self.scope)

    def _run_spans(self, run: dict, rows: list[dict], errors: dict) -> list[ReadableSpan]:
        trace, parent = self._trace_of(run)
        rid = run["id"]
        kept = rows[:MAX_SPANS]
        out = [self._run_span(run, trace, parent, len(rows) - len(kept))]
        known = {rid} | {r["span_id"] for r in kept}
        for r in kept:
            parent_key = r["parent_id"] if r["parent_id"] in known else rid
            out.append(self._child_span(run, r, trace, parent_key, errors))
        return out

    def _run_span(self, run: dict, trace: int, parent: SpanContext | None,
                  dropped: int) -> ReadableSpan:
        error = json.loads(run["error"]) if run.get("error") else None
        origin = json.loads(run["origin"]) if run.get("origin") else {}
        attrs: dict[str, Any] = {
            A + "run_id": run["id"], A + "task_id": run["task_id"], A + "kind": "run",
            A + "run_kind": run.get("kind"), A + "status": run["status"],
            A + "tags": list(run.get("tags") or []), A + "started_at": run.get("started_at"),
            A + "notebook": origin.get("notebook"),
            **{A + k: run.get(k) for k in RUN_FIELDS},
        }
        if error:
            attrs["error.type"] = error.get("type")
        if dropped:
            attrs[A + "spans_dropped"] = dropped
        why = f"{error.get('type')}: {error.get('message')}" if error else None
        return self._span(run["task_id"], trace, run["id"], parent, run["created_at"],
                          run["finished_at"], _status(run["status"], why), attrs)

    def _child_span(self, run: dict, r: dict, trace: int, parent_key: str,
                    errors: dict) -> ReadableSpan:
        kind = r["kind"]
        attrs: dict[str, Any] = {A + "run_id": run["id"], A + "task_id": run["task_id"],
                                 A + "kind": kind, A + "status": r["status"]}
        for k, v in (json.loads(r["attributes"]) if r["attributes"] else {}).items():
            attrs[A + RENAMED.get((kind, k), k)] = v
        why = None
        if kind == "attempt":
            number = int(r["span_id"].rsplit("/a", 1)[1])
            attrs[A + "attempt"] = number
            err = errors.get((run["id"], number))
            if err is not None:
                attrs["error.type"] = err["error_type"]
                why = f"{err['error_type']}: {err['error_message']}"
        elif attrs.get(A + "error_type"):
            attrs["error.type"] = attrs[A + "error_type"]
            why = str(attrs[A + "error_type"])
        parent = SpanContext(trace, id_of(parent_key, 8), False, SAMPLED)
        start = r["start_at"] if r["start_at"] is not None else run["created_at"]
        end = r["end_at"] if r["end_at"] is not None else run["finished_at"]
        return self._span(r["name"], trace, r["span_id"], parent, start, end,
                          _status(r["status"], why), attrs)
