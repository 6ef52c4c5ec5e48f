"""Running a %%durable cell in a worker: statement by statement, with a checkpoint of the
namespace after each one, so that a resume continues after the last completed statement."""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
import linecache
from collections.abc import Mapping, Sequence
from types import CodeType
from typing import Any

from ..core.source import split_statements
from ..core.tracebacks import CELL_FILE
from . import async_waits
from . import context as _context
from . import display as _display
from .resources import cell_variables

_SKIP = {"__builtins__", "__name__", "__doc__", "__loader__", "__spec__", "__package__"}


def checkpointable(ns: dict, transient: set[str]) -> dict:
    return {k: v for k, v in ns.items() if k not in _SKIP and k not in transient}


def run_cell(source: str, inputs: dict, transient: Sequence[str] = (),
             first_line: int = 1, resources: Mapping[str, str] | None = None) -> dict:
    """Execute ``source`` (plain Python, IPython syntax already transformed) durably, under
    IPython's display machinery (``notebook``): the value of a last expression is shown.
    ``resources`` ({variable: expression}, ``--resource``) are made at the start of every
    attempt and never checkpointed (``worker.resources``)."""
    ctx = _context.current()
    if ctx is None:
        raise RuntimeError("run_cell runs inside a worker")
    from . import notebook  # IPython, loaded only when a cell runs

    skip = set(transient)
    ns: dict = {"__name__": "__main__", "__builtins__": builtins}
    ns.update(inputs)
    statements = split_statements(source)
    # the cell's lines under the editor's numbers, for the tracebacks the worker records
    numbered = "\n" * (first_line - 1) + source
    linecache.cache[CELL_FILE] = (len(numbered), None, numbered.splitlines(True), CELL_FILE)
    loop: asyncio.AbstractEventLoop | None = None
    with notebook.session(ctx, _display.OWN_PROCESS) as cell:
        start = 0
        restored = ctx.restore_checkpoint()  # in the session: a figure goes back to pyplot
        if restored is not None:
            start, values = restored
            ns.update(values)
        ctx.resources.bind_cell(ns, resources or {})  # made anew in every attempt
        try:
            for i in range(start, len(statements)):
                line, text = statements[i]
                last = i == len(statements) - 1
                shown = last and _is_expression(text) and notebook.shows_value(text)
                # numbered as the editor shows the cell (``first_line``: 2 below a magic line)
                code = compile("\n" * (line + first_line - 2) + text, CELL_FILE,
                               "eval" if shown else "exec",
                               flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
                if code.co_flags & inspect.CO_COROUTINE:
                    loop = loop or asyncio.new_event_loop()
                value = _run(code, ns, loop, cell)
                if shown:
                    cell.show(value)
                if last:
                    cell.end()  # before the last checkpoint: its figures are closed
                ctx.checkpoint(i + 1, ctx.resources.checkpointed(checkpointable(ns, skip), i + 1),
                               len(statements))
        finally:
            if loop is not None:  # tasks a suspended statement left are canceled first
                async_waits.close_loop(loop)
    return {"statements": len(statements),
            "variables": cell_variables(checkpointable(ns, skip), ctx.resources)}


def _run(code: CodeType, ns: dict, loop: asyncio.AbstractEventLoop | None, cell) -> Any:
    """One statement's value (None for one that is not an expression)."""
    try:
        if code.co_flags & inspect.CO_COROUTINE and loop is not None:
            return loop.run_until_complete(eval(code, ns))
        return eval(code, ns)
    except _context.Suspend:
        raise  # the run waits: the statement runs again when it goes on
    except BaseException:
        cell.end()  # figures drawn so far are shown with the error, as in a kernel
        raise


def _is_expression(text: str) -> bool:
    """Whether a statement is one expression (whose value a notebook shows)."""
    try:
        body = ast.parse(text).body
    except SyntaxError:
        return False
    return len(body) == 1 and isinstance(body[0], ast.Expr)
