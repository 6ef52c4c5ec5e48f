"""Queues and dispatch, deterministically: an engine on a manual clock, scripted workers."""

from __future__ import annotations

import pytest
from inprocess import run_async

from durable_nb.testing import EngineHarness


def _executing(h: EngineHarness, ids: list[str]) -> list[str]:
    return [r for r in ids if h.status(r) == "EXECUTING"]


@run_async
async def test_raising_a_queue_limit_starts_queued_runs_at_once_in_order(tmp_path):
    async with EngineHarness(tmp_path, max_workers=4) as h:
        t = h.task("t", queue="q", concurrency_limit=1)
        ids = [await h.trigger(t, i) for i in range(4)]
        assert _executing(h, ids) == ids[:1]
        h._engine.set_queue("q", 3)
        await h.settle()
        assert _executing(h, ids) == ids[:3], "the oldest queued runs start first"
        assert h._engine.queues() == [{"name": "q", "concurrency_limit": 3, "rate_limit": None,
                                       "executing": 3, "queued": 1}]


@run_async
async def test_lowering_a_queue_limit_holds_new_starts_until_runs_end(tmp_path):
    async with EngineHarness(tmp_path, max_workers=4) as h:
        t = h.task("t", queue="q", concurrency_limit=3)
        ids = [await h.trigger(t, i) for i in range(5)]
        assert _executing(h, ids) == ids[:3]
        h._engine.set_queue("q", 1)
        await h.settle()
        h.worker_of(ids[0]).done(0)
        h.worker_of(ids[1]).done(1)
        await h.settle()
        assert _executing(h, ids) == [ids[2]], "still over the new limit: nothing starts"
        h.worker_of(ids[2]).done(2)
        await h.settle()
        assert _executing(h, ids) == [ids[3]]
        h._engine.set_queue("q", None)  # no limit: everything left starts
        await h.settle()
        assert _executing(h, ids) == ids[3:]


@run_async
async def test_a_queue_limit_counts_per_concurrency_key(tmp_path):
    async with EngineHarness(tmp_path, max_workers=4) as h:
        t = h.task("t", queue="q", concurrency_limit=1)
        a1 = await h.trigger(t, concurrency_key="a")
        a2 = await h.trigger(t, concurrency_key="a")
        b1 = await h.trigger(t, concurrency_key="b")
        assert _executing(h, [a1, a2, b1]) == [a1, b1]


@run_async
async def test_runs_wait_for_a_free_worker_and_take_it_when_one_ends(tmp_path):
    async with EngineHarness(tmp_path, max_workers=1) as h:
        t = h.task("t")
        first, second = await h.trigger(t), await h.trigger(t)
        assert (h.status(first), h.status(second)) == ("EXECUTING", "QUEUED")
        worker = h.worker_of(first)
        worker.done("one")
        await h.settle()
        assert h.status(first) == "COMPLETED" and h.status(second) == "EXECUTING"
        assert h.worker_of(second) is worker, "the freed worker takes the next run"


@run_async
async def test_a_delayed_run_starts_when_its_delay_elapses(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t"), delay=90)
        await h.advance(89.999)
        assert h.status(run) == "DELAYED"
        await h.advance(0.001)
        assert h.status(run) == "EXECUTING"


@run_async
async def test_a_ttl_expires_a_run_that_did_not_start(tmp_path):
    async with EngineHarness(tmp_path, max_workers=1) as h:
        t = h.task("t")
        busy = await h.trigger(t)
        late = await h.trigger(t, ttl=60)
        await h.advance(60)
        assert h.status(late) == "EXPIRED"
        h.worker_of(busy).done()
        await h.settle()
        (row,) = await h.rows("SELECT status, error FROM runs WHERE id = ?", late)
        assert row["status"] == "EXPIRED" and "ttl" in row["error"]


@run_async
async def test_a_higher_priority_starts_first_within_its_queue(tmp_path):
    async with EngineHarness(tmp_path, max_workers=1) as h:
        t = h.task("t")
        busy = await h.trigger(t)
        low = await h.trigger(t)
        high = await h.trigger(t, priority=5)
        default = await h.trigger(t)
        order = []
        for _ in range(3):
            h.worker_of(busy).done()
            await h.settle()
            (busy,) = [r for r in (low, high, default) if h.status(r) == "EXECUTING"]
            order.append(busy)
        assert order == [high, low, default], "higher first, then creation order"


@run_async
async def test_aging_lets_a_long_waiting_run_go_before_a_newer_higher_one(tmp_path):
    async with EngineHarness(tmp_path, max_workers=1) as h:
        t = h.task("t")
        busy = await h.trigger(t)
        old = await h.trigger(t, priority=0)
        await h.advance(3 * 60 + 1)  # waited longer than 3 levels' worth of aging
        newer = await h.trigger(t, priority=3)
        h.worker_of(busy).done()
        await h.settle()
        assert (h.status(old), h.status(newer)) == ("EXECUTING", "QUEUED")


@run_async
async def test_priority_order_survives_a_restart(tmp_path):
    async with EngineHarness(tmp_path, max_workers=1) as h:
        t = h.task("t")
        busy = await h.trigger(t)
        low = await h.trigger(t, priority=-2)
        high = await h.trigger(t, priority=2)
        await h.restart()  # busy is resumed first (it was executing), then by priority
        (row,) = await h.rows("SELECT priority FROM runs WHERE id = ?", high)
        assert row["priority"] == 2
        h.worker_of(busy).done()
        await h.settle()
        assert (h.status(high), h.status(low)) == ("EXECUTING", "QUEUED")


@run_async
async def test_a_priority_out_of_range_is_refused(tmp_path):
    async with EngineHarness(tmp_path) as h:
        for bad in (1001, -1001, 1.5, True, "3"):
            with pytest.raises(ValueError, match="priority"):
                await h.trigger(h.task("t"), priority=bad)


def _started(h: EngineHarness, ids: list[str]) -> list[str]:
    return [r for r in ids if h.status(r) != "QUEUED"]


async def _finish_executing(h: EngineHarness, ids: list[str]) -> None:
    for r in ids:
        if h.status(r) == "EXECUTING":
            h.worker_of(r).done()
    await h.settle()


@run_async
async def test_a_rate_limit_is_a_sliding_window_per_concurrency_key(tmp_path):
    async with EngineHarness(tmp_path, max_workers=8) as h:
        t = h.task("t", queue="q", rate_limit=(2, 60))
        a = [await h.trigger(t, concurrency_key="a") for _ in range(5)]
        b = [await h.trigger(t, concurrency_key="b") for _ in range(1)]
        assert _started(h, a) == a[:2] and _started(h, b) == b, "2 per key, at once"
        await _finish_executing(h, a + b)
        assert _started(h, a) == a[:2], "finished runs still count: the window is time"
        await h.advance(59.999)
        assert _started(h, a) == a[:2]
        await h.advance(0.001)  # the first two starts leave the window together
        assert _started(h, a) == a[:4]
        await _finish_executing(h, a)
        await h.advance(60)
        assert _started(h, a) == a


@run_async
async def test_a_rate_limit_change_applies_at_once(tmp_path):
    async with EngineHarness(tmp_path, max_workers=8) as h:
        t = h.task("t", queue="q", rate_limit=(1, 3600))
        ids = [await h.trigger(t) for _ in range(4)]
        assert _started(h, ids) == ids[:1]
        h._engine.set_queue("q", None, {"limit": 3, "per": 3600})
        await h.settle()
        assert _started(h, ids) == ids[:3]
        h._engine.set_queue("q", None, None)  # no rate limit any more
        await h.settle()
        assert _started(h, ids) == ids
        with pytest.raises(ValueError, match="rate_limit.limit"):
            h._engine.set_queue("q", None, {"limit": 0, "per": 1})


@run_async
async def test_a_rate_limit_holds_across_a_restart(tmp_path):
    async with EngineHarness(tmp_path, max_workers=8) as h:
        t = h.task("t", queue="q", rate_limit=(2, 600))
        ids = [await h.trigger(t) for _ in range(3)]
        await _finish_executing(h, ids)
        await h.advance(100)
        await h.restart()

        async def started() -> int:
            rows = await h.rows("SELECT count(*) AS n FROM runs WHERE status <> 'QUEUED'")
            return rows[0]["n"]

        assert await started() == 2, "the window's two starts are remembered"
        await h.advance(499)
        assert await started() == 2
        await h.advance(1)
        assert await started() == 3
