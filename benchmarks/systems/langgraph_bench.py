"""LangGraph workloads, run inside the ``langgraph`` venv.

A "run" is one ``graph.invoke`` on a fresh ``thread_id``; a "step" is one
node execution (one superstep), after which the checkpointer writes a
checkpoint.  Durability: ``SqliteSaver`` on a file with ``durability="sync"``
(the checkpoint is committed before the next step starts).
"""

from __future__ import annotations

import inspect
import os
import sqlite3
import time
from typing import Any, TypedDict

import _common as c
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph


class Counter(TypedDict):
    i: int
    n: int


class BigState(TypedDict):
    blob: Any
    i: int
    n: int


def _step(state: dict[str, Any]) -> dict[str, int]:
    return {"i": state["i"] + 1}


def _route(state: dict[str, Any]) -> str:
    return "step" if state["i"] < state["n"] else END


def _loop_graph(schema: type, saver: SqliteSaver) -> Any:
    """One node looping on itself through a conditional edge until i == n."""
    g = StateGraph(schema)
    g.add_node("step", _step)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", _route, ["step", END])
    return g.compile(checkpointer=saver)


def _one_graph(saver: SqliteSaver) -> Any:
    g = StateGraph(Counter)
    g.add_node("step", _step)
    g.add_edge(START, "step")
    g.add_edge("step", END)
    return g.compile(checkpointer=saver)


def _saver(work: str) -> tuple[SqliteSaver, sqlite3.Connection, str]:
    path = os.path.join(work, "checkpoints.sqlite")
    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver, conn, path


def _durable_kwargs(graph: Any) -> dict[str, Any]:
    """``durability="sync"`` where supported (langgraph >= 0.6), else the older flag."""
    params = inspect.signature(graph.invoke).parameters
    if "durability" in params:
        return {"durability": "sync"}
    if "checkpoint_during" in params:
        return {"checkpoint_during": True}
    return {}


def _config(thread: str, limit: int = 25) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": limit}


def w_step(n: int, work: str, p: dict[str, Any]) -> c.Result:
    saver, conn, _ = _saver(work)
    graph = _loop_graph(Counter, saver)
    kw = _durable_kwargs(graph)
    graph.invoke({"i": 0, "n": 20}, _config("warm", 100), **kw)
    t = time.perf_counter()
    out = graph.invoke({"i": 0, "n": n}, _config("steps", n + 10), **kw)
    per = (time.perf_counter() - t) / n * 1000
    assert out["i"] == n
    conn.close()
    return c.result(per, "ms/step", n=n, durability=kw)


def w_run(n: int, work: str, p: dict[str, Any]) -> c.Result:
    saver, conn, _ = _saver(work)
    graph = _one_graph(saver)
    kw = _durable_kwargs(graph)
    for k in range(10):
        graph.invoke({"i": 0, "n": 1}, _config(f"warm-{k}"), **kw)
    t = time.perf_counter()
    for k in range(n):
        graph.invoke({"i": 0, "n": 1}, _config(f"run-{k}"), **kw)
    per = (time.perf_counter() - t) / n * 1000
    conn.close()
    return c.result(per, "ms/run", n=n, durability=kw)


def w_memory(n: int, work: str, p: dict[str, Any]) -> c.Result:
    """Resident set of the process (LangGraph is a library) after n runs on new threads."""
    saver, conn, _ = _saver(work)
    graph = _one_graph(saver)
    kw = _durable_kwargs(graph)
    before = c.rss()["VmRSS"]
    for k in range(n):
        graph.invoke({"i": 0, "n": 1}, _config(f"run-{k}"), **kw)
    mem = c.rss()
    conn.close()
    return c.result(mem["VmRSS"], "MB", n=n, metrics={
        "peak (VmHWM)": c.metric(mem["VmHWM"], "MB"),
        "process before the runs": c.metric(before, "MB")})


def w_checkpoint(n: int, work: str, p: dict[str, Any]) -> c.Result:
    """A 50 MB numpy array plus a counter, checkpointed n times; bytes on disk."""
    import numpy as np

    size = int(p.get("bytes", 50_000_000))
    blob = np.random.default_rng(0).random(size // 8)
    saver, conn, path = _saver(work)
    graph = _loop_graph(BigState, saver)
    kw = _durable_kwargs(graph)
    t = time.perf_counter()
    out = graph.invoke({"blob": blob, "i": 0, "n": n}, _config("big", n + 10), **kw)
    elapsed = time.perf_counter() - t
    assert out["i"] == n
    live = c.dir_bytes(work, os.path.basename(path))
    rows = conn.execute("select count(*) from checkpoints").fetchone()[0]
    conn.close()  # checkpoints the WAL into the main file
    size_after = c.dir_bytes(work, os.path.basename(path))
    return c.result(
        size_after / 1e6,
        "MB",
        n=n,
        checkpoints=rows,
        payload_mb=blob.nbytes / 1e6,
        metrics={
            "ratio to payload": c.metric(size_after / blob.nbytes, "x"),
            "with WAL, before close": c.metric(live / 1e6, "MB"),
            "time per checkpoint": c.metric(elapsed / n * 1000, "ms"),
        },
    )


class FrameState(TypedDict):
    df: Any
    i: int
    n: int


def _frame_graph(kind: str, saver: SqliteSaver, entries: list[float]) -> Any:
    """One node looping on itself n times; each execution is one statement of workload 9
    (touches only the counter) or 10 (replaces one column of the frame), and appends the
    clock at its entry to ``entries``."""

    def statement(state: dict[str, Any]) -> dict[str, Any]:
        entries.append(time.perf_counter())
        if kind == "column":
            df = state["df"]
            df["c3"] = df["c3"] + 1
            return {"df": df, "i": state["i"] + 1}
        return {"i": state["i"] + 1}

    g = StateGraph(FrameState)
    g.add_node("step", statement)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", _route, ["step", END])
    return g.compile(checkpointer=saver)


def _bytes_per_step(conn: sqlite3.Connection, n: int) -> list[float | None]:
    """Bytes stored for each node execution k = 1..n: the checkpoint after it (metadata
    step k) plus the task writes recorded against the checkpoint it started from."""
    steps = dict(conn.execute(
        "select checkpoint_id, json_extract(metadata, '$.step') from checkpoints").fetchall())
    sizes = {steps[cid]: size for cid, size in conn.execute(
        "select checkpoint_id, length(checkpoint) + length(metadata) from checkpoints")}
    writes: dict[int, int] = {}
    for cid, size in conn.execute(
            "select checkpoint_id, sum(length(value)) from writes group by checkpoint_id"):
        writes[steps.get(cid, -99)] = size
    return [sizes.get(k, 0) + writes.get(k - 1, 0) if k in sizes else None for k in range(1, n + 1)]


def _frame(kind: str, n: int, work: str, p: dict[str, Any]) -> c.Result:
    """Workloads 9 and 10: the frame in the graph's state, one superstep per statement."""
    import _data as d
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    nrows = d.rows(p)
    floors = d.inline_floors(work, nrows)
    ns: dict[str, Any] = {}
    exec(d.IMPORTS + f"df = {d.build_expr(nrows)}\n", ns)
    path = os.path.join(work, "checkpoints.sqlite")
    conn = sqlite3.connect(path, check_same_thread=False)
    # msgpack has no DataFrame type: pickle_fallback is LangGraph's way to store one
    saver = SqliteSaver(conn, serde=JsonPlusSerializer(pickle_fallback=True))
    saver.setup()
    entries: list[float] = []
    graph = _frame_graph(kind, saver, entries)
    kw = _durable_kwargs(graph)
    t0 = time.perf_counter()
    out = graph.invoke({"df": ns["df"], "i": 0, "n": n}, _config(f"frame-{kind}", n + 10), **kw)
    end = time.perf_counter()
    assert out["i"] == n and len(entries) == n
    marks = [*entries, end]
    times = [marks[k + 1] - marks[k] for k in range(n)]
    written = _bytes_per_step(conn, n)
    conn.close()
    return d.figures(kind, times, written, nrows, floors, entries[0] - t0, durability=kw,
                     db_mb=c.dir_bytes(work, "checkpoints.sqlite") / 1e6)


def w_namespace(n: int, work: str, p: dict[str, Any]) -> c.Result:
    return _frame("namespace", n, work, p)


def w_column(n: int, work: str, p: dict[str, Any]) -> c.Result:
    return _frame("column", n, work, p)


if __name__ == "__main__":
    c.run_main({"step": w_step, "run": w_run, "checkpoint": w_checkpoint, "memory": w_memory,
                "namespace": w_namespace, "column": w_column})
