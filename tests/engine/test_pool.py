"""engine.pool: every pool the engine can be given offers the same interface."""

from __future__ import annotations

import inspect

import pytest

from durable_nb.engine.pool import Worker, WorkerPool
from durable_nb.engine.processes import ProcessPool, WorkerProc
from durable_nb.testing import FakePool, FakeWorker, ThreadPool, ThreadWorker


def _members(protocol: type) -> set[str]:
    return {n for n in vars(protocol) if not n.startswith("_")}


@pytest.mark.parametrize("pool", [ProcessPool, ThreadPool, FakePool])
def test_each_pool_has_the_pool_interface(pool):
    missing = {n for n in _members(WorkerPool) if not hasattr(pool, n)
               and n not in inspect.signature(pool.__init__).parameters}
    if "workers" in missing:  # an attribute set by __init__
        missing.discard("workers")
    assert missing == set()
    assert inspect.iscoroutinefunction(pool.close)


@pytest.mark.parametrize("worker", [WorkerProc, ThreadWorker, FakeWorker])
def test_each_worker_has_the_worker_interface(worker):
    methods = {n for n in _members(Worker) if callable(getattr(Worker, n, None))}
    assert {"send", "kill"} <= methods
    assert all(hasattr(worker, n) for n in methods | {"exit_code"})
