"""The runs widget: a live, filterable, paginated table of runs, newest first; a click on a
row shows that run's graph below the table.

It reads everything through the REST API (``GET /runs`` with the status and task filters,
``limit`` and ``offset``, which answers with the total under those filters and each run's
pending approvals), and refreshes when the engine's events say a run or a wait changed.

Its display bundle also holds a static HTML table of the page shown (GitHub, nbviewer) and,
when the kernel uses its Jupyter server's engine, ``RUNS_MIME``: the filters, which the
JupyterLab extension draws as a live table with no kernel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anywidget
import traitlets as t

from ..client.client import Client, get_client
from ..client.tasks import RunHandle
from ..core.errors import DurableError
from ..core.status import STATUSES, TERMINAL
from .assets import css, esm
from .feed import RunFeed
from .kernel_api import ApiMixin, engine_info
from .snapshot import runs_html, runs_text
from .streams import HUB, Pump

RUNS_MIME = "application/vnd.durable-nb.runs+json"

MAX_PAGE = 10_000  # the most runs ``GET /runs`` returns at once
ROW_FIELDS = ("id", "task_id", "status", "created_at", "started_at", "finished_at",
              "duration", "attempts", "duration_warning", "kind")


@dataclass
class Page:
    """One page of the table: its runs, how many runs the filters match, pending approvals."""

    rows: list[dict]
    total: int
    approvals: dict[str, list[str]]


def status_filter(status: str) -> str | None:
    """The known statuses of a comma-separated filter, as ``GET /runs`` takes them (None:
    no filter; unknown names are left out rather than refused)."""
    names = [s.strip() for s in status.split(",") if s.strip() in STATUSES]
    return ",".join(names) or None


def list_page(client: Client, status: str, task: str, offset: int,
              limit: int) -> tuple[list[dict], int]:
    """A page of runs (newest first) and how many runs the filters match."""
    out = client.request("GET", "/runs", query={
        "status": status_filter(status), "task": task or None, "limit": min(limit, MAX_PAGE),
        "offset": offset})
    return out["runs"], int(out["total"])


def pending_approvals(rows: list[dict]) -> dict[str, list[str]]:
    """The names of each run's pending approvals, oldest first (as ``GET /runs`` gives them)."""
    return {r["id"]: list(r["pending_approvals"]) for r in rows if r.get("pending_approvals")}


def fetch_page(client: Client, status: str, task: str, offset: int, limit: int) -> Page:
    """What the table shows for these filters and this page."""
    rows, total = list_page(client, status, task, offset, limit)
    now = time.time()
    shown = [{k: r.get(k) for k in ROW_FIELDS} | {"now": now} for r in rows]
    return Page(shown, total, pending_approvals(rows))


def task_choices(known: list[str], rows: list[dict], task: str) -> list[str]:
    """The task filter's choices: those known so far, the page's and the chosen one (the
    API lists no task ids, so the list grows as pages show more tasks)."""
    names = {*known, *(r["task_id"] for r in rows if r.get("task_id"))}
    if task:
        names.add(task)
    return sorted(names)


class RunsWidget(ApiMixin, anywidget.AnyWidget):
    """A live, filterable, paginated table of runs; a click shows the run's graph."""

    _esm = esm("renderRunsView")
    _css = css()

    status = t.Unicode("").tag(sync=True)
    task = t.Unicode("").tag(sync=True)
    offset = t.Int(0).tag(sync=True)
    limit = t.Int(25).tag(sync=True)
    rows: t.List[dict] = t.List().tag(sync=True)
    total = t.Int(-1).tag(sync=True)
    tasks: t.List[str] = t.List().tag(sync=True)
    approvals = t.Dict().tag(sync=True)
    selected = t.Unicode("").tag(sync=True)
    detail = t.Dict().tag(sync=True)
    engine = t.Dict().tag(sync=True)
    notice = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    loading = t.Bool(False).tag(sync=True)
    _mid = t.Unicode("").tag(sync=True)

    def __init__(self, status: str | None = None, task: str | None = None, limit: int = 25,
                 *, live: bool = True, client: Client | None = None, **kwargs: Any):
        self.client = client or get_client()
        self._lock = threading.RLock()
        self._ready = False
        self._feed: RunFeed | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._pump = Pump(self._refresh_bg, interval=0.25)
        super().__init__(status=(status or "").upper(), task=task or "", limit=limit,
                         engine=engine_info(self.client), **kwargs)
        self._mid = self.model_id
        self.on_msg(self._answer)
        self._ready = True
        self.refresh()
        if live:
            self._unsubscribe = HUB.subscribe(self.client, None, self._on_event)

    def __repr__(self) -> str:
        total = self.total if self.total >= 0 else "?"
        return f"<RunsWidget {len(self.rows)} of {total} runs>"

    def _repr_mimebundle_(self, **kwargs: Any):
        data = super()._repr_mimebundle_(**kwargs)
        bundle, meta = data if isinstance(data, tuple) else (data, {})
        if bundle is None:  # closed
            return data
        with self._lock:
            rows, total, approvals = list(self.rows), self.total, dict(self.approvals)
            filters = {"status": self.status, "task": self.task, "limit": self.limit}
        bundle["text/plain"] = runs_text(rows, total)
        bundle["text/html"] = runs_html(rows, total, approvals)
        if self.engine.get("server"):  # the page's Jupyter server lists these runs
            bundle[RUNS_MIME] = {**filters, "instance": self.engine.get("instance")}
        return bundle, meta

    # -- data -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fetch the current page (in the calling thread) and update the views."""
        with self._lock:
            key = (self.status, self.task, self.offset, self.limit)
        try:
            page: Page | None = fetch_page(self.client, *key)
            error = ""
        except DurableError as exc:
            page, error = None, str(exc)
        with self._lock:
            if key != (self.status, self.task, self.offset, self.limit):
                return  # the filter changed meanwhile; that refresh wins
            with self.hold_sync():
                if page is not None:
                    self.rows, self.total, self.approvals = page.rows, page.total, page.approvals
                    tasks = task_choices(self.tasks, page.rows, self.task)
                    if tasks != self.tasks:
                        self.tasks = tasks
                self.error = error
                self.loading = False

    def _refresh_bg(self) -> None:
        self.refresh()

    def _on_event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "disconnected":
            with self._lock:
                self.error = "lost the connection to the engine; reconnecting…"
            return
        if kind in ("run", "wait", "hello", "warning"):
            self._pump.kick()

    @t.observe("status", "task", "offset", "limit")
    def _filters_changed(self, change: dict) -> None:
        if not self._ready:
            return
        with self._lock:
            self.loading = True
        self.refresh()

    @t.observe("selected")
    def _selected_changed(self, change: dict) -> None:
        if not self._ready:
            return
        if self._feed is not None:
            self._feed.stop()
            self._feed = None
        run_id = change["new"]
        if not run_id:
            self.detail = {}
            return
        feed = RunFeed(RunHandle(run_id, self.client), self._set_detail, self._set_notice)
        self._feed = feed
        try:
            data = feed.load()
        except DurableError as exc:
            self.error = str(exc)
            return
        if data["status"] not in TERMINAL:
            feed.start()

    def _set_detail(self, data: dict) -> None:
        with self._lock:
            if data.get("id") == self.selected:
                self.detail = data

    def _set_notice(self, text: str) -> None:
        with self._lock:
            self.notice = text

    def _after_decision(self, run_id: str) -> None:
        if self._feed is not None:
            self._feed.kick()
        HUB.call(self._pump.kick)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._feed is not None:
            self._feed.stop()
        super().close()


def runs_widget(status: str | None = None, task: str | None = None,
                limit: int = 25) -> RunsWidget:
    """A live table of runs (newest first), filterable by status and task, paginated by
    the engine; click a row to see that run's graph."""
    return RunsWidget(status=status, task=task, limit=limit)
