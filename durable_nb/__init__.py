"""durable_nb: durable execution native to Jupyter.

Tasks and steps run in worker processes supervised by an engine that owns a DuckDB
file; they survive killed workers, killed engines and kernel restarts.
"""

__version__ = "0.1.0"

from ._client import Client, connect  # noqa: E402
from ._errors import (  # noqa: E402
    AbortRun,
    ApiError,
    DurableError,
    EngineLocked,
    EngineUnavailable,
    NotPicklable,
    PayloadTooLarge,
    RunFailed,
    RunNotFound,
    WaitConflict,
    WaitTimeout,
)
from ._retry import Retry  # noqa: E402
from ._tasks import (  # noqa: E402
    Decision,
    Queue,
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

__all__ = [
    "AbortRun", "ApiError", "Client", "Decision", "DurableError", "EngineLocked",
    "EngineUnavailable", "NotPicklable", "PayloadTooLarge", "Queue", "Retry", "RunFailed",
    "RunHandle", "RunNotFound", "RunResult", "SqlResult", "Task", "WaitConflict",
    "WaitTimeout", "__version__", "approval", "connect", "get_run", "idempotency_key",
    "runs", "send_event", "sleep", "sql", "step", "task", "wait_for_event",
    "runs_widget", "timeline",
]


def runs_widget(status: str | None = None, task: str | None = None, limit: int = 25):
    """A live table of runs (filter by status and task, paginated); click a row for its graph."""
    from ._widgets import runs_widget as make

    return make(status=status, task=task, limit=limit)


def timeline(runs, title: str | None = None):
    """A plotly Gantt chart of several runs (RunHandles or run ids); see RunHandle.timeline."""
    from ._timeline import timeline as make

    return make(runs, title=title)


def _jupyter_labextension_paths() -> list[dict]:
    """Where JupyterLab finds the prebuilt panel (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "durable_nb"}]


def _jupyter_server_extension_points() -> list[dict]:
    """Where jupyter-server finds the extension (enabled by etc/jupyter/.../durable_nb.json)."""
    from ._serverext import DurableApp

    return [{"module": "durable_nb._serverext", "app": DurableApp}]


def load_ipython_extension(ipython) -> None:
    """``%load_ext durable_nb``: registers ``%%durable`` and ``%durable``."""
    from ._magics import load

    load(ipython)
