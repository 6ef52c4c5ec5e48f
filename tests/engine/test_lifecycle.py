"""Retry timers and attempt ends, deterministically (manual clock, scripted workers)."""

from __future__ import annotations

import pytest
from inprocess import NO_RETRY, retry, run_async

from durable_nb.core import serial as _serial
from durable_nb.core.errors import WaitConflict
from durable_nb.engine.lifecycle import MAX_CRASHES, crash_pause
from durable_nb.testing import EngineHarness


@run_async
async def test_a_failed_attempt_is_retried_exactly_when_its_delay_elapses(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(3, 30)))
        w = h.worker_of(run)
        w.step("fetch#1", {"rows": 3})
        w.fail("flaky")
        await h.settle()
        assert h.status(run) == "DELAYED"
        assert h.run(run).delay_until == h.clock.now() + 30
        await h.advance(29.999)
        assert h.status(run) == "DELAYED"
        await h.advance(0.001)
        assert h.status(run) == "EXECUTING"
        attempt = h.worker_of(run).attempt
        assert attempt["attempt"] == 2 and attempt["generation"] == 1
        assert _serial.loads(attempt["steps"]["fetch#1"][1]) == {"rows": 3}, \
            "a completed step is not run again"


@run_async
async def test_retries_run_out_and_the_run_fails_with_the_last_error(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(2, 5)))
        h.worker_of(run).fail("first")
        await h.advance(5)
        h.worker_of(run).fail("second", type="KeyError")
        await h.settle()
        assert h.status(run) == "FAILED"
        (row,) = await h.rows("SELECT attempts, error FROM runs WHERE id = ?", run)
        assert row["attempts"] == 2 and "second" in row["error"]
        outcomes = await h.rows("SELECT outcome FROM attempts WHERE run_id = ? ORDER BY number",
                                run)
        assert [o["outcome"] for o in outcomes] == ["FAILED", "FAILED"]


@run_async
async def test_a_crash_resumes_at_once_without_spending_the_retry_policy(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        w.step("a#1", 1)
        w.crash()
        await h.settle()
        assert h.status(run) == "EXECUTING", "resumed at once, with no retry left to spend"
        attempt = h.worker_of(run).attempt
        assert list(attempt["steps"]) == ["a#1"] and attempt["generation"] == 0
        h.worker_of(run).fail("a real exception")  # the policy is still whole: no retry
        await h.settle()
        assert h.status(run) == "FAILED"
        outcomes = await h.rows("SELECT outcome FROM attempts WHERE run_id = ? ORDER BY number",
                                run)
        assert [o["outcome"] for o in outcomes] == ["CRASHED", "FAILED"]


@run_async
async def test_a_crash_loop_pauses_longer_each_time_and_ends_crashed(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(9, 1)))
        pauses = []
        for _ in range(MAX_CRASHES - 1):
            h.worker_of(run).crash()
            await h.settle()
            pauses.append((h.run(run).delay_until or h.clock.now()) - h.clock.now())
            await h.advance(pauses[-1])
        assert pauses == [crash_pause(n) for n in range(1, MAX_CRASHES)] == [0, 0.5, 1, 2]
        h.worker_of(run).crash()
        await h.settle()
        assert h.status(run) == "CRASHED"
        (row,) = await h.rows("SELECT error FROM runs WHERE id = ?", run)
        assert "crashed 5 times in a row" in row["error"] and "resume" in row["error"]


@run_async
async def test_progress_between_crashes_restarts_the_count(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        for i in range(2 * MAX_CRASHES):
            w = h.worker_of(run)
            w.step(f"s#{i + 1}", i)  # each attempt records something, then dies
            w.crash()
            await h.settle()
        assert h.status(run) == "EXECUTING" and h.run(run).crashes == 1


@run_async
async def test_a_crash_loop_goes_on_counting_across_an_engine_restart(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        h.worker_of(run).crash()
        await h.settle()
        h.worker_of(run).crash()
        await h.settle()
        assert h.status(run) == "DELAYED"  # pausing after the second crash in a row
        await h.restart()
        assert h.run(run).crashes == 2 and h.run(run).failures == 0


@run_async
async def test_an_aborted_run_is_not_retried(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(5, 1)))
        h.worker_of(run).fail("stop here", type="AbortRun", abort=True)
        await h.settle()
        assert h.status(run) == "FAILED"


@run_async
async def test_kill_after_times_the_attempt_out_on_the_clock(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY, kill_after=120.0))
        w = h.worker_of(run)
        await h.advance(119)
        assert h.status(run) == "EXECUTING" and not w.killed
        await h.advance(1)
        assert w.killed and h.status(run) == "TIMED_OUT"


@run_async
async def test_a_crash_in_a_step_retry_delay_keeps_that_wait_and_its_deadline(tmp_path):
    """A step's failed try leaves a durable retry wait; when the attempt crashes during
    it, the resumed attempt (same generation) meets the same wait with its deadline."""
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(2, 1)))
        w = h.worker_of(run)
        w.tell("step_failed", True, key="call#1", name="call", attempt=1, start=0, end=0,
               exc=b"", error={"type": "IOError", "message": "503", "traceback": None},
               final=False, delay=60)
        w.wait("retry", "call#1 retry 1", key="retry:call#1:1", timeout=60)
        await h.advance(5)
        w.crash()
        await h.settle()
        w2 = h.worker_of(run)
        attempt = w2.attempt
        assert attempt["step_failures"] == {"call#1": 1}, "the failed try is remembered"
        assert attempt["generation"] == 0 and attempt["waits"] == {}
        w2.wait("retry", "call#1 retry 1", key="retry:call#1:1", timeout=60)
        await h.advance(1)
        w2.suspended()
        await h.advance(60 - 5 - 1 - 1e-3)
        assert h.status(run) == "WAITING", "the first try's deadline, not a new one"
        await h.advance(1e-3)
        assert h.worker_of(run).attempt["waits"]["retry:call#1:1"]["outcome"] == "elapsed"
        waits = await h.rows("SELECT outcome FROM waits WHERE run_id = ?", run)
        assert [w["outcome"] for w in waits] == ["elapsed"], "one row, one resolution"


@run_async
async def test_a_failed_run_resumes_after_its_last_recorded_step(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        w.step("load#1", [1, 2, 3])
        w.tell("step_failed", True, key="call#1", name="call", attempt=1, start=0, end=0,
               exc=_serial.dumps(ValueError("503"), "exc"),
               error={"type": "ValueError", "message": "503", "traceback": None},
               final=True, delay=None)
        w.fail("503", type="ValueError")
        await h.settle()
        assert h.status(run) == "FAILED"
        row = await h._engine.resume(run, by="ann")
        assert row["status"] in ("QUEUED", "EXECUTING") and row["generation"] == 1
        await h.settle()
        attempt = h.worker_of(run).attempt
        assert attempt["attempt"] == 2 and attempt["generation"] == 1
        assert list(attempt["steps"]) == ["load#1"], "the errored step runs again"
        h.worker_of(run).done("ok")
        await h.settle()
        assert h.status(run) == "COMPLETED"
        reasons = await h.rows("SELECT reason FROM transitions WHERE run_id = ? "
                               "ORDER BY created_at, to_status", run)
        assert "resumed from FAILED by ann" in [r["reason"] for r in reasons]


@run_async
async def test_a_canceled_run_resumes_waiting_on_its_approval_again(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        h.worker_of(run).wait("approval", "ship", key="approval:ship", timeout=600)
        await h.advance(100)
        await h._engine.cancel(run)
        await h.settle()
        assert h.status(run) == "CANCELED"
        await h._engine.resume(run)
        await h.settle()
        w = h.worker_of(run)
        assert w.attempt["waits"] == {}, "the canceled approval is pending again"
        w.wait("approval", "ship", key="approval:ship", timeout=600)
        await h.advance(599)
        assert h.status(run) in ("EXECUTING", "WAITING"), "its 600 s count from the resume"
        await h._engine.resolve_approval(run, True, "ship", by="ann")
        await h.settle()
        rows = await h.rows("SELECT outcome FROM waits WHERE run_id = ?", run)
        assert rows == [{"outcome": "approved"}]


@run_async
async def test_only_failed_crashed_canceled_or_timed_out_runs_resume(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", retry=NO_RETRY)
        done, active = await h.trigger(t), await h.trigger(t)
        h.worker_of(done).done(1)
        await h.settle()
        with pytest.raises(WaitConflict, match="is COMPLETED; only a .*replay"):
            await h._engine.resume(done)
        with pytest.raises(WaitConflict, match="is EXECUTING"):
            await h._engine.resume(active)
