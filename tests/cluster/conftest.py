"""A real Dask cluster for the executor's tests: a LocalCluster of worker processes
(with nannies, so a killed worker comes back) and one more worker process declaring the
resource GPU=1, shared by the tests of a module; engines are `durable-nb serve`
subprocesses with ``--executor dask`` pointed at it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _support import EngineProcess, stop_process, wait_for

distributed = pytest.importorskip("distributed")


class Cluster:
    """The scheduler's address, a client, and the GPU worker's address."""

    def __init__(self, tmp: Path):
        self.local = distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0",
            host="127.0.0.1", silence_logs=40)
        self.address = self.local.scheduler_address
        self.client = distributed.Client(self.address, set_as_default=False)
        log = open(tmp / "gpu-worker.log", "ab")
        self.gpu_proc = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--name", "gpu",
             "--nthreads", "1", "--nworkers", "1", "--resources", "GPU=1", "--no-dashboard",
             "--host", "127.0.0.1", "--local-directory", str(tmp / "gpu-worker")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.gpu = wait_for(self._gpu_address, 60, "the GPU worker")

    def _gpu_address(self) -> str | None:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return next((a for a, w in workers.items() if w.get("name") == "gpu"), None)

    def workers(self) -> dict[str, int]:
        """Each Dask worker's address and pid."""
        return self.client.run(os.getpid)

    def wait_workers(self, n: int = 3) -> None:
        wait_for(lambda: len(self.client.scheduler_info(n_workers=-1)["workers"]) >= n, 60,
                 f"{n} Dask workers")

    def close(self) -> None:
        stop_process(self.gpu_proc, 10)
        self.client.close()
        self.local.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask"))
    yield c
    c.close()


@pytest.fixture
def dask_engine(tmp_path, cluster):
    """Factory: an engine on ``tmp_path/<name>.duckdb`` whose attempts run on ``cluster``."""
    engines: list[EngineProcess] = []

    def make(*args: str, name: str = "store") -> EngineProcess:
        e = EngineProcess(tmp_path / f"{name}.duckdb", [
            "--wait-grace", "0.3", "--executor", "dask", "--dask-scheduler", cluster.address,
            *args])
        e.start()
        engines.append(e)
        wait_for(lambda: e.client.request("GET", "/health")["executor"]["threads"] >= 5, 30,
                 "the engine to see the cluster")
        return e

    yield make
    for e in engines:
        e.stop()
