"""Recovery from each status, deterministically: the engine stops with runs in every
status, time passes while it is down (the manual clock moves), and a new engine on the
same database continues each run as the store says."""

from __future__ import annotations

import pytest
from inprocess import NO_RETRY, retry, run_async

from durable_nb.testing import EngineHarness


async def _attempts(h: EngineHarness, run: str) -> list[str]:
    rows = await h.rows("SELECT outcome FROM attempts WHERE run_id = ? ORDER BY number", run)
    return [r["outcome"] for r in rows]


@run_async
async def test_queued_runs_keep_their_order_and_limits_after_a_restart(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", queue="q", concurrency_limit=1)
        ids = [await h.trigger(t, i) for i in range(3)]
        assert [h.status(r) for r in ids] == ["EXECUTING", "QUEUED", "QUEUED"]
        await h.restart()
        assert [h.status(r) for r in ids] == ["EXECUTING", "QUEUED", "QUEUED"]
        assert await _attempts(h, ids[0]) == ["INTERRUPTED", None]
        h.worker_of(ids[0]).done()
        await h.settle()
        assert [h.status(r) for r in ids] == ["COMPLETED", "EXECUTING", "QUEUED"]


@run_async
async def test_an_executing_run_resumes_with_its_steps_and_no_retry_spent(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        h.worker_of(run).step("a#1", 1)
        await h.settle()
        await h.restart()
        attempt = h.worker_of(run).attempt
        assert attempt["attempt"] == 2 and list(attempt["steps"]) == ["a#1"]
        assert h.run(run).failures == 0, "an interrupted attempt is not a failure"
        h.worker_of(run).done(5)
        await h.settle()
        assert h.status(run) == "COMPLETED"


@pytest.mark.parametrize("down_for, expected", [(10, "DELAYED"), (60, "EXECUTING")])
@run_async
async def test_a_delayed_run_starts_at_its_time_even_if_that_passed_while_down(
        tmp_path, down_for, expected):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(2, 30)))
        h.worker_of(run).fail()
        await h.settle()
        await h.stop()
        h.clock.advance(down_for)
        await h.start()
        assert h.status(run) == expected
        await h.advance(30)
        assert h.status(run) == "EXECUTING"


@pytest.mark.parametrize("down_for, expected", [(10, "WAITING"), (120, "EXECUTING")])
@run_async
async def test_a_waiting_run_keeps_its_deadline_across_a_restart(tmp_path, down_for, expected):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        w.wait("sleep", "nap", key="sleep:nap", timeout=60)
        await h.advance(1)
        w.suspended()
        await h.settle()
        assert h.status(run) == "WAITING"
        await h.stop()
        h.clock.advance(down_for)
        await h.start()
        assert h.status(run) == expected
        await h.advance(60)
        assert h.status(run) == "EXECUTING"
        assert h.worker_of(run).attempt["waits"]["sleep:nap"]["outcome"] == "elapsed"


@run_async
async def test_a_run_stopped_in_a_grace_period_keeps_its_approval_pending(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=5.0) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        h.worker_of(run).wait("approval", "ship", key="approval:ship", timeout=300)
        await h.advance(1)  # the engine stops while the worker is held
        await h.restart()
        assert h.status(run) == "EXECUTING" and h.worker_of(run).attempt["waits"] == {}
        w = h.worker_of(run)
        w.wait("approval", "ship", key="approval:ship", timeout=300)
        await h.settle()
        await h._engine.resolve_approval(run, True, "ship", by="ann")
        await h.settle()
        assert [m["resolution"]["outcome"] for m in w.received("resolved")] == ["approved"]
        rows = await h.rows("SELECT outcome FROM waits WHERE run_id = ?", run)
        assert rows == [{"outcome": "approved"}]


@run_async
async def test_a_waiting_run_whose_wait_resolved_before_the_stop_is_queued(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        w.wait("event", "go")
        await h.advance(1)
        w.suspended()
        await h.settle()
        await h._engine.send_event("go", None)
        await h.restart()
        assert h.status(run) == "EXECUTING"
        assert h.worker_of(run).attempt["waits"]["event:go"]["outcome"] == "event"


@run_async
async def test_a_ttl_still_expires_a_queued_run_after_a_restart(tmp_path):
    async with EngineHarness(tmp_path, max_workers=1) as h:
        t = h.task("t")
        busy = await h.trigger(t)
        late = await h.trigger(t, ttl=60)
        await h.stop()
        h.clock.advance(90)
        await h.start()
        assert h.status(late) == "EXPIRED"
        assert h.status(busy) == "EXECUTING"


@run_async
async def test_finished_runs_stay_finished(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", retry=NO_RETRY)
        ok, bad, gone = await h.trigger(t), await h.trigger(t), await h.trigger(t, delay=5)
        h.worker_of(ok).done(1)
        h.worker_of(bad).fail()
        await h._engine.cancel(gone)
        await h.settle()
        await h.restart()
        assert h._engine.state.runs == {}
        rows = await h.rows("SELECT id, status FROM runs")
        assert {r["id"]: r["status"] for r in rows} == {
            ok: "COMPLETED", bad: "FAILED", gone: "CANCELED"}


@run_async
async def test_log_lines_keep_their_order_across_a_restart(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        h.worker_of(run).tell("log", stream="stdout", lines=["item 1", "item 2"],
                              at=h.clock.now())
        await h.advance(1)
        await h.restart()
        h.worker_of(run).tell("log", stream="stdout", lines=["item 3"], at=h.clock.now())
        await h.settle()
        logs = await h._engine.logs(run)
        assert [entry["line"] for entry in reversed(logs)] == ["item 1", "item 2", "item 3"]
        seqs = await h.rows("SELECT seq FROM logs WHERE run_id = ? ORDER BY created_at", run)
        assert [r["seq"] for r in seqs] == sorted(r["seq"] for r in seqs), \
            "numbering goes on after a restart"
