"""A real OTLP/HTTP trace receiver on loopback, for the export tests.

It serves ``POST /v1/traces`` as an OpenTelemetry collector does: the body is an
``ExportTraceServiceRequest`` protobuf (decoded with ``opentelemetry-proto``, the wire
format's own definitions; gzip when the exporter compresses), the answer an
``ExportTraceServiceResponse``. Each span is kept as a plain dict with hex ids.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _any(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _attrs(pairs: Any) -> dict[str, Any]:
    return {kv.key: _any(kv.value) for kv in pairs}


def decode(body: bytes) -> list[dict]:
    """The spans of one ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append({
                    "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(), "name": s.name,
                    "start": s.start_time_unix_nano / 1e9, "end": s.end_time_unix_nano / 1e9,
                    "status": s.status.code, "status_message": s.status.message,
                    "attributes": _attrs(s.attributes), "resource": resource,
                    "scope": ss.scope.name})
    return spans


class OtlpReceiver:
    """Receives spans on ``http://127.0.0.1:<port>`` (``start``/``stop`` any number of
    times on the same port: a receiver that goes down and comes back)."""

    def __init__(self, port: int = 0):
        self.port = port
        self.spans: list[dict] = []
        self.requests = 0
        self.content_types: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                spans = decode(body)
                with receiver._lock:
                    receiver.spans.extend(spans)
                    receiver.requests += 1
                    receiver.content_types.add(self.headers.get("Content-Type") or "")
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.spans)

    def wait_for(self, check: Callable[[list[dict]], bool], timeout: float = 30.0,
                 what: str = "spans") -> list[dict]:
        """The spans received, once ``check(spans)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.received()
            if check(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {timeout} s; received "
                             f"{[(s['name'], s['attributes'].get('durable_nb.run_id')) for s in self.received()]}")
