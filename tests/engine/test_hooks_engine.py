"""Lifecycle hooks in the engine, deterministically (manual clock, scripted workers): every
way a run ends starts the right hook run exactly once, in the journal batch of the ending;
recovery starts a hook that is owed, and a restart never doubles one."""

from __future__ import annotations

import pickle

from inprocess import NO_RETRY, retry, run_async

from durable_nb.engine.lifecycle import MAX_CRASHES
from durable_nb.testing import EngineHarness


def _hooked(h: EngineHarness, **options) -> tuple[str, dict[str, str]]:
    """A task with all three hooks (each its own task, registered first)."""
    hooks = {kind: h.task(f"t.{kind}", retry=NO_RETRY)
             for kind in ("on_success", "on_failure", "on_cancel")}
    return h.task("t", hooks=hooks, **options), hooks


async def _hook_rows(h: EngineHarness, run_id: str) -> list[dict]:
    return await h.rows("SELECT id, task_hash, hook_kind, payload, idempotency_key FROM runs "
                        "WHERE hook_of = ? ORDER BY created_at", run_id)


async def _one_hook(h: EngineHarness, run_id: str, kind: str, hooks: dict) -> dict:
    rows = await _hook_rows(h, run_id)
    assert [r["hook_kind"] for r in rows] == [kind], rows
    (row,) = rows
    assert row["task_hash"] == hooks[kind]
    assert pickle.loads(row["payload"]) == ((run_id,), {}), "the hook gets the run's id"
    return row


@run_async
async def test_completion_and_failure_after_retries_fire_their_hook_once(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t, hooks = _hooked(h, retry=retry(2, 5))
        ok, bad = await h.trigger(t), await h.trigger(t)
        h.worker_of(ok).done(1)
        h.worker_of(bad).fail("first")
        await h.settle()
        assert await _hook_rows(h, bad) == [], "a failure that will be retried fires nothing"
        await h.advance(5)
        h.worker_of(bad).fail("second")
        await h.settle()
        await _one_hook(h, ok, "on_success", hooks)
        await _one_hook(h, bad, "on_failure", hooks)


@run_async
async def test_the_hook_run_is_created_with_the_ending_not_after_it(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t, hooks = _hooked(h)
        run = await h.trigger(t)
        h.worker_of(run).done(1)  # no settle: the ending and its hook are one batch
        ids = [r.id for r in h._engine.state.runs.values() if r.hook_of == run]
        assert h.status(run) == "COMPLETED" and len(ids) == 1
        assert h.run(ids[0]).hook_kind == "on_success"


@run_async
async def test_a_crash_loop_a_timeout_and_an_expiry_fire_on_failure(tmp_path):
    async with EngineHarness(tmp_path, max_workers=8) as h:
        t, hooks = _hooked(h, kill_after=30)
        crashing, slow = await h.trigger(t), await h.trigger(t)
        never = await h.trigger(t, delay=100, ttl=10)
        for _ in range(MAX_CRASHES - 1):
            h.worker_of(crashing).crash()
            await h.settle()
            await h.advance((h.run(crashing).delay_until or h.clock.now()) - h.clock.now())
        h.worker_of(crashing).crash()
        await h.advance(30)  # slow's kill_after; never's ttl passed at 10
        assert {r: h.status(r) for r in (crashing, slow, never)} == {
            crashing: "CRASHED", slow: "TIMED_OUT", never: "EXPIRED"}
        for run in (crashing, slow, never):
            await _one_hook(h, run, "on_failure", hooks)


@run_async
async def test_a_cancel_fires_on_cancel_for_the_run_and_each_child_with_hooks(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t, hooks = _hooked(h)
        parent = await h.trigger(t)
        child = await h.trigger(t, parent_run_id=parent, delay=60)
        await h._engine.cancel(parent)
        await h.settle()
        assert h.status(parent) == h.status(child) == "CANCELED"
        await _one_hook(h, parent, "on_cancel", hooks)
        await _one_hook(h, child, "on_cancel", hooks)


@run_async
async def test_a_hook_run_that_fails_fires_no_hook_and_is_retried_by_its_policy(tmp_path):
    async with EngineHarness(tmp_path) as h:
        hook = h.task("t.on_failure")  # the default policy, Retry(): three attempts
        t = h.task("t", retry=NO_RETRY, hooks={"on_failure": hook})
        run = await h.trigger(t)
        h.worker_of(run).fail()
        await h.settle()
        (row,) = await _hook_rows(h, run)
        h.worker_of(row["id"]).fail("the hook raised")
        await h.settle()
        assert h.status(row["id"]) == "DELAYED", "a hook run is retried"
        for _ in range(2):
            await h.advance(h.run(row["id"]).delay_until - h.clock.now())
            h.worker_of(row["id"]).fail("again")
            await h.settle()
        assert h.status(row["id"]) == "FAILED"
        assert await _hook_rows(h, row["id"]) == [], "a hook run has no hooks"
        assert len(await _hook_rows(h, run)) == 1


@run_async
async def test_recovery_fires_a_hook_owed_and_a_restart_never_doubles_one(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t, hooks = _hooked(h, retry=NO_RETRY)
        owed, fired = await h.trigger(t), await h.trigger(t)
        h.worker_of(fired).done(2)
        await h.settle()
        h._engine.lifecycle.on_finish.clear()  # this engine dies before it starts hooks
        h.worker_of(owed).fail("x")
        await h.settle()
        assert h.status(owed) == "FAILED" and await _hook_rows(h, owed) == []
        await h.restart()
        await _one_hook(h, owed, "on_failure", hooks)
        await _one_hook(h, fired, "on_success", hooks)
        await h.restart()
        await _one_hook(h, owed, "on_failure", hooks)
        await _one_hook(h, fired, "on_success", hooks)


@run_async
async def test_a_resumed_run_that_ends_again_fires_again(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t, hooks = _hooked(h, retry=NO_RETRY)
        run = await h.trigger(t)
        h.worker_of(run).fail("first ending")
        await h.settle()
        await h._engine.resume(run)
        await h.settle()
        h.worker_of(run).fail("second ending")
        await h.settle()
        rows = await _hook_rows(h, run)
        assert [r["hook_kind"] for r in rows] == ["on_failure", "on_failure"]
        assert len({r["idempotency_key"] for r in rows}) == 2
        await h.restart()
        assert len(await _hook_rows(h, run)) == 2


@run_async
async def test_a_task_naming_an_unregistered_hook_is_refused(tmp_path):
    import pytest

    async with EngineHarness(tmp_path) as h:
        with pytest.raises(ValueError, match="not registered; register the hook's task"):
            h.task("t", hooks={"on_failure": "0" * 64})
        with pytest.raises(ValueError, match="unknown hook 'on_crash'"):
            h.task("t", hooks={"on_crash": h.task("x")})


@run_async
async def test_a_prune_keeps_a_hook_run_while_its_run_is_there(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t, hooks = _hooked(h, retry=NO_RETRY)
        run = await h.trigger(t)
        h.worker_of(run).fail()
        await h.settle()
        (row,) = await _hook_rows(h, run)
        h.worker_of(row["id"]).done(None)
        await h.advance(10)
        out = await h._engine.prune(0, "COMPLETED")
        assert out["runs"] == 0, "the hook run records that its run's hook fired"
        await h.restart()
        assert len(await _hook_rows(h, run)) == 1, "so a restart does not fire it again"
        assert (await h._engine.prune(0))["runs"] == 1  # the run first
        assert (await h._engine.prune(0))["runs"] == 1  # then its hook run
        assert await h.rows("SELECT id FROM runs") == []
