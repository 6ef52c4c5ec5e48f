"""engine.forks: a fork reuses what its source recorded before the fork's step (its steps and
resolved waits are handed to the new run's worker as recorded, and copied as its rows) and
runs the rest with the chosen code; a cell fork restores the checkpoint after statement N."""

from __future__ import annotations

import asyncio

import pytest
from inprocess import NO_RETRY, run_async

from durable_nb.core.errors import RunNotFound, WaitConflict
from durable_nb.testing import EngineHarness


def _step_failed(w, key: str, message: str = "bad record") -> None:
    now = w.pool.now()
    w.tell("step_failed", True, key=key, name=key.split("#")[0], attempt=1, start=now,
           end=now, error={"type": "ValueError", "message": message, "traceback": None},
           final=True, exc=None, delay=None)


async def _failed_run(h: EngineHarness, task: str) -> str:
    """A run that fetched, was approved, summarized once and failed in its second summary."""
    run = await h.trigger(task, "doc-1")
    w = h.worker_of(run)
    w.step("fetch#1", "text")
    await h.advance(1)
    w.wait("approval", "publish")
    await h.settle()
    await h._engine.resolve_approval(run, True, "publish", by="ann")
    await h.advance(1)
    w.step("summarize#1", "s1")
    await h.advance(1)
    _step_failed(w, "summarize#2")
    await h.advance(1)
    w.fail("bad record")
    await h.settle()
    assert h.status(run) == "FAILED"
    return run


@run_async
async def test_a_fork_reuses_the_steps_before_the_failed_one_and_runs_the_newest_code(tmp_path):
    async with EngineHarness(tmp_path) as h:
        v1 = h.task("report", retry=NO_RETRY)
        run = await _failed_run(h, v1)
        await h.advance(1)
        v2 = h.task("report", retry=NO_RETRY, max_duration=3600)  # the edited task
        made = await h._engine.fork(run)
        await h.settle()
        fork = made["id"]
        assert made == {"id": fork, "fork_of": run, "fork_step": "summarize#2", "task_hash": v2}
        w = h.worker_of(fork)
        attempt = w.attempt
        assert attempt["task_hash"] == v2, "the newest version of the task id runs"
        assert sorted(attempt["steps"]) == ["fetch#1", "summarize#1"]
        assert attempt["steps"]["summarize#1"][0] == "ok"
        assert sorted(attempt.get("step_calls", ["fetch#1", "summarize#1"])) == [
            "fetch#1", "summarize#1"], "the failed step's call is not checked: it runs anew"
        assert list(attempt["waits"]) == ["approval:publish"]
        assert attempt["waits"]["approval:publish"]["outcome"] == "approved"
        w.step("summarize#2", "s2")
        w.done("published")
        await h.settle()
        assert h.status(fork) == "COMPLETED"
        (row,) = await h.rows("SELECT fork_of, fork_step, task_hash, payload FROM runs "
                              "WHERE id = ?", fork)
        (src,) = await h.rows("SELECT payload FROM runs WHERE id = ?", run)
        assert (row["fork_of"], row["fork_step"], row["task_hash"]) == (run, "summarize#2", v2)
        assert row["payload"] == src["payload"], "the same arguments"
        steps = await h.rows("SELECT step_key, status, run_attempt FROM steps "
                             "WHERE run_id = ? ORDER BY started_at", fork)
        assert [(s["step_key"], s["status"]) for s in steps] == [
            ("fetch#1", "COMPLETED"), ("summarize#1", "COMPLETED"), ("summarize#2", "COMPLETED")]
        waits = await h.rows("SELECT wait_key, outcome, resolved_by FROM waits "
                             "WHERE run_id = ?", fork)
        assert waits == [{"wait_key": "approval:publish", "outcome": "approved",
                          "resolved_by": "ann"}]


@run_async
async def test_a_fork_from_an_earlier_step_reruns_that_step_and_what_follows(tmp_path):
    async with EngineHarness(tmp_path) as h:
        v1 = h.task("report", retry=NO_RETRY)
        run = await _failed_run(h, v1)
        made = await h._engine.fork(run, "summarize#1", v1)
        await h.settle()
        attempt = h.worker_of(made["id"]).attempt
        assert made["fork_step"] == "summarize#1" and attempt["task_hash"] == v1
        assert list(attempt["steps"]) == ["fetch#1"]
        assert list(attempt["waits"]) == ["approval:publish"], "resolved before it started"
        made = await h._engine.fork(run, "fetch#1")
        await h.settle()
        attempt = h.worker_of(made["id"]).attempt
        assert attempt["steps"] == {} and attempt["waits"] == {}


@run_async
async def test_a_fork_survives_an_engine_restart_before_it_ran(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("report", retry=NO_RETRY)
        run = await _failed_run(h, t)
        fork = (await h._engine.fork(run))["id"]
        await h.restart()  # the copied rows are durable: recovery hands them over again
        attempt = h.worker_of(fork).attempt
        assert sorted(attempt["steps"]) == ["fetch#1", "summarize#1"]
        assert list(attempt["waits"]) == ["approval:publish"]
        tree = (await h._engine.run_detail(fork))["fork_tree"]
        assert tree["root"] == run
        assert [(r["id"], r["fork_of"], r["depth"]) for r in tree["runs"]] == [
            (run, None, 0), (fork, run, 1)]


@run_async
async def test_forks_of_forks_make_one_tree(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("report", retry=NO_RETRY)
        run = await _failed_run(h, t)
        first = (await h._engine.fork(run))["id"]
        await h.settle()
        h.worker_of(first).fail("again")
        await h.settle()
        second = (await h._engine.fork(first, "summarize#1"))["id"]
        third = (await h._engine.fork(run, "fetch#1"))["id"]
        await h.settle()
        for rid in (run, first, second, third):
            tree = (await h._engine.run_detail(rid))["fork_tree"]
            assert tree["root"] == run and not tree["truncated"]
            assert {(r["id"], r["fork_of"]) for r in tree["runs"]} == {
                (run, None), (first, run), (third, run), (second, first)}
        lonely = await h.trigger(t)
        assert (await h._engine.run_detail(lonely))["fork_tree"] is None


@run_async
async def test_a_fork_is_refused_with_a_reason(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("report", retry=NO_RETRY)
        run = await _failed_run(h, t)
        with pytest.raises(ValueError, match=r"no step 'publish#1'.*fetch#1, summarize#1, "
                                             r"summarize#2"):
            await h._engine.fork(run, "publish#1")
        with pytest.raises(LookupError, match="unknown task hash"):
            await h._engine.fork(run, None, "0" * 64)
        with pytest.raises(RunNotFound):
            await h._engine.fork("run_nope")
        busy = await h.trigger(t)
        with pytest.raises(WaitConflict, match="only a finished run can be forked"):
            await h._engine.fork(busy)
        h.worker_of(busy).step("fetch#1")
        h.worker_of(busy).done()
        await h.settle()
        with pytest.raises(ValueError, match="completed and has no failed step.*fetch#1"):
            await h._engine.fork(busy)
        cell = h.task("cell", kind="cell")
        with pytest.raises(ValueError, match="a task run; a fork of it runs a task, not the cell"):
            await h._engine.fork(run, None, cell)
        with pytest.raises(ValueError, match="names variables of a cell's checkpoint"):
            await h._engine.fork(run, fresh=["x"])
        assert [r["id"] for r in await h.rows("SELECT id FROM runs WHERE fork_of = ?", run)
                ] == [], "nothing was created"


@run_async
async def test_a_run_that_failed_between_steps_is_forked_after_its_last_step(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("report", retry=NO_RETRY)
        run = await h.trigger(t)
        w = h.worker_of(run)
        w.step("fetch#1", "text")
        await h.advance(1)
        w.fail("KeyError in the task's own code")
        await h.settle()
        made = await h._engine.fork(run)
        await h.settle()
        assert made["fork_step"] is None
        assert list(h.worker_of(made["id"]).attempt["steps"]) == ["fetch#1"]


async def _attempt_of(h: EngineHarness, run_id: str) -> dict:
    """The run message of ``run_id``'s attempt (a cell's is sent once its checkpoint's
    pieces are read, in a thread)."""
    for _ in range(500):
        msgs = [m for w in h.pool.started for m in w.received("run") if m["run_id"] == run_id]
        if msgs:
            return msgs[-1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} was given no attempt")


def _checkpoint(w, statement: int, values: dict, counts: dict) -> None:
    from durable_nb.worker import snapshot

    snap = snapshot.take(values, set(), statement)
    w.tell("checkpoint", True, statement=statement, total=3, manifest=snap.entries,
           counts=counts, blobs={k: bytes(v) for k, v in snap.new.items()}, files={},
           size=snap.size)


@run_async
async def test_a_cell_fork_restores_the_checkpoint_after_statement_n(tmp_path):
    async with EngineHarness(tmp_path) as h:
        cell = h.task("analysis.ipynb [3]", kind="cell", retry=NO_RETRY)
        run = await h.trigger(cell, "source v1")
        w = h.worker_of(run)
        w.step("load#1", "rows")
        await h.advance(1)
        _checkpoint(w, 1, {"rows": [1, 2], "helper": "old"}, {"load": 1})
        await h.advance(1)
        w.step("load#2", "more")
        await h.advance(1)
        _checkpoint(w, 2, {"rows": [1, 2, 3], "helper": "old"}, {"load": 2})
        await h.advance(1)
        w.fail("ZeroDivisionError")
        await h.settle()
        assert h.status(run) == "FAILED"
        made = await h._engine.fork(run, "1", payload=b"source v2", fresh=["helper"])
        await h.settle()
        fork = made["id"]
        assert made["fork_step"] == "1" and made["task_hash"] == cell
        attempt = await _attempt_of(h, fork)
        assert attempt["payload"] == b"source v2"
        assert list(attempt["steps"]) == ["load#1"], "what statement 1 recorded"
        cp = attempt["checkpoint"]
        assert cp["statement"] == 1 and sorted(cp["manifest"]) == ["rows"]
        assert cp["counts"] == {"load": 1} and cp["blobs"]
        rows = await h.rows("SELECT seq, statement FROM checkpoints WHERE run_id = ?", fork)
        assert rows == [{"seq": 1, "statement": 1}]
        default = await h._engine.fork(run)
        assert default["fork_step"] == "2", "by default: after its last checkpoint"
        start = await h._engine.fork(run, "0")
        await h.settle()
        assert "checkpoint" not in await _attempt_of(h, start["id"])
        with pytest.raises(ValueError, match="no checkpoint after statement 3.*1, 2"):
            await h._engine.fork(run, "3")
        with pytest.raises(ValueError, match="statement number N"):
            await h._engine.fork(run, "load#1")


@run_async
async def test_the_fork_route_validates_its_body(tmp_path):
    from durable_nb.server.api import dispatch

    async with EngineHarness(tmp_path) as h:
        t = h.task("report", retry=NO_RETRY)
        run = await _failed_run(h, t)

        async def post(body: bytes) -> tuple[int, dict]:
            return await asyncio.wait_for(
                dispatch(h._engine, "POST", f"/runs/{run}/fork", {}, body, None), 10)

        status, out = await post(b'{"from_step": 3}')
        assert status == 400 and out["field"] == "from_step"
        status, out = await post(b'{"task_hash": "nothex"}')
        assert status == 400 and out["field"] == "task_hash"
        status, out = await post(b'{"from_step": "nope#1"}')
        assert status == 422 and "fetch#1, summarize#1, summarize#2" in out["error"]
        status, out = await post(b'{"task_hash": "' + b"a" * 64 + b'"}')
        assert status == 409 and out["code"] == "unknown_task"
        status, out = await post(b"{}")
        assert status == 201 and out["fork_of"] == run and out["fork_step"] == "summarize#2"
        status, tree = await dispatch(h._engine, "GET", f"/runs/{run}/forks", {}, None, None)
        assert status == 200 and [r["id"] for r in tree["runs"]] == [run, out["id"]]
