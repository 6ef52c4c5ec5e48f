"""The run widget: one run as a live graph (steps, waits, child runs, checkpoints, logs and
approvals), drawn by ``static/run_graph.js``, and how a kernel displays it.

The kernel keeps one widget model per run (`widget_for`); every display of the run is a
view of it. A display is one output whose bundle holds, besides the widget view (for
frontends without the JupyterLab extension, e.g. VS Code): ``RUN_MIME``, the run's id and
last known state, which the JupyterLab extension draws live from its server's REST API
with no kernel (only when the kernel uses that server's engine, else the extension could
not find the run); a static HTML snapshot of the last known state (GitHub, nbviewer); and
text. The kernel re-sends a display when the run's status or pending approvals change, so
a notebook saved after the run ended keeps its final state.
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
from .snapshot import last_known, pending_approvals, run_html, run_text

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
RUN_MIME = "application/vnd.durable-nb.run+json"


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
    # the run's output is also printed in the cell (a %%durable cell's follower): the view
    # keeps its copy folded, so nothing shows twice
    outputs_in_cell = t.Bool(False).tag(sync=True)
    _mid = t.Unicode("").tag(sync=True)

    def __init__(self, run: RunHandle | str, *, live: bool = True, **kwargs: Any):
        handle = run if isinstance(run, RunHandle) else RunHandle(str(run))
        self.handle = handle
        self.client = handle.client
        self._lock = threading.RLock()
        self.feed = RunFeed(handle, self._set_run, self._set_notice)
        self.display_ids: list[str] = []  # this kernel's displays of the run (display_run)
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
            before = _shown_state(self.run)
            self.run = data
        if self.display_ids and _shown_state(data) != before:
            self.update_displays()

    def update_displays(self) -> None:
        """Send this kernel's displays of the run again, with the current state in their
        static parts (the frontend keeps, and saves, the newest)."""
        from IPython.display import update_display

        for display_id in list(self.display_ids):
            update_display(self, display_id=display_id)

    def _set_notice(self, text: str) -> None:
        with self._lock:
            self.notice = text

    def refresh(self) -> dict:
        """Fetch the run now and update the views; returns the data."""
        return self.feed.load()

    def decide(self, approved: bool, wait: str | None = None, comment: str | None = None,
               by: str | None = None, values: dict | None = None) -> dict:
        """Approve or reject the run's pending approval, as the view's buttons do
        (``values`` fill its typed form).

        Returns ``{"ok": True, ...}`` or ``{"ok": False, "error": ...}`` when the engine
        refuses (for example: already resolved by someone else, or a form field at fault).
        """
        try:
            out = self._decide(self.run_id, approved, wait, comment, by, values)
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
        run = {"id": self.run_id, **self.run}
        bundle["text/plain"] = (f"{run_text(run)}\n"
                                f"{fallback_text(self.run_id, self.run.get('task_id'))}")
        bundle["text/html"] = run_html(run)
        if self.engine.get("server"):  # the page's Jupyter server has the run
            bundle[RUN_MIME] = {**last_known(run), "instance": self.engine.get("instance"),
                                "outputs_in_cell": self.outputs_in_cell}
        return bundle, meta


def _shown_state(run: dict) -> tuple:
    """What a status change is: a display is re-sent when this changes."""
    return run.get("status"), tuple(pending_approvals(run))


_live: dict[str, RunWidget] = {}


def widget_for(handle: RunHandle) -> RunWidget:
    """The kernel's widget of this run (one model per run; every display is a view of it)."""
    w = _live.get(handle.id)
    if w is None or w.comm is None:
        w = _live[handle.id] = RunWidget(handle)
    return w


def display_run(handle: RunHandle | str, outputs_in_cell: bool = False) -> RunWidget:
    """Display the run: one output with the live widget, the run's id for the JupyterLab
    extension and a static snapshot (see the module docstring), re-sent as the run's
    status changes. ``outputs_in_cell``: the run's output is printed in this cell too
    (``%%durable``, ``%durable attach``), so the view keeps its copy folded."""
    from IPython.display import display

    if not isinstance(handle, RunHandle):
        handle = RunHandle(str(handle))
    w = widget_for(handle)
    if outputs_in_cell or handle.outputs_in_cell:
        w.outputs_in_cell = True
    shown = display(w, display_id=True)
    if shown is not None and w.run.get("status") not in TERMINAL:
        w.display_ids.append(shown.display_id)
        w.feed.start()  # follows the run to its end (a no-op when already following)
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

