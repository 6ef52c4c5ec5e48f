"""Debounced triggers, deterministically: an engine on a manual clock, scripted workers.

Triggers of one task with the same debounce key collapse into one run: trailing runs
start ``delay`` after the latest trigger with the latest payload; leading runs start at
once and swallow the triggers within the window. Restarts keep the windows."""

from __future__ import annotations

import pytest
from inprocess import run_async

from durable_nb.core import serial as _serial
from durable_nb.testing import EngineHarness


def trailing(key: str = "k", delay: float = 5.0) -> dict:
    return {"key": key, "delay": delay, "mode": "trailing"}


def leading(key: str = "k", delay: float = 5.0) -> dict:
    return {"key": key, "delay": delay, "mode": "leading"}


def args_of(payload: bytes) -> tuple:
    return _serial.loads(payload)[0]


async def _trigger(h: EngineHarness, t: str, *args, **options) -> tuple[str, bool]:
    payload = _serial.dumps((args, {}), "payload")
    out = await h._engine.trigger(t, payload, **options)
    await h.settle()
    return out


@run_async
async def test_trailing_triggers_collapse_into_one_run_with_the_last_payload(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        first, created = await _trigger(h, t, "a", debounce=trailing())
        assert created and h.status(first) == "DELAYED"
        for arg in ("b", "c"):
            await h.advance(2)
            again, created = await _trigger(h, t, arg, debounce=trailing())
            assert again == first and not created
        start = h.clock.now() + 5
        await h.advance(4.999)
        assert h.status(first) == "DELAYED", "the window moved to 5 s after the last trigger"
        await h.advance(0.001)
        assert h.status(first) == "EXECUTING"
        assert args_of(h.worker_of(first).attempt["payload"]) == ("c",)
        (row,) = await h.rows("SELECT * FROM runs")
        assert args_of(row["payload"]) == ("c",), "one run in the store, with the last payload"
        assert (row["debounce_key"], row["debounce_until"]) == ("k", start)
        assert row["started_at"] == start


@run_async
async def test_once_a_trailing_run_started_the_next_trigger_makes_a_new_run(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        first, _ = await _trigger(h, t, 1, debounce=trailing())
        await h.advance(5)
        assert h.status(first) == "EXECUTING"
        second, created = await _trigger(h, t, 2, debounce=trailing())
        assert created and second != first and h.status(second) == "DELAYED"
        h.worker_of(first).done("one")
        await h.advance(5)
        assert args_of(h.worker_of(second).attempt["payload"]) == (2,)


@run_async
async def test_keys_and_tasks_have_windows_of_their_own(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t, u = h.task("t"), h.task("u")
        a, _ = await _trigger(h, t, debounce=trailing("a"))
        b, _ = await _trigger(h, t, debounce=trailing("b"))
        other, _ = await _trigger(h, u, debounce=trailing("a"))
        plain, _ = await _trigger(h, t)
        assert len({a, b, other, plain}) == 4
        assert h.status(plain) == "EXECUTING", "a trigger without debounce is not held"


@run_async
async def test_leading_starts_at_once_and_the_window_extends_with_each_trigger(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        run, created = await _trigger(h, t, "first", debounce=leading())
        assert created and h.status(run) == "EXECUTING"
        await h.advance(4)
        assert await _trigger(h, t, "second", debounce=leading()) == (run, False)
        worker = h.worker_of(run)
        worker.done(1)
        await h.settle()
        await h.advance(4)  # 8 s after the first trigger, 4 s after the latest one
        assert await _trigger(h, t, "third", debounce=leading()) == (run, False), \
            "a finished run still answers within its window"
        assert args_of(worker.attempt["payload"]) == ("first",)
        (row,) = await h.rows("SELECT debounce_until, status FROM runs")
        assert row == {"debounce_until": h.clock.now() + 5, "status": "COMPLETED"}
        await h.advance(5)
        new, created = await _trigger(h, t, "fourth", debounce=leading())
        assert created and new != run and h.status(new) == "EXECUTING"


@run_async
async def test_a_restart_in_a_trailing_window_keeps_one_run_with_the_last_payload(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        run, _ = await _trigger(h, t, "a", debounce=trailing())
        await h.advance(2)
        await _trigger(h, t, "b", debounce=trailing())
        await h.restart()
        await h.advance(1)
        assert h.status(run) == "DELAYED"
        assert await _trigger(h, t, "c", debounce=trailing()) == (run, False)
        await h.advance(4.999)
        assert h.status(run) == "DELAYED", "the start moved after the restart too"
        await h.advance(0.001)
        assert args_of(h.worker_of(run).attempt["payload"]) == ("c",)
        assert len(await h.rows("SELECT id FROM runs")) == 1


@run_async
async def test_a_restart_keeps_the_start_the_last_trigger_set(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        run, _ = await _trigger(h, t, "a", debounce=trailing())
        await h.advance(3)
        await _trigger(h, t, "b", debounce=trailing())  # due at 8
        await h.restart()
        await h.advance(4.999)
        assert h.status(run) == "DELAYED"
        await h.advance(0.001)
        assert args_of(h.worker_of(run).attempt["payload"]) == ("b",)


@run_async
async def test_a_restart_keeps_a_leading_window_of_a_finished_run(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        run, _ = await _trigger(h, t, debounce=leading(delay=60))
        h.worker_of(run).done(1)
        await h.settle()
        await h.restart()
        await h.advance(30)
        assert await _trigger(h, t, debounce=leading(delay=60)) == (run, False)
        await h.advance(61)
        assert (await _trigger(h, t, debounce=leading(delay=60)))[1] is True


@run_async
async def test_a_canceled_run_closes_its_window(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        run, _ = await _trigger(h, t, debounce=trailing())
        await h._engine.cancel(run)
        await h.settle()
        again, created = await _trigger(h, t, debounce=trailing())
        assert created and again != run


@run_async
async def test_a_ttl_still_expires_a_trailing_run_that_keeps_being_pushed_back(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        run, _ = await _trigger(h, t, debounce=trailing(), ttl=8)
        for _ in range(3):
            await h.advance(3)
            await _trigger(h, t, debounce=trailing(), ttl=8)
        assert h.status(run) == "EXPIRED"


@pytest.mark.parametrize(("options", "message"), [
    ({"debounce": trailing(), "idempotency_key": "x"}, "cannot be combined"),
    ({"debounce": trailing(), "delay": 3}, "cannot be combined"),
    ({"debounce": {"key": "", "delay": 1}}, "non-empty text"),
    ({"debounce": {"key": "k" * 201, "delay": 1}}, "at most 200"),
    ({"debounce": {"key": "k", "delay": 0}}, "above 0 and at most 1 day"),
    ({"debounce": {"key": "k", "delay": 86401}}, "above 0 and at most 1 day"),
    ({"debounce": {"key": "k", "delay": 1, "mode": "middle"}}, "'trailing' or 'leading'"),
    ({"debounce": {"key": "k", "delay": 1, "extra": 1}}, "debounce must be"),
    ({"traceparent": "00-abc-01"}, "traceparent must be"),
    ({"traceparent": f"00-{'0' * 32}-{'1' * 16}-01"}, "all-zero"),
])
@run_async
async def test_bad_debounce_or_traceparent_is_refused_with_what_to_do(tmp_path, options,
                                                                      message):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t")
        with pytest.raises(ValueError, match=message):
            await _trigger(h, t, **options)
        assert await h.rows("SELECT id FROM runs") == []
