"""Across hosts: the Dask scheduler and two workers in network namespaces of their own
(private addresses, the engine's database folder and runtime files hidden from them), the
engine in the test's namespace bound to the bridge's address.

- Runs with steps and a durable sleep complete on both workers: nothing assumes a shared
  filesystem or localhost.
- A worker cut off the network in the middle of a step: once the channel's keepalive
  probes go unanswered (about 25 s: its heartbeat is gone), the attempt is CRASHED and the
  run completes on the other host, without running its recorded step again.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from _support import EngineProcess, wait_for
from cluster_tasks import looks, notes, survives
from hosts import TestHosts, hosts_unavailable

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def cluster_on_hosts(tmp_path) -> Iterator[tuple[TestHosts, EngineProcess, str]]:
    """(the hosts, an engine using their cluster, the engine's database folder)."""
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
            yield hosts, engine, str(db_dir)
        finally:
            engine.stop()


def _host(hosts: TestHosts, address: str) -> str:
    return next(n for n in ("w1", "w2") if address.startswith(f"tcp://{hosts.addr(n)}:"))


def test_runs_complete_on_dask_workers_on_other_hosts(tmp_path):
    with cluster_on_hosts(tmp_path) as (hosts, _engine, db_dir):
        handles = [looks.trigger(os.path.join(db_dir, "store.duckdb"), 0.6) for _ in range(6)]
        results = [h.result(timeout=120) for h in handles]
        assert {_host(hosts, r[0]) for r in results} == {"w1", "w2"}  # both hosts worked
        assert not any(r[1] for r in results)  # neither saw the engine's database
        for h in handles:  # suspended at the sleep, resumed in a second attempt
            attempts = h.attempts
            assert [a["outcome"] for a in attempts] == ["SUSPENDED", "COMPLETED"]
            assert all(_host(hosts, a["worker"]) for a in attempts)


def test_a_worker_cut_off_mid_step_loses_the_attempt_not_the_run(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    with cluster_on_hosts(tmp_path) as (hosts, _engine, _db):
        h = survives.trigger(str(marks))
        wait_for(lambda: notes(marks, "blocking"), 60, "the blocking step to start")
        first = wait_for(lambda: h.attempts and h.attempts[0]["worker"] and h.attempts[0], 30,
                         "the attempt's Dask worker to be recorded")
        cut = _host(hosts, first["worker"])
        hosts.partition(cut)
        one, two, address = h.result(timeout=120)
        assert (one, two) == ("one", "two")
        assert len(notes(marks, "first")) == 1  # the recorded step did not run again
        attempts = h.attempts
        assert attempts[0]["outcome"] == "CRASHED"
        assert "lost the network" in attempts[0]["error_message"]
        assert first["worker"] in attempts[0]["error_message"]
        assert _host(hosts, attempts[-1]["worker"]) == _host(hosts, address) != cut
