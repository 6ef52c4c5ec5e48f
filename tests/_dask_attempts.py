"""Runs whose attempts are recorded as the Dask executor records them, for the tests of what
shows a Dask worker's address (``durable-nb show``, the run widget, the JupyterLab panel).

The Dask executor inserts an attempt's row as for a local worker and, once the attempt's
Dask task has connected back to the engine, writes the worker's address and the pid of the
process that runs the attempt with an ``Update`` of that row. ``dask_run`` runs a real task
on an in-process engine and writes those same Updates through that engine's own journal
writer (``set_worker``), so they land in the database as the executor's would.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import durable_nb as dn
from durable_nb.store.records import Update
from durable_nb.testing import TestEnvironment

# (address, pid) of the Dask worker that ran attempt 1, then attempt 2
WORKERS = (("tcp://10.0.0.3:40123", 4101), ("tcp://10.0.0.4:40777", 4202))

_FAILED: set[str] = set()


@dn.step
def load(name: str) -> dict:
    return {"name": name, "rows": 3}


@dn.task(id="dask-shown", retry=dn.Retry(max_attempts=2, min_timeout=0.01, randomize=False))
def on_two_workers(name: str) -> int:
    """Its first attempt fails after its step (as on a lost Dask worker), the second
    completes without running the step again."""
    data = load(name)
    if name not in _FAILED:
        _FAILED.add(name)
        raise ConnectionError("the Dask worker went away")
    return data["rows"]


def set_worker(env: TestEnvironment, run_id: str, number: int, address: str,
               pid: int) -> None:
    """Record that attempt ``number`` of the run ran on the Dask worker at ``address``, as
    the engine does when the attempt's Dask task connects back; durable once this returns."""
    engine = env.engine
    assert engine is not None, "the environment is not started"

    async def write() -> None:
        done = asyncio.get_running_loop().create_future()
        engine.state.write(
            [Update("attempts", {"run_id": run_id, "number": number},
                    {"worker": address, "worker_pid": pid})],
            lambda: done.done() or done.set_result(None))
        await done

    env._call(write())


@dn.task(id="dask-shown-once")
def on_one_worker(x: int) -> int:
    return x * 2


def dask_runs(db: Path) -> dict[str, str]:
    """Two completed runs in ``db``: ``"two"``, whose two attempts ran on the two
    ``WORKERS``, and ``"one"``, whose single attempt ran on the second; their ids."""
    with TestEnvironment(db, start=time.time()) as env:
        run = on_two_workers.trigger(str(db))
        assert run.result(timeout=60) == 3
        for number, (address, pid) in enumerate(WORKERS, start=1):
            set_worker(env, run.id, number, address, pid)
        assert [a["worker"] for a in run.attempts] == [w for w, _ in WORKERS]
        once = on_one_worker.trigger(21)
        assert once.result(timeout=60) == 42
        set_worker(env, once.id, 1, *WORKERS[1])
    return {"two": run.id, "one": once.id}
