"""Where each attempt runs: local worker processes, or Dask, as one pool.

With ``executor = "dask"`` the engine keeps its local process pool (started only when a
run needs it) beside the ``dask_pool.DaskPool``. ``route`` decides per run: tasks declared
``executor="local"`` and %%durable cells (whose checkpoints are files beside the
database) run locally; every other task runs on Dask. Admission (queues, concurrency
keys) stays the scheduler's, for both.
"""

from __future__ import annotations

from typing import Any

from .dask_pool import DaskPool
from .processes import ProcessPool


def route(run: Any) -> str:
    """The kind of worker ``run`` needs: "local" or "dask"."""
    opts = run.task.options
    if opts.get("kind") == "cell" or opts.get("executor") == "local":
        return "local"
    return "dask"


class Executors:
    """The local pool and the Dask pool as one ``pool.WorkerPool``."""

    def __init__(self, local: ProcessPool, dask: DaskPool):
        self.local = local
        self.dask = dask
        self.route = route

    @property
    def workers(self) -> list[Any]:
        return [*self.local.workers, *self.dask.workers]

    def idle(self) -> list[Any]:
        return [*self.local.idle(), *self.dask.idle()]

    def ensure(self, wanted_idle: int) -> None:
        """``wanted_idle`` counts the runs waiting for a local worker only."""
        self.local.ensure(wanted_idle)

    async def start(self) -> None:
        await self.dask.start()

    async def close(self) -> None:
        await self.dask.close()
        await self.local.close()

    def describe(self) -> dict:
        return self.dask.describe()

    async def upload(self, filename: str, data: bytes) -> dict:
        return await self.dask.upload(filename, data)
