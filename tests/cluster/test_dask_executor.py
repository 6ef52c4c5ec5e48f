"""The Dask executor on a real cluster: limits held by the engine, attempts inside Dask
worker processes, resources, local tasks, a Dask worker killed mid-step, and the engine
killed while its attempts run on Dask."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from _support import most_at_once, wait_for
from cluster_tasks import limited, notes, on_gpu, stays_local, survives, ticking

import durable_nb as dn

pytestmark = pytest.mark.slow


def test_200_runs_hold_the_queue_limit_and_run_inside_dask_workers(cluster, dask_engine):
    dask_engine()
    handles = [limited.trigger(i) for i in range(200)]
    results = [h.result(timeout=240) for h in handles]
    assert sorted(r[2] for r in results) == list(range(200))
    pids = cluster.workers()
    for address, pid, _ in results:
        assert pids.get(address) == pid  # the code ran in that Dask worker's process
    rows = dn.sql("SELECT a.started_at, a.ended_at, a.worker, a.worker_pid, a.outcome "
                  "FROM attempts a JOIN runs r ON r.id = a.run_id "
                  "WHERE r.task_id = 'limited'").rows
    assert len(rows) == 200 and {r[4] for r in rows} == {"COMPLETED"}
    assert {(r[2], r[3]) for r in rows} == {(a, p) for a, p, _ in results}
    # the cluster has 5 threads; the queue admits 3, and used them
    assert most_at_once([(r[0], r[1]) for r in rows]) == 3


def test_resources_send_a_task_only_to_the_worker_that_declares_them(cluster, dask_engine):
    dask_engine()
    handles = [on_gpu.trigger() for _ in range(6)]
    assert {h.result(timeout=60)[0] for h in handles} == {cluster.gpu}


def test_a_task_declared_local_stays_on_the_engines_own_workers(cluster, dask_engine):
    dask_engine()
    h = stays_local.trigger()
    pid = h.result(timeout=60)
    assert pid not in cluster.workers().values()
    assert h.attempts[0]["worker"] is None


def test_a_dask_worker_killed_mid_step_loses_the_attempt_not_the_run(
        cluster, dask_engine, tmp_path):
    dask_engine()
    marks = tmp_path / "marks"
    marks.mkdir()
    h = survives.trigger(str(marks))
    wait_for(lambda: notes(marks, "blocking"), 60, "the blocking step to start")
    first = wait_for(lambda: h.attempts and h.attempts[0]["worker"] and h.attempts[0], 30,
                     "the attempt's Dask worker to be recorded")
    os.kill(first["worker_pid"], signal.SIGKILL)
    one, two, address = h.result(timeout=120)
    assert (one, two) == ("one", "two")
    assert len(notes(marks, "first")) == 1  # the recorded step did not run again
    attempts = h.attempts
    assert attempts[0]["outcome"] == "CRASHED"
    assert first["worker"] in attempts[0]["error_message"]
    assert attempts[-1]["outcome"] == "COMPLETED"
    assert attempts[-1]["worker"] == address != first["worker"]
    cluster.wait_workers(3)  # the nanny brings the killed worker back for later tests


def _attempts_running(cluster) -> int:
    """Attempts executing in the cluster's processes (each has its engine watch thread)."""
    def count() -> int:
        return sum(t.name == "durable-engine-watch" for t in threading.enumerate())

    return sum(cluster.client.run(count).values())


def test_the_engine_killed_leaves_no_orphan_and_its_runs_complete(
        cluster, dask_engine, tmp_path):
    engine = dask_engine()
    marks = tmp_path / "marks"
    marks.mkdir()
    handles = [ticking.trigger(str(marks), 12) for _ in range(3)]
    ticks = lambda: [t for i in range(12) for t in notes(marks, f"tick-{i}")]  # noqa: E731
    wait_for(lambda: len(ticks()) >= 6, 60, "some steps to run on Dask")
    engine.kill()
    killed_at = time.time()
    wait_for(lambda: _attempts_running(cluster) == 0, 30, "the orphaned attempts to stop")
    late = [t for t in ticks() if t > killed_at + 0.05]
    assert not late, f"{len(late)} steps started after the engine was killed"
    engine.start()
    for h in handles:
        assert h.result(timeout=120) == sum(range(12))


def test_the_executor_from_the_environment_starts_a_local_cluster(tmp_path, monkeypatch):
    """DURABLE_NB_EXECUTOR=dask and no scheduler address: the engine starts a LocalCluster
    of its own, and /health names its scheduler and dashboard."""
    from _support import EngineProcess

    monkeypatch.setenv("DURABLE_NB_EXECUTOR", "dask")
    engine = EngineProcess(tmp_path / "own.duckdb", ["--wait-grace", "0.3"])
    engine.start()
    try:
        executor = wait_for(lambda: (e := engine.client.request("GET", "/health")
                                     ["executor"])["threads"] and e, 60, "the LocalCluster")
        assert executor["kind"] == "dask" and executor["scheduler"].startswith("tcp://127.0.0.1")
        assert executor["dashboard"].startswith("http://127.0.0.1")
        h = limited.trigger(1)
        address, _pid, _ = h.result(timeout=60)
        assert h.attempts[0]["worker"] == address
    finally:
        engine.stop()
