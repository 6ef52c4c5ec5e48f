"""Retry timers and attempt ends, deterministically (manual clock, scripted workers)."""

from __future__ import annotations

from inprocess import NO_RETRY, retry, run_async

from durable_nb.core import serial as _serial
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
async def test_a_crashed_worker_counts_as_a_failed_attempt(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(2, 10)))
        h.worker_of(run).crash()
        await h.settle()
        assert h.status(run) == "DELAYED"
        await h.advance(10)
        h.worker_of(run).crash()
        await h.settle()
        assert h.status(run) == "CRASHED"
        (row,) = await h.rows("SELECT error FROM runs WHERE id = ?", run)
        assert "WorkerCrashed" in row["error"]


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
async def test_a_crash_in_a_step_retry_delay_abandons_that_wait_once(tmp_path):
    """A step's failed try leaves a durable retry wait; when the attempt crashes during
    it, the next generation starts over and the old wait is resolved once, abandoned."""
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
        await h.advance(1)  # the run's own retry delay
        attempt = h.worker_of(run).attempt
        assert attempt["step_failures"] == {}, "a new generation forgets failed tries"
        waits = await h.rows("SELECT outcome FROM waits WHERE run_id = ?", run)
        assert [w["outcome"] for w in waits] == ["abandoned"], \
            "the old generation's retry wait is resolved, once"
