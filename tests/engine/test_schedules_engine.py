"""Schedules in the engine, deterministically (manual clock, scripted workers): each tick
fires exactly once, also across restarts and a lost last-tick write; missed ticks follow
catch_up; overlap skips, queues (durably) or allows; daylight-saving days in
America/New_York; pause, resume, delete; options refused with a clear message."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from inprocess import run_async

from durable_nb.core import serial as _serial
from durable_nb.engine.schedules import ScheduleNotFound
from durable_nb.store.records import Update
from durable_nb.testing import EngineHarness, ManualClock

T0 = 1_800_000_000.0  # the harness's clock starts here (a whole minute)
NY = ZoneInfo("America/New_York")
PAYLOAD = _serial.dumps(((), {}), "payload")


async def _put(h: EngineHarness, sid: str, task: str, **spec) -> dict:
    return await h._engine.put_schedule(sid, {"task_hash": task, "payload": PAYLOAD, **spec})


async def _ticks(h: EngineHarness, sid: str) -> list[float]:
    rows = await h.rows("SELECT schedule_tick FROM runs WHERE schedule_id = ? "
                        "ORDER BY schedule_tick", sid)
    return [r["schedule_tick"] for r in rows]


async def _runs(h: EngineHarness, sid: str) -> list[dict]:
    return await h.rows("SELECT id, status, schedule_tick, idempotency_key FROM runs "
                        "WHERE schedule_id = ? ORDER BY schedule_tick", sid)


async def _finish_all(h: EngineHarness, sid: str) -> None:
    for r in await _runs(h, sid):
        if r["status"] == "EXECUTING":
            h.worker_of(r["id"]).done(None)
    await h.settle()


@run_async
async def test_cron_ticks_fire_once_each_with_the_tick_in_the_run(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("report")
        info = await _put(h, "every-minute", t, cron="* * * * *", overlap="allow")
        assert info["next_tick"] == T0 + 60 and info["last_tick"] is None
        for _ in range(5):
            await h.advance(60)
            await _finish_all(h, "every-minute")
        assert await _ticks(h, "every-minute") == [T0 + 60 * i for i in range(1, 6)]
        runs = await _runs(h, "every-minute")
        assert runs[0]["idempotency_key"] == f"schedule:every-minute:{int(T0 + 60)}"
        info = h._engine.get_schedule("every-minute")
        assert info["last_tick"] == T0 + 300 and info["next_tick"] == T0 + 360
        assert info["task_id"] == "report" and info["kind"] == "task"


@run_async
async def test_interval_ticks_fall_on_multiples_of_the_interval(tmp_path):
    async with EngineHarness(tmp_path, clock=ManualClock(T0 + 7)) as h:
        t = h.task("t")
        info = await _put(h, "quarter", t, every="15m")
        assert info["every"] == 900 and info["next_tick"] == T0 + 900  # :00, :15, ...
        await h.advance(900)
        assert await _ticks(h, "quarter") == [T0 + 900]


@run_async
async def test_a_restart_never_fires_a_tick_twice_even_without_its_last_tick(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        await _put(h, "s", t, every=60, catch_up="all", overlap="allow")
        await h.advance(60)
        await _finish_all(h, "s")
        await h.restart()
        assert await _ticks(h, "s") == [T0 + 60], "a restart at once fires nothing new"
        # the engine died after journaling the run but before the schedule's last tick
        h._engine.state.write([Update("schedules", {"id": "s"}, {"last_tick": None})])
        await h.settle()
        await h.stop()
        h.clock.advance(60)  # down over one tick
        await h.start()
        assert await _ticks(h, "s") == [T0 + 60, T0 + 120], "the tick of the run not again"
        await h.advance(60)
        assert await _ticks(h, "s") == [T0 + 60, T0 + 120, T0 + 180]


async def _downtime(tmp_path, catch_up: str, down: float) -> list[float]:
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        await _put(h, "s", t, every=60, catch_up=catch_up, overlap="allow")
        await h.advance(60)
        await h.stop()
        h.clock.advance(down)
        await h.start()
        ticks = await _ticks(h, "s")
        await h.advance(60)
        assert (await _ticks(h, "s"))[-1] == T0 + 420, "then the regular ticks"
        return ticks


@run_async
async def test_catch_up_after_downtime_skip_once_all(tmp_path):
    down = 330  # down from T0+60 to T0+390: five ticks missed (T0+120 .. T0+360)
    assert await _downtime(tmp_path / "skip", "skip", down) == [T0 + 60]
    assert await _downtime(tmp_path / "once", "once", down) == [T0 + 60, T0 + 360]
    assert await _downtime(tmp_path / "all", "all", down) == [T0 + 60 * i for i in range(1, 7)]


@run_async
async def test_catch_up_all_is_capped(tmp_path):
    async with EngineHarness(tmp_path, max_workers=1) as h:
        t = h.task("t")
        await _put(h, "s", t, every=1, catch_up="all", overlap="allow")
        await h.stop()
        h.clock.advance(1500)
        await h.start()
        ticks = await _ticks(h, "s")
        assert len(ticks) == 1000 and ticks[-1] == T0 + 1500 and ticks[0] == T0 + 501


@run_async
async def test_overlap_skip_records_the_tick_without_a_run(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        await _put(h, "s", t, every=60)  # overlap "skip" by default
        await h.advance(60)
        await h.advance(60)
        info = h._engine.get_schedule("s")
        assert await _ticks(h, "s") == [T0 + 60]
        assert info["skipped"] == 1 and info["last_tick"] == T0 + 120
        assert info["active_runs"] == 1
        await _finish_all(h, "s")
        assert h._engine.get_schedule("s")["active_runs"] == 0
        await h.advance(60)
        assert await _ticks(h, "s") == [T0 + 60, T0 + 180]


@run_async
async def test_overlap_queue_fires_owed_ticks_in_order_also_after_a_restart(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        await _put(h, "s", t, every=60, overlap="queue")
        await h.advance(180)  # a run for T0+60; T0+120 and T0+180 owed
        assert await _ticks(h, "s") == [T0 + 60]
        assert h._engine.get_schedule("s")["pending"] == [T0 + 120, T0 + 180]
        await h.restart()  # the running run is resumed; the owed ticks are still owed
        assert h._engine.get_schedule("s")["pending"] == [T0 + 120, T0 + 180]
        assert await _ticks(h, "s") == [T0 + 60]
        await _finish_all(h, "s")
        assert await _ticks(h, "s") == [T0 + 60, T0 + 120]
        await _finish_all(h, "s")
        assert await _ticks(h, "s") == [T0 + 60, T0 + 120, T0 + 180]
        assert h._engine.get_schedule("s")["pending"] == []


@run_async
async def test_overlap_allow_starts_anyway(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        await _put(h, "s", t, every=60, overlap="allow")
        await h.advance(120)
        runs = await _runs(h, "s")
        assert [r["status"] for r in runs] == ["EXECUTING", "EXECUTING"]
        assert h._engine.get_schedule("s")["active_runs"] == 2


def _local(t: float) -> str:
    return datetime.fromtimestamp(t, NY).strftime("%Y-%m-%d %H:%M %Z")


@run_async
async def test_spring_forward_a_missing_wall_time_fires_after_the_gap(tmp_path):
    start = datetime(2025, 3, 7, 12, 0, tzinfo=NY).timestamp()
    async with EngineHarness(tmp_path, clock=ManualClock(start)) as h:
        t = h.task("t")
        await _put(h, "s", t, cron="30 2 * * *", timezone="America/New_York",
                   overlap="allow")
        await h.advance(4 * 86400)
        assert [_local(x) for x in await _ticks(h, "s")] == [
            "2025-03-08 02:30 EST", "2025-03-09 03:00 EDT",  # 02:30 does not exist that day
            "2025-03-10 02:30 EDT", "2025-03-11 02:30 EDT"]


@run_async
async def test_fall_back_a_repeated_wall_time_fires_once(tmp_path):
    start = datetime(2025, 10, 31, 12, 0, tzinfo=NY).timestamp()
    async with EngineHarness(tmp_path, clock=ManualClock(start)) as h:
        t = h.task("t")
        await _put(h, "daily", t, cron="30 1 * * *", timezone="America/New_York",
                   overlap="allow")
        await _put(h, "hourly", t, cron="0 * * * *", timezone="America/New_York",
                   overlap="allow")
        await h.advance(3 * 86400)
        assert [_local(x) for x in await _ticks(h, "daily")] == [
            "2025-11-01 01:30 EDT", "2025-11-02 01:30 EDT", "2025-11-03 01:30 EST"]
        hourly = await _ticks(h, "hourly")
        assert all(b - a == 3600 for a, b in zip(hourly, hourly[1:], strict=False)), \
            "every hour in real time, both passes of the repeated hour included"
        assert "2025-11-02 01:00 EDT" in map(_local, hourly)
        assert "2025-11-02 01:00 EST" in map(_local, hourly)


@run_async
async def test_pause_resume_and_delete(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        await _put(h, "s", t, every=60, overlap="allow", catch_up="all")
        info = await h._engine.pause_schedule("s")
        assert info["paused"] and info["next_tick"] is None
        await h.advance(300)
        await h.restart()  # paused stays paused, and catches nothing up
        assert await _ticks(h, "s") == []
        assert h._engine.get_schedule("s")["paused"]
        await _put(h, "s", t, every=60, overlap="allow", catch_up="all")  # the same again
        assert h._engine.get_schedule("s")["paused"], "a replace keeps the paused state"
        info = await h._engine.pause_schedule("s", paused=False)
        assert not info["paused"] and info["next_tick"] == T0 + 360
        await h.advance(60)
        assert await _ticks(h, "s") == [T0 + 360], "ticks while paused are dropped"
        out = await h._engine.delete_schedule("s")
        assert out == {"id": "s", "deleted": True}
        await h.advance(120)
        assert await _ticks(h, "s") == [T0 + 360]
        with pytest.raises(ScheduleNotFound):
            h._engine.get_schedule("s")
        await h.restart()
        assert h._engine.list_schedules() == []
        await _put(h, "s", t, every=60)
        assert [s["id"] for s in h._engine.list_schedules()] == ["s"]


@run_async
async def test_a_changed_schedule_ticks_by_its_new_timing(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        await _put(h, "s", t, every=60, overlap="allow")
        await h.advance(60)
        info = await _put(h, "s", t, every=3600, overlap="allow")
        assert info["next_tick"] == T0 + 3600 and info["last_tick"] == T0 + 60
        await h.advance(3600)
        assert await _ticks(h, "s") == [T0 + 60, T0 + 3600]


@run_async
async def test_bad_options_are_refused_with_what_to_do(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        bad = [({"cron": "0 9 * *"}, "5 fields"), ({"cron": "61 * * * *"}, "bad cron"),
               ({"cron": "0 0 31 2 *"}, "never fires"), ({}, "exactly one of cron"),
               ({"cron": "* * * * *", "every": 60}, "got both"),
               ({"every": 0.5}, "at least 1 s"), ({"every": "soon"}, "not a duration"),
               ({"every": 60, "timezone": "Mars/Olympus"}, "unknown timezone"),
               ({"every": 60, "overlap": "wait"}, "overlap must be one of"),
               ({"every": 60, "catch_up": "some"}, "catch_up must be one of")]
        for spec, message in bad:
            with pytest.raises(ValueError, match=message):
                await _put(h, "s", t, **spec)
        with pytest.raises(LookupError, match="unknown task"):
            await _put(h, "s", "0" * 64, every=60)
        assert h._engine.list_schedules() == []


@run_async
async def test_runs_of_a_schedule_are_listed_latest_tick_first(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        await _put(h, "s", t, every=60, overlap="allow", tags=["nightly"])
        await h.advance(180)
        out = await h._engine.schedule_runs("s", limit=2)
        assert out["total"] == 3
        assert [r["schedule_tick"] for r in out["runs"]] == [T0 + 180, T0 + 120]
        assert out["runs"][0]["tags"] == ["nightly"]
        with pytest.raises(ScheduleNotFound):
            await h._engine.schedule_runs("nope")
        await asyncio.sleep(0)


@run_async
async def test_a_tick_that_cannot_fire_is_told_and_the_next_ones_fire(tmp_path):
    from durable_nb.core.errors import StoreUnavailable

    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        await _put(h, "s", t, every=60, overlap="allow")
        events: list[dict] = []
        h._engine.subscribe(lambda e: e.get("type") == "schedule" and events.append(e))
        real = h._engine.scheduler.create_runs

        def full_disk(*args, **kwargs):
            raise StoreUnavailable("the disk is full")

        h._engine.scheduler.create_runs = full_disk
        await h.advance(60)  # settles: the failing tick is not retried in a loop
        assert await _ticks(h, "s") == []
        assert [e["event"] for e in events] == ["error"] and "disk is full" in events[0]["error"]
        assert h._engine.get_schedule("s")["next_tick"] == T0 + 120
        h._engine.scheduler.create_runs = real
        await h.advance(60)
        assert await _ticks(h, "s") == [T0 + 120]
