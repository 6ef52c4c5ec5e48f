"""Jupyter widgets (anywidget): a live graph of one run, and a live table of runs.

The names the kernel side uses, gathered from the modules that hold them:

- `run_widget`: `RunWidget` and how a kernel displays it (`display_run`, `widget_for`,
  `show_in_kernel`, `in_kernel`, `RUN_MIME` which the JupyterLab extension draws live, the
  `fallback_text` / `fallback_html` lines saying how to re-attach);
- `runs_widget`: `RunsWidget` and `runs_widget`, the table over the REST runs list
  (`RUNS_MIME`: its live table in JupyterLab);
- `snapshot`: the static HTML and text of a run and of the runs table, saved in outputs;
- `feed`: `fetch_run` and `RunFeed`, a run view's data kept current from its events;
- `streams`: `HUB`, the background thread holding the engine's event WebSockets;
- `kernel_api`: the views' API requests answered by the kernel;
- `assets`: the static JavaScript and CSS.

The views are drawn by ``static/run_graph.js`` (shared with the JupyterLab panel) and
``static/widgets.js``. Approvals go from the browser straight to the Jupyter server's REST
API when the kernel uses that server's engine (the Jupyter user is recorded), else through
the kernel.
"""

from __future__ import annotations

from .feed import FOLLOW_AFTER_END, LOG_TAIL, MAX_STEP_ROWS, RunFeed, fetch_run
from .run_widget import (
    RUN_MIME,
    WIDGET_MIME,
    RunWidget,
    display_run,
    fallback_html,
    fallback_text,
    in_kernel,
    show_in_kernel,
    widget_for,
)
from .run_widget import _live as _live  # the kernel's run widgets, by run id
from .runs_widget import RUNS_MIME, RunsWidget, runs_widget
from .snapshot import run_html, runs_html
from .streams import HUB

__all__ = [
    "FOLLOW_AFTER_END", "HUB", "LOG_TAIL", "MAX_STEP_ROWS", "RUNS_MIME", "RUN_MIME",
    "WIDGET_MIME", "RunFeed", "RunWidget", "RunsWidget", "display_run", "fallback_html",
    "fallback_text", "fetch_run", "in_kernel", "run_html", "runs_html", "runs_widget",
    "show_in_kernel", "widget_for",
]
