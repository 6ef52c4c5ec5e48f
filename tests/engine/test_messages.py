"""engine.messages: what a worker reports is recorded, answered once durable, and dropped
when it comes from an attempt that already ended."""

from __future__ import annotations

from inprocess import NO_RETRY, retry, run_async

from durable_nb.testing import EngineHarness


@run_async
async def test_a_step_is_answered_once_durable_and_recorded(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        msg = w.step("fetch#1", [1, 2])
        assert w.replies() == [], "no answer before the step is durable"
        await h.settle()
        assert w.replies() == [{"ok": True, "aid": msg["aid"], "re": msg["req"]}]
        rows = await h.rows("SELECT step_key, status FROM steps WHERE run_id = ?", run)
        assert rows == [{"step_key": "fetch#1", "status": "COMPLETED"}]


@run_async
async def test_messages_of_an_ended_attempt_are_dropped(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(2, 1)))
        old = h.worker_of(run)
        old_aid = old.attempt["aid"]
        old.fail()
        await h.advance(1)
        new = h.worker_of(run)
        h.pool.events.on_message(new, {"op": "done", "aid": old_aid, "output": b""})
        await h.settle()
        assert h.status(run) == "EXECUTING", "a stale done does not end the new attempt"


@run_async
async def test_an_unknown_op_is_answered_with_an_error(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        w.tell("teleport", True)
        assert w.replies()[-1]["error"] == "unknown op teleport"
        assert h.status(run) == "EXECUTING"


@run_async
async def test_logs_and_child_runs_are_recorded(tmp_path):
    async with EngineHarness(tmp_path) as h:
        child = h.task("child", retry=NO_RETRY)
        run = await h.trigger(h.task("parent", retry=NO_RETRY))
        w = h.worker_of(run)
        w.tell("log", stream="stdout", lines=["hello", "world"], at=h.clock.now())
        spec = h._engine.state.tasks[child]
        w.tell("trigger", True, key="kids#1", payloads=[b"a", b"b"], options={},
               task={"hash": spec.hash, "task_id": spec.task_id, "code": spec.code,
                     "options": spec.options, "sys_path": []})
        await h.settle()
        ids = w.replies()[-1]["run_ids"]
        assert len(ids) == 2 and all(h.run(i).parent_run_id == run for i in ids)
        logs = await h.rows("SELECT line FROM logs WHERE run_id = ? ORDER BY seq", run)
        assert [r["line"] for r in logs] == ["hello", "world"]
