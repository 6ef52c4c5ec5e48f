"""durable_nb workloads 9 and 10: a %%durable cell holding a DataFrame-sized namespace.

The cell (through ``durable_nb.client.cells.trigger_cell``, the function behind
``%%durable``) builds the frame, then runs n statements, each followed by a checkpoint
of the namespace.  Timing comes from what the store records: one ``span_records`` row
of kind 'checkpoint' per statement, ending when the checkpoint reaches the engine, with
the namespace ``size``, the ``new_bytes`` it wrote and the ``seconds`` the worker spent
on it (pickling, hashing, writing files).  The interval between
two consecutive checkpoints is one statement's full cost: waiting until the previous
checkpoint is durable, running the statement, and checkpointing the namespace.
Only the public API and the store's tables are used, whatever the checkpoint format.
"""

from __future__ import annotations

import importlib.util
import json
import time
from typing import Any

import _common as c
import _data as d
from durable_nb_bench import _reserve_bytes, _rows, _session

HEAD = d.HEAD


def _checkpoints(dn: Any, run_id: str) -> list[tuple[float, dict[str, Any]]]:
    """(engine time, attributes) of the run's checkpoint spans, in statement order."""
    rows = _rows(dn.sql("select end_at, attributes from span_records where kind = 'checkpoint' "
                        f"and run_id = '{run_id}' order by end_at"))
    spans = [(float(at), json.loads(attrs or "{}")) for at, attrs in rows]
    return sorted(spans, key=lambda s: (s[1].get("statement", 0), s[0]))


def _clock_readings(run: Any) -> tuple[float, float]:
    """(t_built, t_durable): the worker's clock after the build, printed by the statement
    that runs once the build's checkpoint is durable, and the clock at that point."""
    for entry in run.logs:
        parts = str(entry.get("line", entry) if isinstance(entry, dict) else entry).split()
        if len(parts) == 3 and parts[0] == "clock":
            return float(parts[1]), float(parts[2])
    raise RuntimeError("the cell's clock line is missing from its logs")


def _run(kind: str, n: int, work: str, p: dict[str, Any]) -> c.Result:
    if not all(importlib.util.find_spec(m) for m in ("numpy", "pandas")):
        raise c.NotAvailable("numpy and pandas are needed in this interpreter (the engine's "
                             "workers run the cell in it)")
    nrows = d.rows(p)
    floors = d.inline_floors(work, nrows)
    with _session(work) as (dn, eng):
        from durable_nb.client.cells import trigger_cell

        t0 = time.perf_counter()
        run = trigger_cell(d.cell_source(kind, nrows, n), {}, name=f"bench-{kind}")
        run.result(timeout=p["limit_s"] * 0.8)
        wall = time.perf_counter() - t0
        spans = _checkpoints(dn, run.id)
        if len(spans) != HEAD + n:
            raise RuntimeError(f"{len(spans)} checkpoint spans recorded for {HEAD + n} statements")
        built, durable = _clock_readings(run)
        store = d.dir_bytes(work) - _reserve_bytes(work)
        attach = _attach_seconds(run)
    times = [spans[k][0] - spans[k - 1][0] for k in range(HEAD, HEAD + n)]
    new = [spans[k][1].get("new_bytes") for k in range(HEAD, HEAD + n)]
    own = [spans[k][1].get("seconds") for k in range(HEAD, HEAD + n)]
    return d.figures(
        kind, times, new, nrows, floors, durable - built,
        checkpoint_s=[x for x in own if x is not None] or None,
        wall_cell_s=wall, store_mb=store / 1e6,
        namespace_mb=(spans[-1][1].get("size") or 0) / 1e6,
        build_new_mb=(spans[HEAD - 2][1].get("new_bytes") or 0) / 1e6,
        attach_s=attach,
        attach_metric=c.metric(d.frame_bytes(nrows) / 1e9 / attach, "GB/s"),
    )


def _attach_seconds(run: Any) -> float:
    """Bringing the frame back into this process, as ``%durable attach`` does (best of 2:
    the pieces are in the page cache the second time, as they usually are)."""
    from durable_nb.client.cells import fetch_variables

    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        value = fetch_variables(run, ["df"])["df"]
        best = min(best, time.perf_counter() - t)
        del value
    return best



_WORKLOADS = d.workloads(_run)
w_namespace = _WORKLOADS["namespace"]  # imported by durable_nb_bench
w_column = _WORKLOADS["column"]

if __name__ == "__main__":
    c.run_main(_WORKLOADS)
