"""Waits, deterministically: races between a timeout and a decision replayed in both
orders, crashes in a wait's grace period, suspension and resumption."""

from __future__ import annotations

import asyncio

import pytest
from inprocess import NO_RETRY, retry, run_async

from durable_nb.core.errors import WaitConflict
from durable_nb.testing import EngineHarness


async def _approval_pending(h: EngineHarness, timeout: float = 60.0) -> tuple[str, object]:
    run = await h.trigger(h.task("t", retry=NO_RETRY))
    w = h.worker_of(run)
    w.wait("approval", "ship", key="approval:ship", timeout=timeout)
    await h.settle()
    return run, w


def _resolutions(w) -> list[str]:
    return [m["resolution"]["outcome"] for m in w.received("resolved")]


@run_async
async def test_an_approval_just_before_its_timeout_wins_and_the_timer_does_nothing(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=3600) as h:
        run, w = await _approval_pending(h, timeout=60)
        await h.advance(60 - 1e-6)
        # the decision is taken in the loop turn the timer falls due in: decision first
        decision = asyncio.ensure_future(h._engine.resolve_approval(run, True, "ship", by="ann"))
        await asyncio.sleep(0)  # the decision resolves the wait, then awaits durability
        h.clock.advance(1e-6)  # the deadline fires now, after the decision
        assert (await decision)["outcome"] == "approved"
        await h.settle()
        assert _resolutions(w) == ["approved"], "the worker hears one outcome"
        (row,) = await h.rows("SELECT outcome, resolved_by FROM waits WHERE run_id = ?", run)
        assert row == {"outcome": "approved", "resolved_by": "ann"}


@run_async
async def test_an_approval_after_its_timeout_fired_is_refused_with_the_outcome(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=3600) as h:
        run, w = await _approval_pending(h, timeout=60)
        h.clock.advance(60)  # the deadline fires first, in the same loop turn
        with pytest.raises(WaitConflict, match="already resolved .timed_out"):
            await h._engine.resolve_approval(run, True, "ship", by="ann")
        await h.settle()
        assert _resolutions(w) == ["timed_out"]
        rows = await h.rows("SELECT outcome FROM waits WHERE run_id = ?", run)
        assert rows == [{"outcome": "timed_out"}], "one row, one resolution"


@run_async
async def test_two_deciders_in_one_loop_turn_one_wins_the_other_hears_why(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=3600) as h:
        run, w = await _approval_pending(h)
        yes = asyncio.ensure_future(h._engine.resolve_approval(run, True, "ship", by="ann"))
        no = asyncio.ensure_future(h._engine.resolve_approval(run, False, "ship", by="bob"))
        done = await asyncio.gather(yes, no, return_exceptions=True)
        assert done[0]["outcome"] == "approved"
        assert isinstance(done[1], WaitConflict) and "by ann" in str(done[1])
        await h.settle()
        assert _resolutions(w) == ["approved"]


@run_async
async def test_a_crash_in_the_grace_period_keeps_the_sleep_and_its_deadline(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run = await h.trigger(h.task("t", retry=retry(3, 2)))
        w = h.worker_of(run)
        w.wait("sleep", "nap", key="sleep:nap", timeout=30)
        await h.advance(0.5)  # inside the grace period: the worker is held
        assert w.received("suspend") == []
        w.crash()
        await h.settle()  # resumed at once: the next attempt meets the same wait
        w2 = h.worker_of(run)
        assert w2 is not w and w2.attempt["waits"] == {}
        w2.wait("sleep", "nap", key="sleep:nap", timeout=30)
        await h.advance(1)  # its grace period ends: the run waits without a worker
        w2.suspended()
        await h.settle()
        assert h.status(run) == "WAITING"
        await h.advance(30 - 1.5 - 1e-3)
        assert h.status(run) == "WAITING", "the deadline is the first attempt's, not reset"
        await h.advance(1e-3)
        assert h.status(run) == "EXECUTING"
        waits = h.worker_of(run).attempt["waits"]
        assert waits["sleep:nap"]["outcome"] == "elapsed"
        rows = await h.rows("SELECT outcome, deadline FROM waits WHERE run_id = ?", run)
        assert len(rows) == 1 and rows[0]["outcome"] == "elapsed"


@run_async
async def test_a_quick_event_resumes_in_place_and_a_late_one_requeues(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        t = h.task("t", retry=NO_RETRY)
        quick, late = await h.trigger(t), await h.trigger(t)
        wq, wl = h.worker_of(quick), h.worker_of(late)
        wq.wait("event", "go-quick")
        wl.wait("event", "go-late")
        await h.advance(0.5)
        assert await h._engine.send_event("go-quick", None) == 1
        await h.settle()
        assert _resolutions(wq) == ["event"] and h.worker_of(quick) is wq, "in place"
        await h.advance(0.5)  # grace over for the late one
        assert [m["key"] for m in wl.received("suspend")] == ["event:go-late"]
        wl.suspended()
        await h.settle()
        assert h.status(late) == "WAITING"
        await h._engine.send_event("go-late", b"x")
        await h.settle()
        resumed = h.worker_of(late).attempt
        assert resumed["attempt"] == 2 and resumed["waits"]["event:go-late"]["data"] == b"x"


@run_async
async def test_cancel_resolves_the_pending_wait_and_kills_the_attempt(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=3600) as h:
        run, w = await _approval_pending(h)
        await h._engine.cancel(run)
        await h.settle()
        assert w.killed and h.status(run) == "CANCELED"
        rows = await h.rows("SELECT outcome FROM waits WHERE run_id = ?", run)
        assert rows == [{"outcome": "canceled"}]
