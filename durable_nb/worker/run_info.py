"""What a run tells the engine about itself while it executes: ``dn.metadata`` changes and
``dn.progress``, one ``RunReports`` per attempt (``RunContext.reports``).

A metadata change is a request: the engine answers once it is durable, or refuses it (a
wrong type for increment or append, a run's metadata over 256 KB), and the refusal is
raised in the user's code. Each call is named by its place in the run, as steps are
(``<step key>/metadata:<key>#<n>``), so a call that runs again when the code re-executes
(after a wait, a retry or a crash) is not applied twice.

Progress is sent without a reply and at most about ten times a second: a value that comes
sooner is held and sent by the next report, before the next request of the run (a step,
a wait, a checkpoint) or at the end of the attempt, so the last value always arrives.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from ..core.errors import PayloadTooLarge
from ..core.run_reports import (
    MAX_METADATA_BYTES,
    PROGRESS_INTERVAL,
    check_json,
    check_key,
    encode,
    fmt_bytes,
    is_number,
    progress_fields,
)

if TYPE_CHECKING:
    from .context import RunContext

_ERRORS: dict[str, type[Exception]] = {
    "TypeError": TypeError, "ValueError": ValueError, "PayloadTooLarge": PayloadTooLarge}


class RunReports:
    """The metadata changes and progress of one attempt, sent through its context."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self._lock = threading.Lock()
        self._pending: dict | None = None  # a progress value held back by the throttle
        self._last: dict | None = None  # the last one sent
        self._sent_at = -PROGRESS_INTERVAL
        self.bars: list[weakref.ref] = []  # this run's tqdm bars, oldest first (tqdm_feed)

    # -- metadata -----------------------------------------------------------------------

    def change(self, change: str, key: Any, value: Any) -> None:
        """Apply a metadata change durably (set, increment, append); raises what the engine
        refused in the caller's code."""
        key = check_key(key)
        if change == "increment" and not is_number(value):
            raise TypeError(f"metadata.increment({key!r}, n) takes a number n, "
                            f"not {type(value).__name__}")
        check_json(key, value)
        text = encode(value)
        size = len(text.encode())
        if size > MAX_METADATA_BYTES:
            raise PayloadTooLarge(
                f"the value for metadata {key!r} is {fmt_bytes(size)}, over the limit of "
                f"{fmt_bytes(MAX_METADATA_BYTES)} for a run's whole metadata; store larger "
                "data in a step's output or a file")
        scope = f"{self.ctx.step_key}/" if self.ctx.step_key else ""
        call = self.ctx.next_key(f"{scope}metadata:{key}")
        reply = self.ctx.request({"op": "metadata", "change": change, "key": key,
                                  "value": text, "call": call})
        if "refused" in reply:
            refusal = reply["refused"]
            raise _ERRORS.get(refusal["type"], ValueError)(refusal["message"])
        if "error" in reply:  # an engine that does not know the op
            raise ValueError(reply["error"])

    # -- progress -----------------------------------------------------------------------

    def progress(self, done: Any, total: Any = None, text: Any = None,
                 final: bool = False) -> None:
        """Report progress; sent now when ``final``, when ``done`` reaches ``total`` or when
        the last one went out at least ``PROGRESS_INTERVAL`` ago, else held."""
        report = progress_fields(done, total, text)
        finished = report["total"] is not None and report["done"] >= report["total"]
        with self._lock:
            now = time.monotonic()
            if not (final or finished or now - self._sent_at >= PROGRESS_INTERVAL):
                self._pending = report
                return
            self._pending = None
            self._sent_at = now
            if report == self._last:
                return
            self._last = report
        self._send(report)

    def flush(self) -> None:
        """Send the progress value held back, if any."""
        with self._lock:
            report, self._pending = self._pending, None
            if report is None or report == self._last:
                return
            self._sent_at = time.monotonic()
            self._last = report
        self._send(report)

    def _send(self, report: dict) -> None:
        self.ctx.send({"op": "progress", "done": report["done"], "total": report["total"],
                       "text": report["text"], "at": time.time()})
