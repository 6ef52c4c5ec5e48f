"""engine.processes.ProcessPool: real worker subprocesses, ready when they say hello, and
an exit the engine hears with its status."""

from __future__ import annotations

import asyncio
import os

from inprocess import run_async

from durable_nb.engine.pool import PoolEvents
from durable_nb.engine.processes import ProcessPool


@run_async
async def test_a_pool_starts_workers_on_demand_and_reports_a_kill():
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue = asyncio.Queue()
    exited = loop.create_future()
    pool = ProcessPool(2, 0, dict(os.environ), PoolEvents(
        on_ready=ready.put_nowait, on_message=lambda w, m: None,
        on_exit=lambda w: exited.done() or exited.set_result(w)))
    try:
        pool.ensure(5)  # more than the max: two start
        workers = [await asyncio.wait_for(ready.get(), 60) for _ in range(2)]
        assert len(pool.workers) == 2 and sorted(pool.idle(), key=id) == sorted(workers, key=id)
        workers[0].kill()
        gone = await asyncio.wait_for(exited, 60)
        assert gone is workers[0] and gone.exit_code == -9
        assert pool.workers == [workers[1]]
    finally:
        await pool.close()
