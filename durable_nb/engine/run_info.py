"""What a run reports about itself while it executes: its metadata (``dn.metadata``) and
its progress (``dn.progress``, tqdm), kept on the run, journaled and told to live views.

A metadata change is journaled, and answered once durable, like a step. It is refused,
with the old value kept, when it does not apply (increment of a non-number, append to a
non-list) or would make the run's metadata larger than 256 KB. Each call is named by its
place in the run (``call``, "<scope>#<n>"): a call the re-executed code makes again after
a wait, a retry or a crash (of the worker or of the engine: the calls applied are
journaled with the value, ``runs.metadata_calls``) is answered without being applied a
second time.

Progress is kept in memory and told to views at once, but journaled at most once a
``FLUSH_EVERY`` seconds for all runs together (one write, no fdatasync of its own per
report), and when an attempt or the run ends, in the batch of that end.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.errors import PayloadTooLarge
from ..core.run_reports import (
    CHANGES,
    MAX_METADATA_BYTES,
    apply_change,
    check_json,
    check_key,
    decode,
    encode,
    progress_fields,
    size_error,
)
from ..store.records import Update
from .clock import Timer
from .model import Run, reply
from .state import EngineState

FLUSH_EVERY = 1.0  # seconds between two journal writes of progress


class RunReports:
    """Handles the ``metadata`` and ``progress`` ops of workers (``core.messages``)."""

    def __init__(self, state: EngineState):
        self.s = state
        self._dirty: dict[str, Run] = {}  # runs whose progress is not journaled yet
        self._timer: Timer | None = None

    # -- metadata -----------------------------------------------------------------------

    def metadata(self, run: Run, worker: Any, msg: dict) -> None:
        """A ``dn.metadata`` change: applied and journaled, answered once durable."""
        scope, _, n = str(msg.get("call", "")).rpartition("#")
        number = int(n) if n.isdigit() else 0
        if scope and number and number <= run.metadata_calls.get(scope, 0):
            self.s.write([], lambda: reply(worker, msg, {"ok": True}))  # applied already
            return
        try:
            key = check_key(msg.get("key"))
            change = msg.get("change")
            if change not in CHANGES:
                raise ValueError(f"unknown metadata change {change!r}")
            value = decode(msg["value"])
            check_json(key, value)
            new = apply_change(run.metadata, change, key, value)
            text = encode(new)
            if len(text) > MAX_METADATA_BYTES:
                raise PayloadTooLarge(size_error(key, len(text)))
        except (TypeError, ValueError, KeyError, RecursionError) as exc:
            kind = "PayloadTooLarge" if isinstance(exc, PayloadTooLarge) else (
                "TypeError" if isinstance(exc, TypeError) else "ValueError")
            text = str(exc) if not isinstance(exc, RecursionError) else (
                f"the value for metadata {msg.get('key')!r} is nested too deeply")
            reply(worker, msg, {"refused": {"type": kind, "message": text}})
            return
        run.metadata = new
        if scope and number:
            run.metadata_calls[scope] = number
        now = self.s.now()
        self.s.write([Update("runs", {"id": run.id}, {
            "metadata": text, "metadata_calls": json.dumps(run.metadata_calls),
            "updated_at": now})],
                     lambda: reply(worker, msg, {"ok": True}))
        self.s.emit({"type": "metadata", "run_id": run.id, "metadata": new, "at": now})

    # -- progress -----------------------------------------------------------------------

    def progress(self, run: Run, worker: Any, msg: dict) -> None:
        """A progress report: kept, told to views now, journaled within ``FLUSH_EVERY``."""
        try:
            fields = progress_fields(msg.get("done"), msg.get("total"), msg.get("text"))
        except (TypeError, ValueError):
            return  # a malformed report is dropped: progress is only a display
        at = msg.get("at")
        now = self.s.now()
        report = {**fields, "at": at if isinstance(at, (int, float)) else now}
        run.progress_report = report
        self.s.emit({"type": "progress", "run_id": run.id, "progress": report, "at": now})
        self._dirty[run.id] = run
        if self._timer is None and not self.s.stopped:
            self._timer = self.s.clock.call_at(now + FLUSH_EVERY, self._flush_all)

    def _flush_all(self) -> None:
        self._timer = None
        runs, self._dirty = list(self._dirty.values()), {}
        if runs and not self.s.stopped:
            self.s.write([_progress_update(r) for r in runs])

    def flush(self, run: Run) -> None:
        """The run's attempt or the run ended: its last progress goes in the batch of that
        end (``WorkerMessages.receive``, ``Lifecycle.on_finish``)."""
        if self._dirty.pop(run.id, None) is not None:
            self.s.write([_progress_update(run)])


def _progress_update(run: Run) -> Update:
    return Update("runs", {"id": run.id}, {"progress": json.dumps(run.progress_report)})
