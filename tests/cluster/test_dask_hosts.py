"""Across hosts: the Dask scheduler and two workers in network namespaces of their own
(private addresses, the engine's database folder and runtime files hidden from them), the
engine in the test's namespace bound to the bridge's address. Runs with steps and a
durable sleep complete on both workers: nothing assumes a shared filesystem or localhost."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _support import EngineProcess, wait_for
from cluster_tasks import looks
from hosts import TestHosts, hosts_unavailable

pytestmark = pytest.mark.slow


def test_runs_complete_on_dask_workers_on_other_hosts(tmp_path):
    reason = hosts_unavailable()
    if reason is not None:
        pytest.skip(reason)
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    runtime = os.environ["JUPYTER_RUNTIME_DIR"]
    os.makedirs(runtime, exist_ok=True)
    hidden = [db_dir, runtime]
    log = open(tmp_path / "dask.log", "wb")
    with TestHosts(["sched", "w1", "w2"]) as hosts:
        scheduler = f"tcp://{hosts.addr('sched')}:8786"
        hosts.popen("sched", [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                              hosts.addr("sched"), "--port", "8786", "--no-dashboard"],
                    hide=hidden, stdout=log, stderr=subprocess.STDOUT)
        for name in ("w1", "w2"):
            hosts.popen(name, [sys.executable, "-m", "distributed.cli.dask_worker", scheduler,
                               "--host", hosts.addr(name), "--name", name, "--nworkers", "1",
                               "--nthreads", "1", "--no-dashboard"],
                        hide=hidden, stdout=log, stderr=subprocess.STDOUT)
        engine = EngineProcess(db_dir / "store.duckdb", [
            "--wait-grace", "0.3", "--executor", "dask", "--dask-scheduler", scheduler,
            "--executor-bind", hosts.bridge_addr])
        engine.start()
        try:
            executor = wait_for(lambda: (e := engine.client.request("GET", "/health")
                                         ["executor"])["threads"] >= 2 and e, 90,
                                "the engine to see both Dask workers")
            assert executor["listen"].startswith(hosts.bridge_addr + ":")
            handles = [looks.trigger(str(db_dir / "store.duckdb"), 0.6) for _ in range(6)]
            results = [h.result(timeout=120) for h in handles]
            workers = {f"tcp://{hosts.addr(n)}" for n in ("w1", "w2")}
            assert {r[0].rsplit(":", 1)[0] for r in results} == workers  # both hosts worked
            assert not any(r[1] for r in results)  # neither saw the engine's files
            for h in handles:  # suspended at the sleep, resumed in a second attempt
                attempts = h.attempts
                assert [a["outcome"] for a in attempts] == ["SUSPENDED", "COMPLETED"]
                assert all(a["worker"].rsplit(":", 1)[0] in workers for a in attempts)
        finally:
            engine.stop()
