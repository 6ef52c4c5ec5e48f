"""Jupyter widgets (anywidget): a live graph of one run, and a live table of runs.

The views are drawn by ``static/run_graph.js`` (shared with the JupyterLab panel) and
``static/widgets.js``. The kernel keeps them current from a background thread subscribed
to the engine's events WebSocket, so they update while the kernel runs another cell.
Approvals go from the browser straight to the Jupyter server's REST API when the kernel
uses that server's engine (the Jupyter user is recorded), else through the kernel.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from ..client.client import Client, get_client
from ..client.tasks import RunHandle
from ..core.errors import ApiError, DurableError, RunNotFound, WaitConflict
from ..core.runtime import events_url
from ..core.status import STATUSES, TERMINAL, RunStatus
from ..core.tracebacks import user_traceback

log = logging.getLogger("durable_nb.widgets")

STATIC = Path(__file__).with_name("static")
LOG_TAIL = 200  # log lines a run view keeps
MAX_STEP_ROWS = 500  # step records sent to a view (the newest)
FOLLOW_AFTER_END = 1.0  # seconds a view keeps listening after its run finished
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _esm(render: str) -> str:
    """One ES module: the graph renderer, the widget glue, and the widget's entry point."""
    return "\n".join([_asset("run_graph.js"), _asset("widgets.js"),
                      f"export default {{ render: {render} }};\n"])


# ---------------------------------------------------------------------- event streams

class _Stream:
    """One events WebSocket (one run, or all runs) shared by its listeners."""

    def __init__(self, client: Client, run_id: str | None):
        self.client = client
        self.run_id = run_id
        self.listeners: list[Callable[[dict], None]] = []
        self.task: asyncio.Task | None = None
        self.conn: Any = None
        self.closed = False

    def url(self) -> str:
        return events_url(self.client.url, self.run_id)

    def tell(self, event: dict) -> None:
        for fn in list(self.listeners):
            try:
                fn(event)
            except Exception:
                log.debug("durable_nb widget listener failed", exc_info=True)

    def poke(self) -> None:
        """A plain request, so a client whose engine moved follows it (rediscovery)."""
        try:
            self.client.request("GET", "/health", timeout=5)
        except Exception:
            pass

    async def run(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        delay = 0.2
        loop = asyncio.get_running_loop()
        while not self.closed:
            headers = {"Authorization": f"token {self.client.token}"} if self.client.token else {}
            try:
                self.conn = await websocket_connect(HTTPRequest(
                    self.url(), headers=headers, connect_timeout=5, request_timeout=10))
            except Exception as exc:
                if self.closed:
                    return
                self.tell({"type": "disconnected", "error": f"{type(exc).__name__}: {exc}"})
                await loop.run_in_executor(None, self.poke)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            while True:
                msg = await self.conn.read_message()
                if msg is None:
                    break
                try:
                    event = json.loads(msg)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.tell(event)
            self.conn = None
            if not self.closed:
                self.tell({"type": "disconnected", "error": "the event stream closed"})
                await asyncio.sleep(delay)

    def close(self) -> None:
        self.closed = True
        if self.conn is not None:
            self.conn.close()
        if self.task is not None:
            self.task.cancel()


class _Hub:
    """A daemon thread with an asyncio loop that holds the kernel's event streams."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._streams: dict[tuple[int, str | None], _Stream] = {}

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                ready = threading.Event()

                def main() -> None:
                    loop = asyncio.new_event_loop()
                    asyncio.set_event_loop(loop)
                    self.loop = loop
                    ready.set()
                    loop.run_forever()

                self._streams.clear()
                self._thread = threading.Thread(target=main, name="durable-nb-events",
                                                daemon=True)
                self._thread.start()
                ready.wait()
            assert self.loop is not None
            return self.loop

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the hub's loop (from any thread)."""
        self._ensure().call_soon_threadsafe(fn)

    def subscribe(self, client: Client, run_id: str | None,
                  fn: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``fn(event)`` (on the hub thread) for the run's events (all runs: None)."""
        loop = self._ensure()
        key = (id(client), run_id)

        def add() -> None:
            stream = self._streams.get(key)
            if stream is None or stream.closed:
                stream = self._streams[key] = _Stream(client, run_id)
                stream.task = loop.create_task(stream.run())
            stream.listeners.append(fn)

        def remove() -> None:
            stream = self._streams.get(key)
            if stream is not None and fn in stream.listeners:
                stream.listeners.remove(fn)
                if not stream.listeners:
                    stream.close()
                    del self._streams[key]

        loop.call_soon_threadsafe(add)
        return lambda: loop.call_soon_threadsafe(remove)


HUB = _Hub()


class _Pump:
    """Coalesces requests to run ``work`` (blocking, in a worker thread): at most one at a
    time, at most one per ``interval`` seconds, and always once after the last request."""

    def __init__(self, work: Callable[[], None], interval: float = 0.05):
        self.work = work
        self.interval = interval
        self._dirty = False
        self._running = False

    def kick(self) -> None:
        """Ask for a run (call on the hub thread)."""
        self._dirty = True
        if not self._running:
            self._running = True
            HUB.loop.create_task(self._pump())

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._dirty:
                self._dirty = False
                try:
                    await loop.run_in_executor(None, self.work)
                except Exception:
                    log.debug("durable_nb widget refresh failed", exc_info=True)
                await asyncio.sleep(self.interval)
        finally:
            self._running = False


# ---------------------------------------------------------------------- run data

def _clean(rows: list[dict] | None) -> None:
    for r in rows or []:
        if r.get("traceback"):
            r["traceback"] = user_traceback(r["traceback"])


def fetch_run(client: Client, run_id: str, logs: int = LOG_TAIL) -> dict:
    """What a run view shows: the run with attempts, steps, waits, children, checkpoints
    (cells) and the last ``logs`` log lines."""
    rid = urllib.parse.quote(run_id, safe="")
    info = client.request("GET", f"/runs/{rid}")
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
    if len(steps) > MAX_STEP_ROWS:
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
        self._unsubscribe: Callable[[], None] | None = None
        self._pump = _Pump(self._refresh)
        self._lock = threading.Lock()
        self._stop_at: float | None = None
        self.stopped = False

    def load(self) -> dict:
        """Fetch the run now (in the calling thread) and publish it."""
        data = fetch_run(self.client, self.handle.id, self.logs_limit)
        with self._lock:
            self._logs.clear()
            self._logs.extend(data["logs"])
            self._need_logs = False
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
                data = {**self.data, "logs": list(self._logs), "now": time.time()}
            self._publish(data)
            return
        need_logs = self._need_logs
        self._need_fetch = False
        data = fetch_run(self.client, self.handle.id, self.logs_limit if need_logs else 0)
        with self._lock:
            if need_logs:
                self._logs.clear()
                self._logs.extend(data["logs"])
                self._need_logs = False
            data["logs"] = list(self._logs)
        self._publish(data)
        if data["status"] in TERMINAL:
            if self._stop_at is None:
                self._stop_at = time.monotonic() + FOLLOW_AFTER_END
                HUB.call(lambda: HUB.loop.call_later(FOLLOW_AFTER_END + 0.05, self._maybe_stop))
        else:
            self._stop_at = None

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


# ---------------------------------------------------------------------- kernel-side API

_GET_PATH = re.compile(r"^/runs/[A-Za-z0-9_.\-]+(/(logs|spans|result))?$")
_POST_PATH = re.compile(r"^/runs/([A-Za-z0-9_.\-]+)/(approve|reject)$")


def _error_status(exc: Exception) -> int:
    if isinstance(exc, WaitConflict):
        return 409
    if isinstance(exc, RunNotFound):
        return 404
    if isinstance(exc, ApiError):
        return exc.status
    return 503 if isinstance(exc, DurableError) else 500


def _engine_info(client: Client) -> dict:
    """What the browser needs to decide whether it can call the engine's API itself."""
    try:
        instance = client.request("GET", "/health", timeout=5).get("instance")
    except DurableError:
        instance = None
    env_url = os.environ.get("DURABLE_NB_URL", "")
    server = bool(os.environ.get("JPY_PARENT_PID")) and bool(env_url) and (
        client.url.rstrip("/") == env_url.rstrip("/"))
    return {"instance": instance, "server": server}


class _ApiMixin:
    """Answers the views' requests that go through the kernel (no Jupyter server)."""

    client: Client

    def _answer(self, _widget: Any, content: dict, _buffers: list) -> None:
        if not isinstance(content, dict) or content.get("type") != "api":
            return
        method, raw = content.get("method"), str(content.get("path") or "")
        path, _, qs = raw.partition("?")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(qs).items()}
        body = content.get("body") or {}
        try:
            if method == "GET" and _GET_PATH.match(path):
                status, out = 200, self.client.request("GET", path, query=query or None)
            elif method == "POST" and _POST_PATH.match(path):
                run_id, verb = _POST_PATH.match(path).groups()
                out = self._decide(run_id, verb == "approve", body.get("wait"),
                                   body.get("comment"))
                status = 200
            else:
                status, out = 403, {"error": f"{method} {path} is not available to widgets"}
        except Exception as exc:
            status, out = _error_status(exc), {"error": str(exc)}
        self.send({"type": "api_reply", "id": content.get("id"), "status": status, "body": out})

    def _decide(self, run_id: str, approved: bool, wait: str | None, comment: str | None,
                by: str | None = None) -> dict:
        handle = RunHandle(run_id, self.client)
        fn = handle.approve if approved else handle.reject
        out = fn(wait, comment or None, by)
        self._after_decision(run_id)
        return out

    def _after_decision(self, run_id: str) -> None:
        pass


# ---------------------------------------------------------------------- run widget

def fallback_text(run_id: str, task_id: str | None = None) -> str:
    """What a view says where the live widget cannot show (no kernel behind it)."""
    task = f" (task {task_id})" if task_id else ""
    return (f"durable_nb run {run_id}{task}. The live view of this run needs the kernel that "
            f"displayed it; to follow the run again, run `%durable attach {run_id}` "
            f"(or dn.get_run({run_id!r})).")


def fallback_html(run_id: str, task_id: str | None = None, status: str | None = None) -> str:
    task = f" <b>{html.escape(task_id)}</b>" if task_id else ""
    st = f" · {html.escape(status)} when displayed" if status else ""
    rid = html.escape(run_id)
    return (f'<div class="durable-nb-fallback" data-durable-run="{rid}" style="font-size:12px;'
            'color:var(--jp-ui-font-color2,#59636e);padding:2px 0">'
            f"durable_nb run{task} <code>{rid}</code>{st} · the live view needs its kernel; "
            f"to follow the run again: <code>%durable attach {rid}</code></div>")


class RunWidget(_ApiMixin, anywidget.AnyWidget):
    """A run as a live graph: steps, waits, child runs, checkpoints, logs and approvals."""

    _esm = _esm("renderRunView")
    _css = _asset("run_graph.css") + "\n" + _asset("widgets.css")

    run_id = t.Unicode("").tag(sync=True)
    run = t.Dict().tag(sync=True)
    engine = t.Dict().tag(sync=True)
    notice = t.Unicode("").tag(sync=True)
    _mid = t.Unicode("").tag(sync=True)

    def __init__(self, run: RunHandle | str, *, live: bool = True, **kwargs: Any):
        handle = run if isinstance(run, RunHandle) else RunHandle(str(run))
        self.handle = handle
        self.client = handle.client
        self._lock = threading.RLock()
        self.feed = RunFeed(handle, self._set_run, self._set_notice)
        data = fetch_run(self.client, handle.id)
        super().__init__(run_id=handle.id, run=data, engine=_engine_info(self.client),
                         **kwargs)
        self.feed.data = data
        self.feed._logs.extend(data["logs"])
        self.feed._need_logs = False
        self._mid = self.model_id
        self.on_msg(self._answer)
        if live and data["status"] not in TERMINAL:
            self.feed.start()

    def __repr__(self) -> str:
        return f"<RunWidget {self.run_id} {self.run.get('status', '')}>"

    def _set_run(self, data: dict) -> None:
        with self._lock:
            self.run = data

    def _set_notice(self, text: str) -> None:
        with self._lock:
            self.notice = text

    def refresh(self) -> dict:
        """Fetch the run now and update the views; returns the data."""
        return self.feed.load()

    def decide(self, approved: bool, wait: str | None = None, comment: str | None = None,
               by: str | None = None) -> dict:
        """Approve or reject the run's pending approval, as the view's buttons do.

        Returns ``{"ok": True, ...}`` or ``{"ok": False, "error": ...}`` when the engine
        refuses (for example: already resolved by someone else).
        """
        try:
            out = self._decide(self.run_id, approved, wait, comment, by)
        except DurableError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **out}

    def _after_decision(self, run_id: str) -> None:
        self.feed.kick()

    def close(self) -> None:
        self.feed.stop()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any):
        data = super()._repr_mimebundle_(**kwargs)
        bundle, meta = data if isinstance(data, tuple) else (data, {})
        bundle["text/plain"] = fallback_text(self.run_id, self.run.get("task_id"))
        return bundle, meta


_live: dict[str, RunWidget] = {}


def widget_for(handle: RunHandle) -> RunWidget:
    """The kernel's widget of this run (one model per run; every display is a view of it)."""
    w = _live.get(handle.id)
    if w is None or w.comm is None:
        w = _live[handle.id] = RunWidget(handle)
    return w


def display_run(handle: RunHandle | str) -> RunWidget:
    """Display the live run widget, preceded by a one-line fallback that says how to
    re-attach (the live view hides it; it shows where the widget cannot, e.g. after the
    kernel restarted and the notebook was reopened)."""
    from IPython.display import display

    if not isinstance(handle, RunHandle):
        handle = RunHandle(str(handle))
    w = widget_for(handle)
    task, status = w.run.get("task_id"), w.run.get("status")
    display({"text/html": fallback_html(handle.id, task, status),
             "text/plain": fallback_text(handle.id, task)}, raw=True)
    display(w)
    return w


def show_in_kernel(handle: RunHandle) -> bool:
    """The ``core.views.display_run`` hook: the live widget in a kernel, else False."""
    if not in_kernel():
        return False
    display_run(handle)
    return True


def in_kernel() -> bool:
    """True inside an IPython kernel (where widgets can show)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


# ---------------------------------------------------------------------- runs widget

def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class RunsWidget(_ApiMixin, anywidget.AnyWidget):
    """A live, filterable, paginated table of runs; a click shows the run's graph."""

    _esm = _esm("renderRunsView")
    _css = _asset("run_graph.css") + "\n" + _asset("widgets.css")

    status = t.Unicode("").tag(sync=True)
    task = t.Unicode("").tag(sync=True)
    offset = t.Int(0).tag(sync=True)
    limit = t.Int(25).tag(sync=True)
    rows = t.List().tag(sync=True)
    total = t.Int(-1).tag(sync=True)
    tasks = t.List().tag(sync=True)
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
        self._pump = _Pump(self._refresh_bg, interval=0.25)
        super().__init__(status=(status or "").upper(), task=task or "", limit=limit,
                         engine=_engine_info(self.client), **kwargs)
        self._mid = self.model_id
        self.on_msg(self._answer)
        self._ready = True
        self.refresh()
        if live:
            self._unsubscribe = HUB.subscribe(self.client, None, self._on_event)

    def __repr__(self) -> str:
        return f"<RunsWidget {len(self.rows)} of {self.total} runs>"

    # -- data -------------------------------------------------------------------------

    def _where(self, status: str, task: str) -> str:
        where = []
        if status:
            names = [s.strip() for s in status.split(",") if s.strip() in STATUSES]
            if names:
                where.append(f"status IN ({', '.join(map(_sql_str, names))})")
        if task:
            where.append(f"task_id = {_sql_str(task)}")
        return (" WHERE " + " AND ".join(where)) if where else ""

    def _sql(self, query: str) -> list[list]:
        return self.client.request("POST", "/sql", {"query": query, "limit": 10_000})["rows"]

    def refresh(self) -> None:
        """Fetch the current page (in the calling thread) and update the views."""
        with self._lock:
            key = (self.status, self.task, self.offset, self.limit)
        try:
            rows = self.client.request("GET", "/runs", query={
                "status": key[0] or None, "task": key[1] or None, "limit": key[3],
                "offset": key[2]})["runs"]
            total = self._sql("SELECT count(*) FROM runs" + self._where(key[0], key[1]))[0][0]
            waiting = [r["id"] for r in rows if r["status"] in (RunStatus.WAITING, RunStatus.EXECUTING)
                       and re.fullmatch(r"[A-Za-z0-9_.\-]+", r["id"])]
            approvals: dict[str, list[str]] = {}
            if waiting:
                for run_id, name in self._sql(
                        "SELECT run_id, name FROM waits WHERE kind = 'approval' AND resolved_at "
                        f"IS NULL AND run_id IN ({', '.join(map(_sql_str, waiting))}) "
                        "ORDER BY created_at"):
                    approvals.setdefault(run_id, []).append(name)
            tasks = None
            if not self.tasks or any(r["task_id"] not in self.tasks for r in rows):
                tasks = [r[0] for r in self._sql(
                    "SELECT DISTINCT task_id FROM runs ORDER BY task_id LIMIT 1000")]
            error = ""
        except DurableError as exc:
            rows, total, approvals, tasks, error = None, None, None, None, str(exc)
        with self._lock:
            if key != (self.status, self.task, self.offset, self.limit):
                return  # the filter changed meanwhile; that refresh wins
            with self.hold_sync():
                if rows is not None:
                    now = time.time()
                    self.rows = [{k: r.get(k) for k in (
                        "id", "task_id", "status", "created_at", "started_at", "finished_at",
                        "duration", "attempts", "duration_warning", "kind")} | {"now": now}
                        for r in rows]
                    self.total = int(total)
                    self.approvals = approvals
                if tasks is not None:
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
