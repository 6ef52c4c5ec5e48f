"""Benchmark 12: a store of n finished runs (and 10,000 runs waiting on an approval).

The store is built fast: a real engine records one finished run and one waiting run of
real tasks, then DuckDB clones them in bulk (``INSERT ... SELECT ... FROM range(n)``),
with their transitions, attempts, steps, waits and, for one finished run in 100, a cell
checkpoint whose value is a blob (one in ten of those a file in ``<db>.blobs/``). Runs are
spread over 90 days, in the order an engine writes them.

Measured with a real engine (``durable-nb serve``): ``runs()`` listing, filtering and
paging (main figure: median ms over the queries below), the panel's first page through
the REST route, engine start (process start to its first answer), its resident set with
the waiting runs loaded, and ``durable-nb prune --older-than 30d`` (about two thirds of
the runs). ``build_store`` is also used by the tests, at a small scale.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DAY = 86400.0
SPAN_DAYS = 90
TASK_IDS = ("etl", "report", "sync")  # the finished runs' tasks, round robin
RARE_TASK = "audit"  # one run in 1,000: a filter that matches few runs


def _clone_sql(table: str, cols: list[str], replace: dict[str, str], source: str,
               where: str) -> str:
    """INSERT copying ``table``'s rows that match ``where`` once per ``i`` of ``source``,
    with the columns in ``replace`` computed (``i`` and ``t`` in scope)."""
    exprs = ", ".join(replace.get(c, f"t.{c}") for c in cols)
    return f"INSERT INTO {table} SELECT {exprs} FROM {table} t, {source} WHERE {where}"


def _columns(conn: Any, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [table]).fetchall()]


def build_store(db: str | Path, n_finished: int, n_waiting: int, now: float | None = None,
                checkpoint_every: int = 100) -> dict[str, Any]:
    """Add ``n_finished`` finished runs and ``n_waiting`` WAITING runs to ``db`` (closed,
    holding one COMPLETED and one WAITING template run made by a real engine); returns
    what was built. Finished run ``i`` was created ``90 * (1 - i / n)`` days ago."""
    import duckdb

    now = time.time() if now is None else now
    conn = duckdb.connect(str(db))
    try:
        (done_id,), (wait_id,) = (conn.execute(
            f"SELECT id FROM runs WHERE status = '{s}' ORDER BY created_at LIMIT 1").fetchone()
            for s in ("COMPLETED", "WAITING"))
        conn.execute("BEGIN")
        _clone_runs(conn, done_id, n_finished, now, finished=True)
        _clone_runs(conn, wait_id, n_waiting, now, finished=False)
        blobs = _checkpoints(conn, Path(db), n_finished, now, checkpoint_every)
        conn.execute("COMMIT")
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
    return {"finished": n_finished, "waiting": n_waiting, "blobs": blobs}


def _clone_runs(conn: Any, template: str, n: int, now: float, finished: bool) -> None:
    """``n`` copies of run ``template`` and of its rows in the run's tables."""
    if n <= 0:
        return
    prefix = "run_f" if finished else "run_w"
    new_id = f"printf('{prefix}%015x', i)"
    if finished:
        created = f"({now} - {SPAN_DAYS * DAY} * (1 - i / {n}))"
        tasks = ", ".join(f"'{t}'" for t in TASK_IDS)
        run_cols = {
            "id": new_id,
            "status": "CASE WHEN i % 20 = 3 THEN 'FAILED' WHEN i % 50 = 7 THEN 'CANCELED' "
                      "ELSE 'COMPLETED' END",
            "task_id": f"CASE WHEN i % 1000 = 17 THEN '{RARE_TASK}' "
                       f"ELSE [{tasks}][i % {len(TASK_IDS)} + 1] END",
            "tags": "['batch', 'b' || (i % 100)::VARCHAR]",
            "idempotency_key": "CASE WHEN i % 10 = 0 THEN 'key-' || i::VARCHAR END",
            "created_at": created, "started_at": f"{created} + 0.01",
            "finished_at": f"{created} + 0.5", "updated_at": f"{created} + 0.5",
        }
    else:
        created = f"({now} - 3600 + i * 0.01)"
        run_cols = {"id": new_id, "created_at": created, "started_at": f"{created} + 0.01",
                    "updated_at": f"{created} + 0.5", "idempotency_key": "NULL"}
    src = f"range({n}) r(i)"
    conn.execute(_clone_sql("runs", _columns(conn, "runs"), run_cols, src,
                            f"t.id = '{template}'"))
    shift = f"({created} - (SELECT created_at FROM runs WHERE id = '{template}'))"
    times = {"transitions": ("created_at",), "attempts": ("started_at", "ended_at"),
             "steps": ("started_at", "ended_at"), "waits": ("created_at", "resolved_at"),
             "logs": ("created_at",), "span_records": ("start_at", "end_at")}
    for table, cols in times.items():
        repl = {"run_id": new_id, **{c: f"t.{c} + {shift}" for c in cols}}
        if table == "span_records":
            repl["span_id"] = f"{new_id} || '/' || t.span_id"
        conn.execute(_clone_sql(table, _columns(conn, table), repl, src,
                                f"t.run_id = '{template}'"))


def _checkpoints(conn: Any, db: Path, n: int, now: float, every: int) -> int:
    """A checkpoint for one finished run in ``every``, each with one value of its own and
    one shared by all (so pruning must keep what remaining runs refer to); one in ten of
    the own values is a file in ``<db>.blobs/``. Returns the number of blobs."""
    if n <= 0 or every <= 0:
        return 0
    shared = hashlib.sha256(b"shared value").hexdigest()
    conn.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?, false)",
                 [shared, b"s" * 64, 64, now])
    # run i's own value: 'value i' eight times, named by the sha256 of 'value i'; every
    # tenth one is external (a file)
    conn.execute(f"""
        CREATE TEMP TABLE own AS SELECT i, sha256('value ' || i::VARCHAR) AS hash,
            repeat('value ' || i::VARCHAR, 8) AS text, (i // {every}) % 10 = 0 AS external
        FROM range(0, {n}, {every}) r(i)""")
    conn.execute(f"""
        INSERT INTO blobs SELECT hash, CASE WHEN external THEN NULL ELSE text::BLOB END,
            strlen(text), {now}, external FROM own""")
    conn.execute(f"""
        INSERT INTO checkpoints SELECT printf('run_f%015x', i), 1, 1, r.created_at,
            '{{"vars": {{"x": "' || hash || '", "shared": "{shared}"}}, "counts": {{}}, '
            || '"seq": 1, "total": 2}}', strlen(text) + 64
        FROM own JOIN runs r ON r.id = printf('run_f%015x', i)""")
    blob_dir = db.with_name(db.name + ".blobs")
    blob_dir.mkdir(mode=0o700, exist_ok=True)
    files = conn.execute("SELECT hash, text FROM own WHERE external").fetchall()
    for h, text in files:
        (blob_dir / h).write_bytes(text.encode())
    (count,) = conn.execute("SELECT count(*) FROM own").fetchone()
    conn.execute("DROP TABLE own")
    return int(count) + 1


# ------------------------------------------------------------------ the workload

def _templates(dn: Any, eng: Any) -> None:
    """One finished run and one run waiting on an approval, recorded by the engine."""
    @dn.step()
    def fetch(i: int) -> int:
        return i

    @dn.task(id="etl")
    def etl(i: int) -> int:
        return fetch(i)

    @dn.task(id="review")
    def review(i: int) -> dict:
        fetch(i)
        return {"ok": dn.approval("publish", data={"i": i}).approved}

    etl.trigger(1).result(timeout=60)
    run = review.trigger(2)
    import _common as c

    if not c.wait_until(lambda: run.status == "WAITING", 60):
        raise RuntimeError(f"the template run did not wait: {run.status}")


def _timed(fn: Any, repeat: int = 5) -> float:
    """Median ms of ``repeat`` calls after one warm-up call."""
    import _common as c

    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return c.median(times)


def _queries(dn: Any, n: int) -> dict[str, float]:
    """Median ms of each list, filter and page of ``runs()`` and of the panel's request."""
    from durable_nb.client.tasks import get_client

    client = get_client()

    def page(**query: Any) -> Any:  # the REST route the panel and the runs widget use
        return client.request("GET", "/runs", query={"limit": 50, **query})

    q: dict[str, Any] = {
        "first page (50)": lambda: dn.runs(limit=50),
        "status=FAILED": lambda: dn.runs(status="FAILED", limit=50),
        "task=report": lambda: dn.runs(task="report", limit=50),
        f"task={RARE_TASK} (1 in 1,000)": lambda: dn.runs(task=RARE_TASK, limit=50),
        "page at offset 10,000 (REST)": lambda: page(offset=10_000),
        "search q=b42 (tag)": lambda: dn.runs(q="b42", limit=50),
        "status=WAITING": lambda: dn.runs(status="WAITING", limit=50),
        "REST GET /runs?limit=50 (panel)": lambda: page(),
        "REST status=COMPLETED,FAILED page 3": lambda: page(status="COMPLETED,FAILED",
                                                            offset=100),
    }
    return {name: _timed(fn) for name, fn in q.items()}


def w_million(n: int, work: str, p: dict[str, Any]) -> Any:
    """Build n finished runs + 10,000 waiting ones (1,000 in quick mode), then measure."""
    import _common as c
    from durable_nb_bench import Engine, _import

    n_wait = 1000 if p.get("quick") else 10_000
    db = os.path.join(work, "million.duckdb")
    dn = _import()
    eng = Engine(db, os.path.join(work, "engine.log"))
    eng.start()
    try:
        eng.connect(dn)
        _templates(dn, eng)
    finally:
        eng.stop()
    t0 = time.perf_counter()
    build_store(db, n, n_wait)
    build_s = time.perf_counter() - t0
    db_mb = os.path.getsize(db) / 1e6
    t0 = time.perf_counter()
    eng.start()
    try:
        eng.connect(dn)
        start_s = time.perf_counter() - t0
        assert eng.proc is not None
        mem = c.rss(eng.proc.pid)
        lat = _queries(dn, n)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "durable_nb", "prune", "--db", db,
                              "--older-than", "30d"], capture_output=True, text=True,
                             timeout=p["limit_s"])
        prune_s = time.perf_counter() - t0
        if out.returncode:
            raise RuntimeError(f"prune failed: {out.stderr[-400:]}")
        after = _timed(lambda: dn.runs(limit=50))
        mem_after = c.rss(eng.proc.pid)
    finally:
        eng.stop()
    metrics = {name: c.metric(ms, "ms") for name, ms in lat.items()}
    metrics.update({
        "slowest of these": c.metric(max(lat.values()), "ms"),
        "engine start (process to first answer)": c.metric(start_s, "s"),
        f"engine resident set, {n_wait:,} waiting runs": c.metric(mem["VmRSS"], "MB"),
        "engine resident set after the prune": c.metric(mem_after["VmRSS"], "MB"),
        "engine peak (VmHWM) after the queries and prune": c.metric(mem_after["VmHWM"], "MB"),
        "prune --older-than 30d (CLI, end to end)": c.metric(prune_s, "s"),
        "first page after the prune": c.metric(after, "ms"),
        "store build (bulk SQL)": c.metric(build_s, "s"),
        "database size": c.metric(db_mb, "MB"),
    })
    return c.result(c.median(list(lat.values())), "ms", n=n, waiting=n_wait,
                    pruned=out.stdout.strip()[-300:], metrics=metrics)
