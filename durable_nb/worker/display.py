"""Output records of a run: rich displays and progress bars, sent as log rows of the stream
"display" so that they are stored with stdout and stderr, in order.

A record is one JSON object per log line: ``{"op": "display", "data": {mime: value},
"metadata": {...}, "id": display_id or null}``, ``{"op": "update", ...}`` (the same fields:
replaces what the display of that id shows) or ``{"op": "clear", "wait": bool}``. A progress
bar (a stream segment ended by a carriage return, as tqdm writes) is a display of id
``progress-<stream>-<n>`` with ``"progress": true`` and text/plain data, then updates of it.

This module imports no IPython: ``main`` uses it for every run, ``notebook`` (loaded when a
cell runs) for the displays of IPython's machinery."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.serial import fmt_size

STREAM = "display"
MAX_RECORD = 8 << 20  # characters of one record's JSON: the image of a big figure fits
PROGRESS_INTERVAL = 0.1  # a bar sends at most ~10 updates a second, plus its final state

OWN_PROCESS = False  # set by a worker process: cells may make an IPython shell in it
Send = Callable[[dict], None]  # sends one record of the current attempt (or drops it)

_last_at = 0.0
_at_lock = threading.Lock()


def stamp() -> float:
    """The time of a log message: ``time.time()``, but strictly increasing in this process,
    so that no two messages of a run share a time (a follower tells them apart by it)."""
    global _last_at
    with _at_lock:
        _last_at = max(time.time(), _last_at + 1e-6)
        return _last_at


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=repr, ensure_ascii=False)


def encode(record: dict, limit: int = MAX_RECORD) -> str:
    """``record`` as one JSON line (binary data base64, as Jupyter sends images). Over
    ``limit`` its largest representations are dropped, and its text says which."""
    record = _jsonable(record)
    line = _dumps(record)
    if len(line) <= limit or "data" not in record:
        return line
    data = dict(record["data"])
    text = data.get("text/plain") if isinstance(data.get("text/plain"), str) else None
    dropped: list[str] = []
    for n, mime in sorted(((len(_dumps(v)), k) for k, v in data.items()), reverse=True):
        del data[mime]
        dropped.append(f"{mime} ({fmt_size(n)})")
        note = (f"[output dropped: {', '.join(dropped)}; one output of a durable run is "
                f"limited to {fmt_size(limit)}]")
        kept = data.get("text/plain")
        line = _dumps({**record, "metadata": {}, "data": {
            **data, "text/plain": f"{kept}\n{note}" if kept else note}})
        if len(line) <= limit:
            return line
    return _dumps({**record, "metadata": {}, "data": {"text/plain": (text or "")[:200]}})


def log_message(record: dict) -> dict:
    """The worker message that stores ``record`` in the run's logs."""
    return {"op": "log", "stream": STREAM, "lines": [encode(record)], "at": stamp()}


class Progress:
    """The progress bar of one output stream: the segments a program ends with "\\r"
    (redrawing a line in place) become one display updated in place, instead of a line each.

    Updates closer than ``PROGRESS_INTERVAL`` are coalesced: the latest waits (a timer sends
    it) and the bar's final state is always sent. A newline ends the bar. The caller holds
    ``lock`` (the stream's) around every method."""

    def __init__(self, stream: str, send: Send, lock: threading.RLock):
        self.stream = stream
        self.send = send
        self.lock = lock
        self.id: str | None = None
        self._sent_at = 0.0
        self._pending: str | None = None
        self._timer: threading.Timer | None = None

    @property
    def active(self) -> bool:
        return self.id is not None

    def _record(self, op: str, text: str) -> dict:
        return {"op": op, "data": {"text/plain": text.rstrip()}, "metadata": {},
                "id": self.id, "progress": True}

    def update(self, text: str) -> None:
        """The bar now reads ``text`` (the first update shows it)."""
        now = time.monotonic()
        if self.id is None:
            self.id = f"progress-{self.stream}-{int(stamp() * 1e6)}"  # unique across attempts
            self._sent_at = now
            self.send(self._record("display", text))
            return
        if now - self._sent_at >= PROGRESS_INTERVAL:
            self._pending = None
            self._sent_at = now
            self.send(self._record("update", text))
            return
        self._pending = text
        if self._timer is None:
            self._timer = threading.Timer(PROGRESS_INTERVAL - (now - self._sent_at),
                                          self._on_timer, args=(self.id,))
            self._timer.daemon = True
            self._timer.start()

    def _on_timer(self, bar: str) -> None:
        with self.lock:
            if bar == self.id:
                self._timer = None
                self.flush()

    def flush(self) -> None:
        """Send the bar's latest state if an update of it is waiting."""
        if self._pending is not None and self.id is not None:
            text, self._pending = self._pending, None
            self._sent_at = time.monotonic()
            self.send(self._record("update", text))

    def end(self) -> None:
        """The bar is done (a newline, or the attempt ended): its last state stays."""
        self.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.id = None
