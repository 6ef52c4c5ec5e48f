"""The Dask scheduler dies and comes back (with a new worker, as a cluster manager would
start: Dask workers stop when their scheduler goes): runs triggered meanwhile wait in their
queues (nothing is handed to a client that is reconnecting, where it could be lost
unnoticed), /health says what is wrong, and everything completes once the cluster is back."""

from __future__ import annotations

import subprocess
import sys

import pytest
from _support import EngineProcess, free_port, stop_process, wait_for
from cluster_tasks import double_it

pytestmark = pytest.mark.slow


def test_runs_wait_out_a_scheduler_restart(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    log = open(tmp_path / "dask.log", "ab")

    def scheduler() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
            stdout=log, stderr=subprocess.STDOUT)

    def worker() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "2",
             "--no-dashboard", "--local-directory", str(tmp_path / "w")],
            stdout=log, stderr=subprocess.STDOUT)

    sched, workers = scheduler(), [worker()]
    engine = EngineProcess(tmp_path / "store.duckdb", [
        "--executor", "dask", "--dask-scheduler", address])
    try:
        engine.start()
        health = lambda: engine.client.request("GET", "/health")["executor"]  # noqa: E731
        wait_for(lambda: health()["threads"] >= 2, 60, "the engine to see the worker")
        assert double_it.trigger(1).result(timeout=60)[0] == 2
        sched.kill()
        sched.wait()
        wait_for(lambda: health()["problem"], 30, "the engine to notice the scheduler is gone")
        handles = [double_it.trigger(i) for i in range(4)]
        sched = scheduler()
        workers.append(worker())
        assert [h.result(timeout=120)[0] for h in handles] == [0, 2, 4, 6]
        assert all(len(h.attempts) == 1 for h in handles)  # none was lost on the way
        assert health()["problem"] is None
    finally:
        engine.stop()
        for w in workers:
            stop_process(w, 10)
        stop_process(sched, 10)
