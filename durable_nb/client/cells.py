"""Starting a %%durable cell from the kernel: the notebook variables it reads travel with
it, and the variables of its checkpoints come back. The cell itself runs in a worker
(``worker.cells.run_cell``)."""

from __future__ import annotations

import base64
import builtins
import os
import sys
from collections.abc import Collection, Mapping

from ..core import serial as _serial
from ..core.checkpoints import CorruptCheckpoint, Reader, file_reader, load
from ..core.errors import DurableError, NotPicklable
from ..core.retry import Retry
from ..core.source import names_read, split_statements
from ..core.versions import cell_lineage
from ..worker.cells import run_cell
from .tasks import Queue, Task
from .versions import notice_cell

_NOT_INPUTS = {"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___", "_oh", "_ih",
               "_dh"}


def auto_cell_name(origin: dict | None) -> str:
    """An unnamed cell's run is named after its notebook and cell, as the editor shows them
    (``analysis.ipynb [5]``); ``cell [5]`` when the kernel has no notebook."""
    origin = origin or {}
    notebook = origin.get("notebook")
    where = os.path.basename(notebook) if notebook else "cell"
    return f"{where} [{origin.get('execution_count') or '?'}]"


def cell_inputs(source: str, namespace: dict) -> dict:
    """The notebook variables a cell reads, which travel with it to the worker."""
    return {n: namespace[n] for n in sorted(names_read(source))
            if n in namespace and n not in _NOT_INPUTS and not n.startswith("_i")
            and n not in vars(builtins)}


def trigger_cell(source: str, namespace: dict, *, name: str | None = None, retries: int = 0,
                 queue: str | None = None, concurrency: int | None = None,
                 timeout: float | None = None, idempotency_key: str | None = None,
                 transient: Collection[str] = (), max_duration: float | None = None,
                 first_line: int = 1, origin: dict | None = None,
                 resources: Mapping[str, str] | None = None):
    """Start a durable run of a cell (plain Python source) and return its RunHandle.
    ``first_line`` is the editor's number of the source's first line (2 under %%durable),
    so that tracebacks point at the lines the user sees; ``origin`` ({notebook, cell_id,
    execution_count}) is stored with the run, so that the panel can open that cell.
    ``resources`` ({variable: expression}, ``--resource``) are made in the worker at the
    start of every attempt and never checkpointed."""
    task, args = cell_task(source, namespace, name=name, retries=retries, queue=queue,
                           concurrency=concurrency, timeout=timeout, transient=transient,
                           max_duration=max_duration, first_line=first_line, origin=origin,
                           resources=resources)
    run = task.trigger(*args, idempotency_key=idempotency_key)
    notice_cell(run, task, task.id)  # in a kernel: runs still on the cell's earlier text
    return run


def cell_task(source: str, namespace: dict, *, name: str | None = None, retries: int = 0,
              queue: str | None = None, concurrency: int | None = None,
              timeout: float | None = None, transient: Collection[str] = (),
              max_duration: float | None = None, first_line: int = 1,
              origin: dict | None = None,
              resources: Mapping[str, str] | None = None) -> tuple[Task, tuple]:
    """The task that runs a cell and its arguments: the source and the notebook variables
    it reads (and its resources' expressions read), captured now (``trigger_cell`` starts
    it once; a ``--schedule`` keeps it)."""
    split_statements(source)  # a syntax error fails here, in the kernel
    made = checked_resources(resources)
    read = dict(cell_inputs(source, namespace))
    for expression in made.values():
        read.update(cell_inputs(expression, namespace))
    inputs = {k: v for k, v in sorted(read.items()) if k not in transient and k not in made}
    for var, value in inputs.items():
        try:
            _serial.dumps(value, f"variable '{var}'")
        except NotPicklable as exc:
            why = exc.args[0].split(" cannot be stored: ", 1)[-1].split(" Return")[0]
            raise NotPicklable(
                f"the cell reads the notebook variable '{var}', which cannot travel to the "
                f"worker (it cannot be pickled: {why.rstrip('.')}). Create it inside the "
                f"cell instead, or pass --transient {var} if the cell does not need "
                "it.") from None
    q = Queue(queue, concurrency) if queue else None
    retry = Retry(max_attempts=retries + 1, min_timeout=1, randomize=False)
    task = Task(run_cell, name or "cell", retry, q, max_duration, timeout)
    task.kind = "cell"
    task.origin = origin
    task.cell_source = source  # each text of the cell is a version of it
    if name is None or name == auto_cell_name(origin):  # unnamed: its notebook cell's
        task.lineage = cell_lineage(origin)
    if made:  # only then: the payload of other cells stays as it was
        return task, (source, inputs, list(transient), first_line, made)
    return task, (source, inputs, list(transient)) + ((first_line,) if first_line != 1 else ())


def checked_resources(resources: Mapping[str, str] | None) -> dict[str, str]:
    """``--resource`` pairs checked: each a variable name and a Python expression."""
    out: dict[str, str] = {}
    for var, expression in (resources or {}).items():
        if not isinstance(var, str) or not var.isidentifier():
            raise ValueError(f"a resource's variable must be a Python name, got {var!r}")
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError(f"resource {var!r} needs the expression that makes it, e.g. "
                             "\"sqlite3.connect('x.db')\"")
        compile(expression, f"<--resource {var}>", "eval")  # a SyntaxError says where
        out[var] = expression.strip()
    return out


def fetch_variables(run, names: list[str] | None = None) -> dict:
    """The variables of a cell run's latest checkpoint (all, or ``names``).

    A matplotlib figure that was open in the worker registers itself with pyplot when it
    is unpickled, and a kernel's inline backend would then show it again at the end of the
    cell: such figures are closed (they stay usable, and display when asked to)."""
    query = {"values": 1, "names": ",".join(names) if names else None}
    out = run.client.request("GET", f"/runs/{run.id}/checkpoint", query=query, timeout=300)
    plt = sys.modules.get("matplotlib.pyplot")
    before = set(plt.get_fignums()) if plt is not None else set()
    read = _piece_reader(run, out)
    try:
        values = {n: load(n, v["entry"], read, out["sizes"])
                  for n, v in out["variables"].items()}
    except CorruptCheckpoint as exc:
        raise DurableError(f"the variables of run {run.id} cannot be brought back: {exc}") \
            from None
    plt = sys.modules.get("matplotlib.pyplot")  # unpickling a figure may have imported it
    if plt is not None:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)
    return values


def _piece_reader(run, out: dict) -> Reader:
    """Reads pieces from their files beside the database when this process can (the same
    machine and user: at the disk's speed, straight into the values' memory), otherwise
    one piece per request from the API."""
    inline = {h: base64.b64decode(b) for h, b in out["pieces_b64"].items()}
    folder = out.get("blob_dir") or ""
    local = file_reader(folder, inline)
    readable = bool(folder) and os.access(folder, os.R_OK | os.X_OK)

    def read(h: str, into: memoryview) -> None:
        if h in inline or (readable and os.path.exists(os.path.join(folder, h))):
            local(h, into)
        else:
            got = run.client.request("GET", f"/runs/{run.id}/checkpoint/pieces/{h}",
                                     timeout=300)
            into[:] = base64.b64decode(got["data_b64"])
    return read
