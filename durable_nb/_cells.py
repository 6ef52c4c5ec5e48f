"""Running a %%durable cell in a worker: statement by statement, with a checkpoint of the
namespace after each one, so that a resume continues after the last completed statement."""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect

from . import _context

_SKIP = {"__builtins__", "__name__", "__doc__", "__loader__", "__spec__", "__package__"}


def split_statements(source: str) -> list[tuple[int, str]]:
    """(first line, source) of each top-level statement, decorators included."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    out = []
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        out.append((first, "".join(lines[first - 1:node.end_lineno])))
    return out


def names_read(source: str) -> set[str]:
    """Names a cell loads (candidates to take from the notebook's namespace)."""
    return {n.id for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def checkpointable(ns: dict, transient: set[str]) -> dict:
    return {k: v for k, v in ns.items() if k not in _SKIP and k not in transient}


def run_cell(source: str, inputs: dict, transient: list[str] = ()) -> dict:
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
            code = compile("\n" * (line - 1) + text, "<durable cell>", "exec",
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


# ---------------------------------------------------------------------- kernel side

_NOT_INPUTS = {"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___", "_oh", "_ih",
               "_dh"}


def cell_inputs(source: str, namespace: dict) -> dict:
    """The notebook variables a cell reads, which travel with it to the worker."""
    return {n: namespace[n] for n in sorted(names_read(source))
            if n in namespace and n not in _NOT_INPUTS and not n.startswith("_i")
            and n not in vars(builtins)}


def trigger_cell(source: str, namespace: dict, *, name: str | None = None, retries: int = 0,
                 queue: str | None = None, concurrency: int | None = None,
                 timeout: float | None = None, idempotency_key: str | None = None,
                 transient: list[str] = (), max_duration: float | None = None):
    """Start a durable run of a cell (plain Python source) and return its RunHandle."""
    from . import _serial
    from ._errors import NotPicklable
    from ._retry import Retry
    from ._tasks import Queue, Task

    split_statements(source)  # a syntax error fails here, in the kernel
    inputs = {k: v for k, v in cell_inputs(source, namespace).items() if k not in transient}
    for var, value in inputs.items():
        try:
            _serial.dumps(value, f"variable '{var}'")
        except NotPicklable as exc:
            raise NotPicklable(
                f"the cell reads {exc.args[0].split(' Return')[0]} It cannot travel to the "
                f"worker: re-create it inside the cell, or pass --transient {var} if the "
                "cell does not need it.") from None
    q = Queue(queue, concurrency) if queue else None
    retry = Retry(max_attempts=retries + 1, min_timeout=1, randomize=False)
    task = Task(run_cell, name or "cell", retry, q, max_duration, timeout)
    task.kind = "cell"
    return task.trigger(source, inputs, list(transient), idempotency_key=idempotency_key)


def fetch_variables(run, names: list[str] | None = None) -> dict:
    """The variables of a cell run's latest checkpoint (all, or ``names``)."""
    import base64

    from . import _serial

    query = {"values": 1, "names": ",".join(names) if names else None}
    out = run.client.request("GET", f"/runs/{run.id}/checkpoint", query=query, timeout=300)
    return {n: _serial.loads(base64.b64decode(b)) for n, b in out["values_b64"].items()}
