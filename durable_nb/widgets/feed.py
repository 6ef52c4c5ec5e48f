"""A run view's data: `fetch_run` reads a run through the REST API, and `RunFeed` keeps it
current from the run's events (a log line is appended in place; anything else refetches)."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable

from ..client.client import Client
from ..client.tasks import RunHandle
from ..core.status import TERMINAL
from ..core.step_groups import group_steps
from ..core.tracebacks import user_traceback
from .streams import HUB, Pump

LOG_TAIL = 200  # log lines a run view keeps
MAX_STEP_ROWS = 500  # step records sent to a view (the newest)
FOLLOW_AFTER_END = 1.0  # seconds a view keeps listening after its run finished


def _clean(rows: list[dict] | None) -> None:
    for r in rows or []:
        if r.get("traceback"):
            r["traceback"] = user_traceback(r["traceback"])


def fetch_run(client: Client, run_id: str, logs: int = LOG_TAIL) -> dict:
    """What a run view shows: the run with attempts, steps, waits, children, checkpoints
    (cells) and the last ``logs`` log lines; a run of more than ``MAX_STEP_ROWS`` step rows
    has its newest rows and ``step_groups`` (its steps grouped by name)."""
    rid = urllib.parse.quote(run_id, safe="")
    # a big run: its newest step rows and every step grouped by name (`step_groups`); a
    # view lists the steps of a name a page at a time from GET /runs/{id}/steps
    info = client.request("GET", f"/runs/{rid}", query={"steps": MAX_STEP_ROWS})
    _clean(info.get("steps"))
    _clean(info.get("attempt_list"))
    _clean([info["error"]] if info.get("error") else None)
    info["checkpoints"] = []
    if info.get("kind") == "cell":
        spans = client.request("GET", f"/runs/{rid}/spans")["spans"]
        info["checkpoints"] = [
            {"statement": s["attributes"].get("statement"), "total": s["attributes"].get("total"),
             "size": s["attributes"].get("size"), "at": s["start_at"]}
            for s in spans if s["kind"] == "checkpoint"]
    info["logs"] = (client.request("GET", f"/runs/{rid}/logs", query={"limit": logs})["logs"]
                    if logs else [])
    steps = info.get("steps") or []
    if len(steps) > MAX_STEP_ROWS:  # an engine that does not know the steps parameter
        info["step_groups"] = group_steps(steps, info["status"] in TERMINAL)
        info["steps_omitted"] = len(steps) - MAX_STEP_ROWS
        info["steps"] = steps[-MAX_STEP_ROWS:]
    info["now"] = time.time()
    return info


class RunFeed:
    """Keeps one run's view data current from the engine's events.

    ``on_data(data)`` is called from a background thread with the whole view data (see
    `fetch_run`) after every change; ``on_notice(text)`` when the connection to the engine
    is lost ("" when it is back).
    """

    def __init__(self, handle: RunHandle, on_data: Callable[[dict], None],
                 on_notice: Callable[[str], None] | None = None, logs: int = LOG_TAIL):
        self.handle = handle
        self.client = handle.client
        self.on_data = on_data
        self.on_notice = on_notice or (lambda text: None)
        self.logs_limit = logs
        self.data: dict | None = None
        self._logs: deque = deque(maxlen=logs or 1)
        self._need_logs = True
        self._need_fetch = False
        self._reports: dict = {}  # progress and metadata from events since the last fetch
        self._unsubscribe: Callable[[], None] | None = None
        self._pump = Pump(self._refresh)
        self._lock = threading.Lock()
        self._stop_at: float | None = None
        self.stopped = False

    def seed(self, data: dict) -> None:
        """Take ``data`` (from `fetch_run` with logs) as the current state, unpublished."""
        with self._lock:
            self._logs.clear()
            self._logs.extend(data["logs"])
            self._need_logs = False
        self.data = data

    def load(self) -> dict:
        """Fetch the run now (in the calling thread) and publish it."""
        data = fetch_run(self.client, self.handle.id, self.logs_limit)
        self.seed(data)
        self._publish(data)
        return data

    def start(self) -> None:
        """Follow the run's events until it has finished (or `stop`)."""
        if self._unsubscribe is None and not self.stopped:
            self._unsubscribe = HUB.subscribe(self.client, self.handle.id, self._on_event)

    def stop(self) -> None:
        self.stopped = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def kick(self) -> None:
        """Refresh soon (from any thread)."""
        HUB.call(self._pump.kick)

    def _on_event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "log":
            with self._lock:
                for line in event.get("lines") or []:
                    self._logs.append({"at": event.get("at"), "stream": event.get("stream"),
                                       "line": line})
            self._pump.kick()
            return
        if kind in ("progress", "metadata") and kind in event:
            # a progress report (up to ten a second) or a metadata change: applied to the
            # data in place, with no fetch of the whole run
            with self._lock:
                self._reports[kind] = event[kind]
            self._pump.kick()
            return
        if kind == "disconnected":
            self.on_notice("Lost the connection to the durable_nb engine; reconnecting… "
                           f"({event.get('error', '')})")
            return
        if kind == "hello":
            self.on_notice("")
            self._need_logs = True  # lines may have been missed while disconnected
        self._need_fetch = True
        self._pump.kick()

    def _refresh(self) -> None:
        if self.stopped:
            return
        if not self._need_fetch and self.data is not None:
            with self._lock:
                data = {**self.data, **self._reports, "logs": list(self._logs),
                        "now": time.time()}
            self._publish(data)
            return
        need_logs = self._need_logs
        self._need_fetch = False
        with self._lock:
            self._reports = {}  # the fetch reads them as they are now
        data = fetch_run(self.client, self.handle.id, self.logs_limit if need_logs else 0)
        with self._lock:
            if need_logs:
                self._logs.clear()
                self._logs.extend(data["logs"])
                self._need_logs = False
            data["logs"] = list(self._logs)
        self._publish(data)
        hooks_done = all(k["status"] in TERMINAL for k in data.get("hooks") or ())
        if data["status"] in TERMINAL and hooks_done:  # its hook runs' ends are shown too
            if self._stop_at is None:
                self._stop_at = time.monotonic() + FOLLOW_AFTER_END
                HUB.call(self._stop_later)
        else:
            self._stop_at = None

    def _stop_later(self) -> None:
        """On the hub thread: stop following once the run has stayed finished a while."""
        asyncio.get_running_loop().call_later(FOLLOW_AFTER_END + 0.05, self._maybe_stop)

    def _maybe_stop(self) -> None:
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None

    def _publish(self, data: dict) -> None:
        self.data = data
        # big runs: fewer, larger updates (each one carries the whole run)
        self._pump.interval = min(0.3, 0.05 + len(data.get("steps") or ()) / 2000)
        if not self.stopped:
            self.on_data(data)
