"""Forks from Python: ``RunHandle.fork`` starts a run that reuses what a finished run
recorded before a step and runs the rest with the current version of its task
(``engine.forks`` does the copying); ``fork_cell`` forks a ``%%durable`` cell run with new
text, for ``%%durable fork`` (``ipython.fork``).

"The current version" of a task is the one this process defined last with ``@dn.task``
(``tasks.defined_task``), registered here if need be; a process that defined none gets the
newest version the engine knows of that task id.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ..core.errors import ApiError
from ..core.serial import b64
from ..core.source import names_assigned, split_statements
from .cells import cell_task
from .client import Client
from .tasks import RunHandle, Task, _payload, defined_task


def fork_run(run: RunHandle, from_step: str | int | None = None,
             task: Task | str | None = None) -> RunHandle:
    """``RunHandle.fork``: see there. A cell run is forked with its own text and options
    (``from_step`` is then a statement number)."""
    summary = run._summary if run._summary and "kind" in run._summary else run._poll()
    kind = summary.get("kind") or "task"
    body: dict[str, Any] = {"from_step": _from_step(from_step, kind)}
    if kind == "cell":
        if task is not None:
            raise ValueError("a cell run is forked with its own options; to run new text, "
                             "put `%%durable fork RUN --from N` above it in a cell")
        return _post(run, body, None)
    current = defined_task(summary["task_id"]) if task is None else task
    if current is not None and not isinstance(current, (Task, str)):
        raise TypeError(f"task must be a task (@dn.task) or a task hash, not "
                        f"{type(current).__name__}")
    return _post(run, body, current)


def _from_step(value: str | int | None, kind: str) -> str | None:
    """The step key (a task) or statement number (a cell) as the API takes it."""
    if value is None:
        return None
    if kind == "cell":
        if isinstance(value, bool) or not isinstance(value, (int, str)) \
                or not str(value).isdigit():
            raise ValueError(f"a cell run is forked from a statement number N (the "
                             f"checkpoint after statement N is restored), not {value!r}")
        return str(int(value))
    if not isinstance(value, str) or not value:
        raise ValueError(f"a task run is forked from a step key such as 'summarize#3' (its "
                         f"name and occurrence, as run.steps lists them), not {value!r}")
    return value


def _post(run: RunHandle, body: dict, task: Task | str | None) -> RunHandle:
    """POST the fork; a task the engine does not know (restarted on a new database) is
    registered again once."""
    client = run.client
    for again in (False, True):
        if isinstance(task, Task):
            body["task_hash"] = task._register(client)
        elif isinstance(task, str):
            body["task_hash"] = task
        try:
            out = client.request("POST", f"/runs/{run.id}/fork", body)
        except ApiError as exc:
            if type(exc) is not ApiError or exc.status != 409 or again \
                    or not isinstance(task, Task):
                raise
            client._registered.clear()
            continue
        return RunHandle(out["id"], run._client)
    raise AssertionError("unreachable")


def fork_cell(run: RunHandle, source: str, namespace: dict, from_statement: int | None,
              *, name: str | None = None, retries: int = 0, queue: str | None = None,
              concurrency: int | None = None, timeout: float | None = None,
              max_duration: float | None = None, transient: Collection[str] = (),
              first_line: int = 1, origin: dict | None = None,
              resources: Mapping[str, str] | None = None) -> tuple[RunHandle, int]:
    """Fork the cell run ``run`` with the cell text ``source``: the checkpoint after
    statement N (``from_statement``; default: its last one) is restored and ``source`` runs
    from statement N+1, with the options given (as ``%%durable`` takes them, ``resources``
    too: made again in every attempt, never from the checkpoint). The notebook
    variables the cell reads travel with it; those that its first N statements do not
    assign are taken from the notebook as it is now (a helper fixed since), the others
    from the checkpoint. Returns the fork and N."""
    client: Client = run.client
    statements = split_statements(source)  # a syntax error fails here, in the kernel
    n = from_statement
    if n is None:
        n = int(client.request("GET", f"/runs/{run.id}/checkpoint").get("statement") or 0)
    if n < 0 or n > len(statements):
        raise ValueError(f"--from {n}: the cell has {len(statements)} statements; the "
                         "checkpoint after statement N is restored (0 runs it all)")
    task, args = cell_task(source, namespace, name=name, retries=retries, queue=queue,
                           concurrency=concurrency, timeout=timeout, transient=transient,
                           max_duration=max_duration, first_line=first_line, origin=origin,
                           resources=resources)
    assigned = names_assigned("\n".join(text for _, text in statements[:n])) if n else set()
    fresh = sorted(k for k in args[1] if k not in assigned)
    payload = _payload(task.func, task.id, args, {}, client.max_payload)
    body = {"from_step": str(n), "payload_b64": b64(payload), "fresh": fresh,
            "origin": origin}
    return _post(run, body, task), n
