"""durable_nb.testing pools: scripted workers, and the real worker code in threads."""

from __future__ import annotations

import asyncio

import pytest

from durable_nb.core import serial as _serial
from durable_nb.core.config import EngineConfig
from durable_nb.engine.engine import Engine
from durable_nb.testing import EngineHarness, ManualClock, ThreadPool


def double(x: int) -> int:
    return 2 * x


def test_a_killed_fake_worker_exits_on_the_next_loop_turn(tmp_path):
    async def main() -> None:
        async with EngineHarness(tmp_path) as h:
            run = await h.trigger(h.task("t"))
            w = h.worker_of(run)
            w.kill()
            assert w.exit_code is None, "like a process, it is not gone at once"
            await h.settle()
            assert w.exit_code == -9 and w not in h.pool.workers
            with pytest.raises(AssertionError, match="no worker executes"):
                h.worker_of("run_other")

    asyncio.run(main())


def test_a_fake_worker_without_an_attempt_says_so(tmp_path):
    async def main() -> None:
        async with EngineHarness(tmp_path, max_workers=1) as h:
            h.pool.ensure(1)
            await h.settle()
            with pytest.raises(AssertionError, match="was given no attempt"):
                _ = h.pool.workers[0].attempt

    asyncio.run(main())


def test_a_thread_pool_runs_the_real_worker_code(tmp_path):
    async def main() -> dict:
        config = EngineConfig(db_path=tmp_path / "t.duckdb", max_workers=2,
                              min_idle_workers=0)
        engine = Engine(config, clock=ManualClock(),
                        pool=lambda events: ThreadPool(events, 2))
        await engine.start()
        try:
            code = _serial.dumps(double, "task code")
            h = _serial.task_hash(code, "double", {})
            engine.register_task({"hash": h, "task_id": "double", "code": code,
                                  "options": {}, "sys_path": []})
            run_id, _ = await engine.trigger(h, _serial.dumps(((21,), {}), "payload"))
            return await engine.wait_result(run_id, 30)
        finally:
            await engine.stop()

    row = asyncio.run(main())
    assert row["status"] == "COMPLETED" and _serial.loads(row["output"]) == 42
