"""durable_nb: durable execution native to Jupyter.

Tasks and steps run in worker processes supervised by an engine that owns a DuckDB
file; they survive killed workers, killed engines and kernel restarts.
"""

from typing import TYPE_CHECKING

from .core import views as _views
from .core.version import __version__

# The public API, loaded on first use: processes that import a part of the package (the
# engine, a worker, the Jupyter server) do not load the client, the widgets or plotly.
_EXPORTS = {
    "Client": "client.client", "connect": "client.client",
    **dict.fromkeys([
        "AbortRun", "ApiError", "DurableError", "EngineLocked", "EngineUnavailable",
        "FormInvalid", "NotPicklable", "PayloadTooLarge", "RunFailed", "RunNotFound", "StepNotRecorded",
        "WaitConflict", "WaitTimeout"], "core.errors"),

    "Retry": "core.retry",
    "ReplayDivergence": "core.errors", "ReplayDivergenceWarning": "core.errors",
    "resource": "client.resources",
    "FormField": "core.forms", "LongText": "core.forms",
    "Queue": "client.queues", "Rate": "client.queues",
    "Debounce": "client.debounce",
    **dict.fromkeys(["approval_async", "sleep_async", "wait_for_event_async"], "client.waits"),
    "compare": "client.compare", "diff": "client.versions", "versions": "client.versions",
    **dict.fromkeys(["Schedule", "schedule", "schedules"], "client.schedules"),
    "metadata": "client.run_info", "progress": "client.run_info",
    **dict.fromkeys([
        "Decision", "RunHandle", "RunResult", "SqlResult", "Task", "approval",
        "get_run", "idempotency_key", "runs", "send_event", "sleep", "sql", "step", "task",
        "wait_for_event"], "client.tasks"),
}

if TYPE_CHECKING:
    from .client.client import Client, connect
    from .client.compare import compare
    from .client.debounce import Debounce
    from .client.queues import Queue, Rate
    from .client.resources import resource
    from .client.run_info import metadata, progress
    from .client.schedules import Schedule, schedule, schedules
    from .client.tasks import (
        Decision,
        RunHandle,
        RunResult,
        SqlResult,
        Task,
        approval,
        get_run,
        idempotency_key,
        runs,
        send_event,
        sleep,
        sql,
        step,
        task,
        wait_for_event,
    )
    from .client.versions import diff, versions
    from .client.waits import approval_async, sleep_async, wait_for_event_async
    from .core.errors import (
        AbortRun,
        ApiError,
        DurableError,
        EngineLocked,
        EngineUnavailable,
        FormInvalid,
        NotPicklable,
        PayloadTooLarge,
        ReplayDivergence,
        ReplayDivergenceWarning,
        RunFailed,
        RunNotFound,
        StepNotRecorded,
        WaitConflict,
        WaitTimeout,
    )
    from .core.forms import FormField, LongText
    from .core.retry import Retry


def _display_run(handle) -> bool:
    from .widgets.views import show_in_kernel

    return show_in_kernel(handle)


def _timeline(runs, title: str | None = None):
    from .widgets.timeline import timeline as make

    return make(runs, title=title)


_views.display_run, _views.timeline = _display_run, _timeline


def __getattr__(name: str):
    """Import a public name's module when the name is first used (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'durable_nb' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "AbortRun", "ApiError", "Client", "Decision", "DurableError", "EngineLocked",
    "EngineUnavailable", "NotPicklable", "PayloadTooLarge", "Queue", "Rate", "Retry", "RunFailed",
    "RunHandle", "RunNotFound", "RunResult", "SqlResult", "StepNotRecorded", "Task",
    "WaitConflict", "WaitTimeout", "__version__", "approval", "connect", "get_run", "idempotency_key",
    "runs", "send_event", "sleep", "sql", "step", "task", "wait_for_event",
    "runs_widget", "timeline", "metadata", "progress", "Debounce",
    "ReplayDivergence", "ReplayDivergenceWarning", "resource",
    "Schedule", "schedule", "schedules", "compare", "diff", "versions",
    "FormField", "FormInvalid", "LongText",
    "approval_async", "sleep_async", "wait_for_event_async",
]


def runs_widget(status: str | None = None, task: str | None = None, limit: int = 25):
    """A live table of runs (filter by status and task, paginated); click a row for its graph."""
    from .widgets.views import runs_widget as make

    return make(status=status, task=task, limit=limit)


def timeline(runs, title: str | None = None):
    """A plotly Gantt chart of several runs (RunHandles or run ids); see RunHandle.timeline."""
    return _timeline(runs, title=title)


def _jupyter_labextension_paths() -> list[dict]:
    """Where JupyterLab finds the prebuilt panel (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "durable_nb"}]


def _jupyter_server_extension_points() -> list[dict]:
    """Where jupyter-server finds the extension (enabled by etc/jupyter/.../durable_nb.json)."""
    from .jupyter.extension import DurableApp

    return [{"module": "durable_nb.jupyter.extension", "app": DurableApp}]


def load_ipython_extension(ipython) -> None:
    """``%load_ext durable_nb``: registers ``%%durable`` and ``%durable``."""
    from .ipython.magics import load

    load(ipython)
