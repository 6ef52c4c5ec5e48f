"""``%durable debug RUN`` of a ``%%durable`` cell run: the variables of its last checkpoint
come into the kernel's namespace, and the statement after that checkpoint (the one that
failed) executes in the kernel, so its exception rises here under the cell's own line
numbers and ``%debug`` opens at the failing line with the values the run had.

The cell's text is the run's (its payload). When this kernel ran the cell, the
statement is compiled as that notebook cell (``Cell In[N]``, the cell's raw text), which
is also how the JupyterLab debugger finds the cell; otherwise under ``<durable cell
RUN>``, whose lines are the run's cell text.
"""

from __future__ import annotations

import ast
import linecache
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..client.cells import fetch_variables
from ..client.tasks import RunHandle
from ..core import serial as _serial
from ..core.source import names_read, split_statements
from ..core.status import TERMINAL
from . import depends
from .debug import call_here, run_code
from .follow import say
from .shell import SHELL_NAME, rename_get_ipython, shell

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


def debug_cell(kernel: InteractiveShell, run: RunHandle, summary: dict) -> Any:
    """Restore the checkpoint, then execute the failing statement here (see the module)."""
    if summary["status"] not in TERMINAL:
        raise UsageError(f"run {run.id} is {summary['status']}: `%durable debug` raises a "
                         "finished run's failure again; wait for it to end, or cancel it")
    source, inputs, transient, first_line = _cell_call(run)
    statements = split_statements(source)
    cp = run.client.request("GET", f"/runs/{run.id}/checkpoint")
    done = int(cp.get("statement") or 0)
    values = fetch_variables(run) if done else dict(inputs)
    values.pop(SHELL_NAME, None)
    kernel.push(values)
    depends.registry(kernel).discard(run.id)  # later cells read these values, not the run's
    names = ", ".join(sorted(values)) or "none"
    lost = f"; not restored (transient): {', '.join(transient)}" if transient else ""
    where = f"after statement {done} of {len(statements)}" if done else "before its first " \
        "statement (the notebook variables it read)"
    if done >= len(statements):
        say(f"run {run.id} ({summary['status']}) has no statement left to run; the variables "
            f"of its checkpoint are in the namespace: {names}{lost}")
        return None
    line, text = statements[done]
    if SHELL_NAME in names_read(text):  # `!cmd` runs here as it ran in the worker
        kernel.user_ns[SHELL_NAME] = shell
    filename = _cell_file(kernel, run, summary, source, first_line)
    code = compile("\n" * (line + first_line - 2) + text, filename, "exec",
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    say(f"restored run {run.id}'s variables {where} ({names}{lost}); running statement "
        f"{done + 1} (line {line + first_line - 1}) here; run %debug to inspect, then "
        f"`%durable resume {run.id}`")
    call_here(kernel, lambda: eval(code, kernel.user_ns))
    say(f"statement {done + 1} ran without raising here; its variables are in the namespace")
    return None


def _cell_call(run: RunHandle) -> tuple[str, dict, list[str], int]:
    """The cell's source, the notebook variables it read, its transient names and the
    editor's number of its first line, from the run's payload."""
    args, _kwargs = _serial.loads(run_code(run)["payload"])
    source, inputs = args[0], dict(args[1])
    transient = list(args[2]) if len(args) > 2 else []
    first_line = int(args[3]) if len(args) > 3 else 1
    return source, inputs, transient, first_line


def _cell_file(kernel: InteractiveShell, run: RunHandle, summary: dict, source: str,
               first_line: int) -> str:
    """The file name the statement is compiled under, its lines in ``linecache``: the
    notebook cell when this kernel ran it, else ``<durable cell RUN>``."""
    count = (summary.get("origin") or {}).get("execution_count")
    raw = _raw_cell(kernel, count, source) if isinstance(count, int) else None
    if raw is not None:
        return kernel.compile.cache(raw, count, raw_code=raw)
    name = f"<durable cell {run.id}>"
    text = "%%durable\n" * (first_line - 1) + source
    linecache.cache[name] = (len(text), None, text.splitlines(True), name)
    return name


def _raw_cell(kernel: InteractiveShell, count: int, source: str) -> str | None:
    """The raw text of cell ``In[count]`` of this kernel when it is the %%durable cell whose
    source the run has (a cell of another kernel, or since edited, is not)."""
    from IPython.core.inputtransformer2 import TransformerManager

    hist = getattr(getattr(kernel, "history_manager", None), "input_hist_raw", None)
    if not hist or not 0 < count < len(hist):
        return None
    raw = hist[count]
    head, _, body = raw.partition("\n")
    if not head.lstrip().startswith("%%durable"):
        return None
    try:
        same = rename_get_ipython(TransformerManager().transform_cell(body)) == source
    except (SyntaxError, ValueError):
        return None
    return raw if same else None
