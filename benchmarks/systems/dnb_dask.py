"""Benchmark 14: the Dask executor beside the engine's local workers, in one invocation.

Four configurations, each a fresh engine on a fresh DuckDB file: the default engine
with its local worker processes (8), and ``durable-nb serve --executor dask`` on one
Dask scheduler with 1, 2 and then 4 worker processes of one thread each (``dask
worker --nthreads 1 --no-nanny`` subprocesses, added as the configurations grow). In
each one, after a warm-up:

- step latency: one run of n no-op steps alone, each step timed inside the run (what
  user code waits for a durable step), median and p99;
- aggregate steps/s: 8 runs of n steps started together (with k Dask threads, k of them
  execute at a time: an attempt holds its Dask thread);
- runs/s: n one-step runs triggered at once, first trigger to last result (each run is
  one Dask task that connects back to the engine).

The CPU seconds of each process (engine, its local workers, the Dask scheduler and
workers, this client) over each phase are kept in ``extra.cpu``, per step or per run, to
show where the machine's cores go; the engine's own share is also a row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import _common as c
from dnb_concurrency import _tasks as concurrency_tasks
from durable_nb_bench import Engine, _import

CONCURRENT = 8  # runs of n steps started together (the local engine's default workers)
DASK_LEVELS = (1, 2, 4)
START_S = 90.0  # bound on a Dask process or the engine's view of the cluster coming up
TICK = os.sysconf("SC_CLK_TCK")


def _tasks(dn: Any) -> dict[str, Any]:
    """Benchmark 11's run of n timed steps and a one-step run (defined after connect, so
    they travel by value)."""

    @dn.step()
    def first(i: int) -> int:
        return i

    @dn.task(id="dask_one")
    def one() -> int:
        return first(0)

    return {"steps": concurrency_tasks(dn), "one": one}


class _Engine(Engine):
    """``durable-nb serve`` with extra arguments (the executor settings)."""

    def __init__(self, db: str, log: str, args: list[str]) -> None:
        super().__init__(db, log)
        self.args = args

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durable_nb", "serve", "--db", self.db, *self.args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


class _Cluster:
    """A Dask scheduler and worker processes of one thread each, on 127.0.0.1."""

    def __init__(self, work: str) -> None:
        self.work = work
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        with open(os.path.join(self.work, f"{name}.log"), "ab") as log:
            return subprocess.Popen([sys.executable, "-m", *args], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start(self, timeout: float) -> None:
        path = os.path.join(self.work, "scheduler.json")
        self.scheduler = self._spawn(
            ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", path], "scheduler")
        if not c.wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, timeout,
                            0.1):
            raise RuntimeError("the Dask scheduler did not start")
        time.sleep(0.1)  # the file is written in one go; let it close
        with open(path) as f:
            self.address = json.load(f)["address"]

    def grow(self, k: int) -> None:
        """Start worker processes until there are ``k``."""
        while len(self.workers) < k:
            i = len(self.workers)
            self.workers.append(self._spawn(
                ["distributed.cli.dask_worker", self.address, "--nthreads", "1", "--nworkers",
                 "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", "--name",
                 f"bench-{i}", "--local-directory", os.path.join(self.work, f"worker-{i}")],
                f"worker-{i}"))

    def pids(self) -> dict[str, list[int]]:
        return {"dask scheduler": [self.scheduler.pid] if self.scheduler else [],
                "dask workers": [p.pid for p in self.workers]}

    def stop(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in [*self.workers, self.scheduler]:
            if p is not None:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux; 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


class _Meter:
    """CPU seconds per group of processes over one phase."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        got = {name: sum(_cpu(p) for p in pids) for name, pids in self.groups.items()}
        got["client"] = sum(os.times()[:2])
        return got

    def per(self, count: int) -> dict[str, float]:
        """Microseconds of CPU per unit of work, by group."""
        end = self._read()
        return {k: round((end[k] - self.start[k]) / count * 1e6, 1) for k in end}


def _health(timeout: float = 5) -> dict[str, Any]:
    from durable_nb.client.client import get_client

    return get_client().request("GET", "/health", timeout=timeout)


def _measure(dn: Any, eng: _Engine, n: int, limit: float, groups: dict[str, list[int]]
             ) -> dict[str, Any]:
    """Latency alone, steps/s of 8 concurrent runs, runs/s of n one-step runs."""
    t = _tasks(dn)
    for h in [t["steps"].trigger(20) for _ in range(CONCURRENT)]:  # warm every worker up
        h.result(timeout=limit)
    for h in [t["one"].trigger() for _ in range(CONCURRENT)]:
        h.result(timeout=limit)
    groups = {"engine": [eng.proc.pid], **groups}
    if "engine workers" not in groups:
        groups["engine workers"] = c.children(eng.proc.pid)
    got: dict[str, Any] = {"cpu": {}}

    lat = [x * 1000 for x in t["steps"].trigger(n).result(timeout=limit)]
    got["median"], got["p99"] = c.median(lat), c.percentile(lat, 99)

    meter = _Meter(groups)
    start = time.perf_counter()
    for h in [t["steps"].trigger(n) for _ in range(CONCURRENT)]:
        h.result(timeout=limit)
    got["steps_s"] = CONCURRENT * n / (time.perf_counter() - start)
    got["cpu"]["per step, us"] = meter.per(CONCURRENT * n)

    meter = _Meter(groups)
    start = time.perf_counter()
    for h in [t["one"].trigger() for _ in range(n)]:
        h.result(timeout=limit)
    got["runs_s"] = n / (time.perf_counter() - start)
    got["cpu"]["per run, us"] = meter.per(n)
    return got


def _configuration(dn: Any, work: str, name: str, args: list[str], threads: int, limit: float,
             n: int, groups: dict[str, list[int]]) -> dict[str, Any]:
    """One configuration: a fresh engine and database, measured, then stopped."""
    eng = _Engine(os.path.join(work, f"{name}.duckdb"), os.path.join(work, f"{name}.log"), args)
    eng.start()
    try:
        eng.connect(dn)
        if threads:  # the engine reads the cluster's size every second
            ok = c.wait_until(lambda: (_health().get("executor") or {}).get("threads") == threads,
                              START_S, 0.2)
            if not ok:
                raise RuntimeError(f"the engine did not see {threads} Dask threads: "
                                   f"{_health().get('executor')}")
        got = _measure(dn, eng, n, limit, dict(groups))
        got["executor"] = _health().get("executor")
        return got
    finally:
        eng.stop()


def w_dask(n: int, work: str, p: dict[str, Any]) -> c.Result:
    dn = _import()
    try:
        import distributed  # noqa: F401 - only to say n/a when it is missing
    except ImportError as exc:
        raise c.NotAvailable(f"not available: distributed is not installed ({exc})") from exc
    limit = p["limit_s"] * 0.8 / (len(DASK_LEVELS) + 2)
    configs: dict[str, dict[str, Any]] = {}
    configs["local workers"] = _configuration(dn, work, "local", [], 0, limit, n, {})
    cluster = _Cluster(work)
    try:
        cluster.start(START_S)
        for k in DASK_LEVELS:
            cluster.grow(k)
            args = ["--executor", "dask", "--dask-scheduler", cluster.address]
            name = f"{k} Dask worker" + ("s" if k > 1 else "")
            configs[name] = _configuration(dn, work, f"dask{k}", args, k, limit, n, cluster.pids())
    finally:
        cluster.stop()

    metrics: dict[str, Any] = {}
    for name, g in configs.items():
        metrics[f"{name}: one-step runs"] = c.metric(g["runs_s"], "runs/s")
        metrics[f"{name}: {CONCURRENT} runs of n steps, aggregate"] = c.metric(g["steps_s"],
                                                                               "steps/s")
        metrics[f"{name}: step latency median"] = c.metric(g["median"], "ms")
        metrics[f"{name}: step latency p99"] = c.metric(g["p99"], "ms")
        metrics[f"{name}: engine CPU per step"] = c.metric(
            g["cpu"]["per step, us"]["engine"], "us")
        metrics[f"{name}: engine CPU per run"] = c.metric(g["cpu"]["per run, us"]["engine"], "us")
    top = configs[f"{max(DASK_LEVELS)} Dask workers"]
    return c.result(top["runs_s"], "runs/s", n=n, cores=os.cpu_count(),
                    cpu={name: g["cpu"] for name, g in configs.items()},
                    executor={name: g["executor"] for name, g in configs.items()},
                    metrics=metrics)
