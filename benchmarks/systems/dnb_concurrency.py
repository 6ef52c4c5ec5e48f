"""Benchmark 11: concurrent runs of n no-op steps each, at concurrency 1, 2, 4 and 8.

Each run times its own steps (``time.perf_counter`` around every step call, in the
worker), so the per-step latency is what user code waits for a durable step: the
engine's reply comes once the step's journal record is fdatasync'd. Aggregate steps/s
is k*n over the wall time from the first trigger to the last result. The engine keeps
8 workers (its default), so 8 runs execute at once. The journal's sync counter, where
``/health`` gives it, turns into fdatasyncs per step.
"""

from __future__ import annotations

import time
from typing import Any

import _common as c
from durable_nb_bench import _session

LEVELS = (1, 2, 4, 8)


def _tasks(dn: Any) -> Any:
    @dn.step()
    def tick(i: int) -> int:
        return i

    @dn.task(id="timed_steps")
    def timed_steps(n: int) -> list[float]:
        clock = time.perf_counter
        out = []
        for i in range(n):
            t = clock()
            tick(i)
            out.append(clock() - t)
        return out

    return timed_steps


def _syncs(dn: Any) -> int | None:
    """The journal's fdatasync count from ``/health``, if this engine reports one."""
    try:
        from durable_nb.client.client import get_client

        store = get_client().request("GET", "/health", timeout=5).get("store", {})
    except Exception:  # noqa: BLE001 - an older engine or client: no counter
        return None
    value = store.get("journal_syncs")
    return int(value) if value is not None else None


def _level(dn: Any, task: Any, k: int, n: int, limit: float) -> dict[str, Any]:
    """k runs of n steps at once: aggregate steps/s, step latencies, syncs per step."""
    before = _syncs(dn)
    start = time.perf_counter()
    handles = [task.trigger(n) for _ in range(k)]
    lat = [x * 1000 for h in handles for x in h.result(timeout=limit)]
    elapsed = time.perf_counter() - start
    after = _syncs(dn)
    syncs = None if before is None or after is None else (after - before) / (k * n)
    return {"steps_s": k * n / elapsed, "median": c.median(lat), "p99": c.percentile(lat, 99),
            "syncs": syncs}


def w_concurrency(n: int, work: str, p: dict[str, Any]) -> c.Result:
    with _session(work) as (dn, eng):
        task = _tasks(dn)
        limit = p["limit_s"] * 0.8 / (len(LEVELS) + 1)
        for h in [task.trigger(20) for _ in range(max(LEVELS))]:  # warm: 8 workers up
            h.result(timeout=limit)
        got = {k: _level(dn, task, k, n, limit) for k in LEVELS}
    metrics: dict[str, Any] = {}
    for k, g in got.items():
        metrics[f"{k} runs: aggregate"] = c.metric(g["steps_s"], "steps/s")
        metrics[f"{k} runs: step latency median"] = c.metric(g["median"], "ms")
        metrics[f"{k} runs: step latency p99"] = c.metric(g["p99"], "ms")
        if g["syncs"] is not None:
            metrics[f"{k} runs: fdatasyncs per step"] = c.metric(g["syncs"], "syncs/step")
    top = got[max(LEVELS)]
    return c.result(top["steps_s"], "steps/s", n=n, runs=max(LEVELS),
                    scaling_1_to_8=round(top["steps_s"] / got[1]["steps_s"], 2),
                    metrics=metrics)
