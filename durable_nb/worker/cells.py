"""Running a %%durable cell in a worker: statement by statement, with a checkpoint of the
namespace after each one, so that a resume continues after the last completed statement."""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
from collections.abc import Sequence

from ..core.source import split_statements
from . import context as _context

_SKIP = {"__builtins__", "__name__", "__doc__", "__loader__", "__spec__", "__package__"}


def checkpointable(ns: dict, transient: set[str]) -> dict:
    return {k: v for k, v in ns.items() if k not in _SKIP and k not in transient}


def run_cell(source: str, inputs: dict, transient: Sequence[str] = (),
             first_line: int = 1) -> dict:
    """Execute ``source`` (plain Python, IPython syntax already transformed) durably."""
    ctx = _context.current()
    if ctx is None:
        raise RuntimeError("run_cell runs inside a worker")
    skip = set(transient)
    ns: dict = {"__name__": "__main__", "__builtins__": builtins}
    ns.update(inputs)
    start = 0
    restored = ctx.restore_checkpoint()
    if restored is not None:
        start, values = restored
        ns.update(values)
    statements = split_statements(source)
    loop: asyncio.AbstractEventLoop | None = None
    try:
        for i in range(start, len(statements)):
            line, text = statements[i]
            # numbered as the editor shows the cell (``first_line``: 2 below a magic line)
            code = compile("\n" * (line + first_line - 2) + text, "<durable cell>", "exec",
                           flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
            if code.co_flags & inspect.CO_COROUTINE:
                loop = loop or asyncio.new_event_loop()
                loop.run_until_complete(eval(code, ns))
            else:
                exec(code, ns)
            ctx.checkpoint(i + 1, checkpointable(ns, skip), len(statements))
    finally:
        if loop is not None:
            loop.close()
    return {"statements": len(statements),
            "variables": sorted(checkpointable(ns, skip))}
