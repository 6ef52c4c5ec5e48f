"""Benchmark 12 for DBOS: ``DBOS.list_workflows`` over n finished workflows.

DBOS records one workflow of each of three names in its SQLite system database, then the
rows of ``workflow_status`` are cloned in bulk (SQLite ``INSERT ... SELECT`` over a
recursive range) with times spread over 90 days, one in 20 an ERROR, as durable_nb's
store is built. The queries are those of durable_nb's workload: the newest page, by
status, by name, a rare name, a deep page.
"""

from __future__ import annotations

import importlib
import sqlite3
import sys
import time
from typing import Any

import _common as c
from dbos import DBOS

DAY_MS = 86_400_000


@DBOS.workflow()
def etl(i: int) -> int:
    return i


@DBOS.workflow()
def report(i: int) -> int:
    return i


@DBOS.workflow()
def audit(i: int) -> int:
    return i


def _clone(db: str, n: int) -> None:
    """n copies of the recorded workflows, created over the last 90 days."""
    now = int(time.time() * 1000)
    conn = sqlite3.connect(db)
    try:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(workflow_status)")]
        names = "CASE WHEN i % 1000 = 17 THEN 'audit' WHEN i % 2 = 0 THEN 'etl' ELSE 'report' END"
        created = f"({now} - {90 * DAY_MS} + i * {90 * DAY_MS} / {n})"
        repl = {"workflow_uuid": "printf('wf_%015x', i)",
                "status": "CASE WHEN i % 20 = 3 THEN 'ERROR' ELSE 'SUCCESS' END",
                "name": names, "created_at": created, "updated_at": f"{created} + 500"}
        exprs = ", ".join(repl.get(col, f"t.{col}") for col in cols)
        (template,) = conn.execute("SELECT workflow_uuid FROM workflow_status "
                                   "WHERE name LIKE '%etl' LIMIT 1").fetchone()
        conn.execute(f"""
            INSERT INTO workflow_status ({', '.join(cols)})
            WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM r WHERE i < {n - 1})
            SELECT {exprs} FROM workflow_status t, r WHERE t.workflow_uuid = ?""", [template])
        conn.commit()
    finally:
        conn.close()


def _launch(work: str) -> str:
    """dbos_bench's ``launch`` of the running script (DBOS is launched once a process)."""
    main = sys.modules.get("__main__")
    fn = getattr(main, "launch", None) or importlib.import_module("dbos_bench").launch
    return fn(work)


def w_million(n: int, work: str, p: dict[str, Any]) -> c.Result:
    db = _launch(work)
    for fn in (etl, report, audit):
        DBOS.start_workflow(fn, 1).get_result()
    name = {w.name for w in DBOS.list_workflows(limit=10)}
    full = {short: next(x for x in name if x.endswith(short)) for short in
            ("etl", "report", "audit")}
    t0 = time.perf_counter()
    _clone(db, n)
    build_s = time.perf_counter() - t0
    page = {"limit": 50, "sort_desc": True, "load_input": False, "load_output": False}
    queries = {
        "first page (50)": lambda: DBOS.list_workflows(**page),
        "status=ERROR": lambda: DBOS.list_workflows(status="ERROR", **page),
        "name=report": lambda: DBOS.list_workflows(name=full["report"], **page),
        "name=audit (1 in 1,000)": lambda: DBOS.list_workflows(name=full["audit"], **page),
        "page at offset 10,000": lambda: DBOS.list_workflows(offset=10_000, **page),
    }
    lat = {}
    for label, fn in queries.items():
        fn()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        lat[label] = c.median(times)
    metrics = {label: c.metric(ms, "ms") for label, ms in lat.items()}
    metrics["slowest of these"] = c.metric(max(lat.values()), "ms")
    metrics["store build (bulk SQL)"] = c.metric(build_s, "s")
    metrics["process resident set"] = c.metric(c.rss()["VmRSS"], "MB")
    return c.result(c.median(list(lat.values())), "ms", n=n, metrics=metrics,
                    note="no total count: list_workflows returns a page only")
