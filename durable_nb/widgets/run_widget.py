"""The run widget: one run as a live graph (steps, waits, child runs, checkpoints, logs and
approvals), drawn by ``static/run_graph.js``, and how a kernel displays it.

The kernel keeps one widget model per run (`widget_for`); every display of the run is a
view of it. Beside each live view goes a one-line fallback that says how to re-attach,
shown where the widget cannot be (a notebook reopened without its kernel).
"""

from __future__ import annotations

import html
import threading
from typing import Any

import anywidget
import traitlets as t

from ..client.tasks import RunHandle
from ..core.errors import DurableError
from ..core.status import TERMINAL
from .assets import css, esm
from .feed import RunFeed, fetch_run
from .kernel_api import ApiMixin, engine_info

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


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


class RunWidget(ApiMixin, anywidget.AnyWidget):
    """A run as a live graph: steps, waits, child runs, checkpoints, logs and approvals."""

    _esm = esm("renderRunView")
    _css = css()

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
        super().__init__(run_id=handle.id, run=data, engine=engine_info(self.client),
                         **kwargs)
        self.feed.seed(data)
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
        if bundle is None:  # no view to show (the widget is closed)
            return data
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

