"""``%durable debug RUN [--step KEY]``: a run's failure raised again in the kernel.

A task run that failed in a step: the step's function is called here with the arguments
that try was called with (as recorded), so the exception rises in the kernel from the
user's own frames and ``%debug`` (or the JupyterLab debugger) opens at the failing line
with the same values. The arguments are also left in ``_durable_args`` and
``_durable_kwargs``. A run that failed in its task's own code (between steps) runs the
task function here, its recorded steps returning their recorded outputs
(``client.replay``). A ``%%durable`` cell run is in ``debug_cell``.

The code is the run's own: the kernel's task when it is the same version (same hash),
otherwise the code the run registered, fetched with ``GET /runs/{id}/code`` and
unpickled here. The step's body runs again in the kernel, as a retry would run it.
``%durable resume RUN`` then continues the run with its stored code; code changed since
(a task redefined in the kernel) runs with ``run.fork(task=...)`` instead.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import linecache
import os
import sys
import sysconfig
import threading
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..client.replay import StepCallContext, replay_call
from ..client.steps import StepRecord, step_records
from ..client.tasks import RunHandle, Task
from ..core import serial as _serial
from ..core.codepickle import cell_label
from ..core.errors import DurableError
from ..core.status import FAILURES, RunStatus, StepStatus
from .follow import say

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

ARGS, KWARGS = "_durable_args", "_durable_kwargs"  # the recorded call, left in the namespace
_PKG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")
_STDLIB = os.path.join(sysconfig.get_paths()["stdlib"], "")
_EMPTY = object()  # never a closure's value
_MAX_VISITS = 20_000  # objects looked at while searching the task's code for a step


def debug(shell: InteractiveShell, run: RunHandle, step: str | None) -> Any:
    """Raise the run's failure again here (see the module's doc); returns what the call
    returned when it does not raise."""
    summary = run._poll()
    if summary.get("kind") == "cell":
        if step is not None:
            raise UsageError("--step KEY is for task runs; a %%durable cell is debugged at "
                             "the statement after its last checkpoint")
        from .debug_cell import debug_cell

        return debug_cell(shell, run, summary)
    rows = run.info()["steps"]
    key = step or failed_step(rows)
    if key is not None:
        return _debug_step(shell, run, summary, step_records(run.id, run.client, rows), key)
    status, keys = summary["status"], ", ".join(dict.fromkeys(r["step_key"] for r in rows))
    if status != RunStatus.FAILED:
        why = "" if status not in FAILURES else (
            f" ({(summary.get('error') or {}).get('message') or 'no exception'}): no "
            f"exception of its code to raise again; `%durable resume {run.id}` continues it")
        raise UsageError(f"run {run.id} is {status} and has no failed step{why}; "
                         f"`--step KEY` calls a recorded step again (its steps: "
                         f"{keys or 'none'})")
    from .debug_task import debug_task_body

    return debug_task_body(shell, run, summary)


def failed_step(rows: list[dict]) -> str | None:
    """The key of the step that failed last: the newest whose last try did not complete
    (ERRORED raised into the task, FAILED a try that was to be retried); None if none."""
    last: dict[str, dict] = {}
    for r in rows:  # in time order: each key's last try wins
        last.pop(r["step_key"], None)
        last[r["step_key"]] = r
    failed = [k for k, r in last.items()
              if r["status"] in (StepStatus.ERRORED, StepStatus.FAILED)]
    return failed[-1] if failed else None


def _debug_step(shell: InteractiveShell, run: RunHandle, summary: dict,
                records: list[StepRecord], key: str) -> Any:
    tries = [t for t in records if t.key == key]
    if not tries:
        keys = ", ".join(dict.fromkeys(t.key for t in records)) or "none"
        raise UsageError(f"run {run.id} has no step {key!r}; its steps: {keys}")
    record = tries[-1]
    args, kwargs = record.args, record.kwargs
    fn = step_function(shell, run, summary, record["name"])
    shell.push({ARGS: args, KWARGS: kwargs})
    say(f"re-raising step {key} of {run.id} with its recorded arguments (in {ARGS}, "
        f"{KWARGS}); run %debug to inspect, then `%durable resume {run.id}`")
    ctx = StepCallContext(run.id, key)  # dn.idempotency_key() as in the run
    value = call_here(shell, lambda: replay_call(ctx, fn, args, kwargs))
    say(f"step {key} returned without raising here; its value is the output below")
    return value


# ---------------------------------------------------------------------- the run's code

def run_code(run: RunHandle) -> dict:
    """The run's registered task code and payload (``GET /runs/{id}/code``), as bytes."""
    out = run.client.request("GET", f"/runs/{run.id}/code")
    out["code"] = base64.b64decode(out["code_b64"])
    out["payload"] = base64.b64decode(out["payload_b64"]) if out.get("payload_b64") else None
    return out


def _kernel_task(shell: InteractiveShell, summary: dict) -> Task | None:
    """The kernel's task of this run when it is the same version (its code hash)."""
    for value in list(shell.user_ns.values()):
        if isinstance(value, Task) and value.id == summary.get("task_id"):
            try:
                if value.spec()["hash"] == summary.get("task_hash"):
                    return value
            except DurableError:
                continue
    return None


def task_function(shell: InteractiveShell, run: RunHandle, summary: dict) -> Callable:
    """The function of the run's task: the kernel's own when it is the run's version,
    otherwise the registered code unpickled here (its ``sys_path`` added, as a worker
    does)."""
    task = _kernel_task(shell, summary)
    if task is not None:
        return task.func
    code = run_code(run)
    for p in code.get("sys_path") or ():
        if p not in sys.path:
            sys.path.append(p)
    try:
        fn = _serial.loads(code["code"])
    except Exception as exc:  # unpickling user code raises anything
        raise DurableError(
            f"the code of run {run.id}'s task cannot be loaded in this kernel: "
            f"{type(exc).__name__}: {exc}. Import the task's module (or define the task) "
            "here and try again.") from None
    label_cells(shell)
    return fn


def step_function(shell: InteractiveShell, run: RunHandle, summary: dict,
                  name: str) -> Callable:
    """The plain function of step ``name`` (the function ``@dn.step`` wraps), found in the
    run's task code: its globals, closures and what they refer to; else in the kernel."""
    root = task_function(shell, run, summary)
    found = find_step([root], name) or find_step(list(shell.user_ns.values()), name)
    if found is None:
        raise DurableError(
            f"step {name!r} of run {run.id} is not reachable from its task's code, nor "
            "defined in this kernel: define or import it here and try again")
    return getattr(found, "__wrapped__", found)


def _names(code: types.CodeType) -> set[str]:
    """The global and attribute names ``code`` and the code nested in it refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _refs(obj: Any) -> Iterable[Any]:
    """What a function, task, partial, class or module may call a step through."""
    if isinstance(obj, Task):
        return [obj.func]
    if isinstance(obj, functools.partial):
        return [obj.func]
    if isinstance(obj, (types.MethodType, staticmethod, classmethod)):
        return [obj.__func__]
    if isinstance(obj, types.FunctionType):
        names = _names(obj.__code__)
        g = obj.__globals__
        out: list[Any] = [g[n] for n in names if n in g]
        out += [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
        wrapped = obj.__dict__.get("__wrapped__")
        return [*out, wrapped] if wrapped is not None else out
    if isinstance(obj, type):
        return list(vars(obj).values())
    return []


def _filled(cell: Any) -> bool:
    try:
        return cell.cell_contents is not _EMPTY
    except ValueError:  # an empty closure cell
        return False


def find_step(roots: list[Any], name: str) -> Callable | None:
    """The ``@dn.step`` wrapper named ``name`` reachable from ``roots``, or None. A module
    reached is searched for the names the code that reached it uses."""
    seen: set[int] = set()
    stack: list[tuple[Any, set[str]]] = [(r, set()) for r in reversed(roots)]
    while stack and len(seen) < _MAX_VISITS:
        obj, wanted = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        marker = getattr(obj, "__dict__", {}).get("__durable_step__") \
            if callable(obj) else None
        if marker == name:
            return obj
        if isinstance(obj, types.ModuleType):
            stack.extend((vars(obj)[n], set()) for n in wanted if n in vars(obj))
            continue
        names = _names(obj.__code__) if isinstance(obj, types.FunctionType) else set()
        stack.extend((ref, names) for ref in _refs(obj))
    return None


def label_cells(shell: InteractiveShell) -> None:
    """Name the notebook cells of code unpickled here (``core.codepickle`` registers their
    text and label) as the kernel that ran them did (``Cell In[5]``) in this kernel's
    tracebacks too, as they are named in the run's."""
    fmap = getattr(getattr(shell, "compile", None), "_filename_map", None)
    if not isinstance(fmap, dict):
        return
    for name in list(linecache.cache):
        if name in fmap or not isinstance(name, str):
            continue
        label = cell_label(name) or ""
        if label.startswith("Cell In[") and label.endswith("]") and label[8:-1].isdigit():
            fmap[name] = int(label[8:-1])


# ---------------------------------------------------------------------- raising here

def _ours(filename: str) -> bool:
    """A frame of durable_nb, or of Python's library (asyncio's runner, threading)."""
    return filename.startswith(_PKG_DIR) or (
        filename.startswith(_STDLIB) and "-packages" + os.sep not in filename)


def user_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` from the user's first frame on (durable_nb's and Python's own left out)."""
    while tb is not None and _ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def call_here(shell: InteractiveShell, call: Callable[[], Any]) -> Any:
    """``call()`` in the kernel (a coroutine it returns runs to its end on a thread of its
    own: the kernel's loop is busy running this cell). An exception is raised again as it
    is, so that ``%debug`` finds its frames; IPython shows it from the user's first
    frame, without this module's."""
    try:
        value = call()
        if inspect.iscoroutine(value):
            value = _run_coroutine(value)
        return value
    except Exception as exc:
        _show_from_user_frames(shell, exc, user_frames(exc.__traceback__))
        raise


def _run_coroutine(coro: Any) -> Any:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed to the kernel's thread as it is
            box["error"] = exc

    t = threading.Thread(target=run, name="durable-debug")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _show_from_user_frames(shell: InteractiveShell, exc: Exception,
                           tb: types.TracebackType | None) -> None:
    """IPython shows ``exc`` from ``tb`` on (once: the hook removes itself)."""
    if tb is None:
        return

    def render() -> list[str]:
        exc.__dict__.pop("_render_traceback_", None)
        return shell.InteractiveTB.structured_traceback(type(exc), exc, tb)

    try:
        exc.__dict__["_render_traceback_"] = render  # IPython's custom-traceback hook
    except AttributeError:  # an exception without a __dict__ shows its whole traceback
        pass


def changed_code_note(shell: InteractiveShell, run: RunHandle) -> str | None:
    """A line for ``%durable resume``, when this kernel's task of the run's task id is
    another version than the run's: a resume keeps the run's code, a fork takes the new."""
    summary = run._summary or run._poll()
    if summary.get("kind") == "cell":
        return None
    for name, value in list(shell.user_ns.items()):
        if name.startswith("_") or not isinstance(value, Task) \
                or value.id != summary.get("task_id"):
            continue
        try:
            if value.spec()["hash"] == summary.get("task_hash"):
                return None
        except DurableError:
            continue
        return (f"task '{value.id}' in this kernel ({name}) has changed since run {run.id} "
                "started; the resume runs the run's own code. To run the changed code from "
                f"the failed step, fork it: dn.get_run({run.id!r}).fork(task={name})")
    return None
