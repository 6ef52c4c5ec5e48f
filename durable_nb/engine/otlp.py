"""Export of runs as OpenTelemetry spans over OTLP/HTTP (the ``otlp_endpoint`` setting).

Loaded only when the endpoint is set, so the engine imports no OpenTelemetry otherwise.
When a run finishes (a run event of a terminal status) the exporter wakes; in its own
thread it reads the runs finished since its cursor with their spans
(``otlp_spans.SpanReader``) and sends them with the SDK's ``OTLPSpanExporter``
(HTTP/protobuf). The cursor, (finished_at, run id) of the last run sent, is journaled in
``meta`` after each successful export, so a restart sends the runs that finished while the
receiver was down or before a crash, and none twice in the normal case (a crash between a
send and the journaling of its cursor sends that batch again, with the same ids).

A failed export is logged once (until an export succeeds again), then retried with a
growing pause; it never touches a run. The first start with an endpoint exports runs that
finish from then on, not the history before it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExportResult

from ..core.status import TERMINAL
from ..core.version import __version__
from ..store.records import Upsert
from .otlp_spans import Batch, Cursor, SpanReader
from .state import EngineState

log = logging.getLogger("durable_nb")
META_KEY = "otlp_cursor"
THREAD = "durable-otlp"
EXPORT_TIMEOUT = 5.0  # seconds one export request may take, its own retries included
GATHER = 0.2  # seconds a wake waits for more runs to finish, so they go in one request
RETRY_MIN, RETRY_MAX = 1.0, 30.0  # the pause after a failed export, doubling
SDK_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of an endpoint: ``/v1/traces`` below it, as
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` means it, unless it already ends so."""
    parsed = urllib.parse.urlparse(endpoint.strip())
    path = parsed.path.rstrip("/")
    if not path.endswith("/v1/traces"):
        path += "/v1/traces"
    return urllib.parse.urlunparse(parsed._replace(path=path))


class _Quiet(logging.Filter):
    """Keeps the SDK exporter's own messages out of the log when they come from an
    exporter's thread (the exporter says once what failed), and remembers the first one
    of each export (the most telling: the connection error) as the reason. One filter for
    the process, installed once."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[str, str] = {}  # thread name prefix -> its export's first message

    def filter(self, record: logging.LogRecord) -> bool:
        name = threading.current_thread().name
        if not name.startswith(THREAD):
            return True
        self.first.setdefault(name.rsplit("_", 1)[0], record.getMessage()[:300])
        return False


_QUIET = _Quiet()
logging.getLogger(SDK_LOGGER).addFilter(_QUIET)


class OtlpExporter:
    """Sends the spans of finished runs to an OTLP/HTTP endpoint, in order, at least once."""

    def __init__(self, state: EngineState, endpoint: str):
        self.s = state
        self.url = traces_url(endpoint)
        resource = Resource.create({
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or "durable-nb",
            "service.version": __version__, "durable_nb.db": str(state.config.db_path)})
        self.reader = SpanReader(state.store, resource)
        self.sdk = OTLPSpanExporter(endpoint=self.url, timeout=EXPORT_TIMEOUT)
        self.cursor: Cursor | None = None
        self.exported = 0  # runs sent since start
        self.failing: str | None = None  # why the last export failed, until one succeeds
        self._prefix = f"{THREAD}-{id(self):x}"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=self._prefix)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._reading: asyncio.Future | None = None
        self._unsubscribe: Any = None

    def start(self) -> None:
        self._unsubscribe = self.s.subscribe(self._on_event)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop exporting (what is left goes at the next start); waits for a read of the
        store in flight, never for a send."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._reading is not None:
            await asyncio.gather(self._reading, return_exceptions=True)
        self.sdk.shutdown()  # a send in flight stops retrying
        self._pool.shutdown(wait=False, cancel_futures=True)
        _QUIET.first.pop(self._prefix, None)

    def _on_event(self, event: dict) -> None:
        if event.get("type") == "run" and event.get("status") in TERMINAL:
            self._wake.set()

    def stats(self) -> dict:
        return {"endpoint": self.url, "exported_runs": self.exported, "failing": self.failing}

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        pause = RETRY_MIN
        while True:
            try:
                if self.cursor is None:
                    self.cursor, stored = await self._in_thread(self._load_cursor)
                    if not stored:
                        self._save_cursor()
                more = await self._export_once()
            except Exception as exc:  # the store, the network, the SDK: retried later
                self._failed(exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX)
                continue
            pause = RETRY_MIN
            if not more:
                await self._wake.wait()
                self._wake.clear()
                await asyncio.sleep(GATHER)

    async def _export_once(self) -> bool:
        """Send the next batch; True when more runs may be waiting."""
        assert self.cursor is not None
        batch: Batch = await self._in_thread(self.reader.batch, self.cursor)
        if not batch.runs:
            return False
        result = await asyncio.get_running_loop().run_in_executor(
            self._pool, self.sdk.export, batch.spans)
        reason = _QUIET.first.pop(self._prefix, None)
        if result is not SpanExportResult.SUCCESS:
            raise ConnectionError(reason or "the receiver refused the spans")
        self.cursor = batch.cursor
        self.exported += batch.runs
        self._save_cursor()
        if self.failing is not None:
            log.info("durable_nb: OTLP export to %s works again", self.url)
            self.failing = None
        return batch.full

    def _failed(self, exc: Exception) -> None:
        why = str(exc) if isinstance(exc, ConnectionError) else repr(exc)
        if self.failing is None:
            log.warning("durable_nb: OTLP export to %s failed (%s); the spans are kept and "
                        "sent when it answers again", self.url, why)
        self.failing = why[:300]

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        """``fn`` on the exporter's thread; ``stop`` waits for it (it reads the store)."""
        fut = self._reading = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        result = await asyncio.shield(fut)  # cancelled: ``stop`` still waits for it
        self._reading = None
        return result

    # ------------------------------------------------------------------ the cursor

    def _load_cursor(self) -> tuple[Cursor, bool]:
        """The stored cursor and True; on the first start with an endpoint, now and False
        (runs that finished before are not exported)."""
        rows = self.s.store.query("SELECT value FROM meta WHERE key = ?", [META_KEY])
        if rows:
            try:
                at, run_id = json.loads(rows[0]["value"])
                return (float(at), str(run_id)), True
            except (TypeError, ValueError):
                pass
        return (self.s.now(), ""), False

    def _save_cursor(self) -> None:
        """Journal the cursor (on the loop)."""
        if self.cursor is not None and not self.s.stopped:
            self.s.write([Upsert("meta", {"key": META_KEY,
                                          "value": json.dumps(list(self.cursor))})])
