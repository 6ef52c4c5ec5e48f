"""Pruning finished runs, deterministically: an engine on a manual clock, runs finished
at chosen times, prunes by hand and by the ``prune_after`` setting."""

from __future__ import annotations

import asyncio

import pytest
from inprocess import NO_RETRY, run_async

from durable_nb.testing import EngineHarness

DAY = 86400.0
RUN_TABLES = ("transitions", "attempts", "steps", "waits", "logs", "span_records",
              "checkpoints")


async def _rows_of(h: EngineHarness, run_id: str) -> dict[str, int]:
    out = {}
    for table in RUN_TABLES:
        (row,) = await h.rows(f"SELECT count(*) AS n FROM {table} WHERE run_id = ?", run_id)
        out[table] = row["n"]
    (row,) = await h.rows("SELECT count(*) AS n FROM runs WHERE id = ?", run_id)
    out["runs"] = row["n"]
    return out


async def _finished_run(h: EngineHarness, t: str, fail: bool = False) -> str:
    run = await h.trigger(t)
    w = h.worker_of(run)
    w.step("fetch#1", 1)
    await h.settle()
    if fail:
        w.fail("no")
    else:
        w.done(2)
    await h.settle()
    return run


@run_async
async def test_prune_deletes_old_finished_runs_and_all_their_rows(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", retry=NO_RETRY)
        old_ok = await _finished_run(h, t)
        old_failed = await _finished_run(h, t, fail=True)
        waiting = await h.trigger(t)
        w = h.worker_of(waiting)
        w.wait("approval", "ship")
        await h.advance(1)  # the grace period: then the worker is let go
        w.suspended()
        await h.settle()
        await h.advance(31 * DAY)
        recent = await _finished_run(h, t)
        assert (await _rows_of(h, old_ok))["steps"] == 1

        dry = await h.engine.prune("30d", dry_run=True)
        assert dry["runs"] == 2 and dry["dry_run"]
        assert (await _rows_of(h, old_ok))["runs"] == 1  # nothing deleted

        only_failed = await h.engine.prune("30d", "FAILED")
        assert only_failed["runs"] == 1
        assert set((await _rows_of(h, old_failed)).values()) == {0}
        assert (await _rows_of(h, old_ok))["runs"] == 1

        out = await h.engine.prune("30d")
        assert out["runs"] == 1 and out["rows"] >= 3
        assert set((await _rows_of(h, old_ok)).values()) == {0}
        assert (await _rows_of(h, recent))["runs"] == 1
        # the waiting run is older than 30 days but not finished: kept, and it goes on
        assert h.status(waiting) == "WAITING"
        await h.engine.resolve_approval(waiting, True)
        await h.settle()
        h.worker_of(waiting).done(3)
        await h.settle()
        assert h.status(waiting) == "COMPLETED"


@run_async
async def test_prune_refuses_unfinished_statuses_and_bad_durations(tmp_path):
    async with EngineHarness(tmp_path) as h:
        with pytest.raises(ValueError, match="WAITING runs are not finished"):
            await h.engine.prune("30d", "COMPLETED,WAITING")
        with pytest.raises(ValueError, match="unknown status 'DONE'"):
            await h.engine.prune("30d", "DONE")
        with pytest.raises(ValueError, match="not a duration"):
            await h.engine.prune("a month")
        with pytest.raises(ValueError):
            await h.engine.prune(-5)


@run_async
async def test_a_pruned_run_is_forgotten_and_its_idempotency_key_is_free(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", retry=NO_RETRY)
        run = await h.trigger(t, idempotency_key="nightly")
        h.worker_of(run).done(1)
        await h.settle()
        await h.restart()  # memory keeps only unfinished runs' keys: the store answers
        assert await h.trigger(t, idempotency_key="nightly") == run
        await h.advance(31 * DAY)
        assert (await h.engine.prune("30d"))["runs"] == 1
        with pytest.raises(Exception, match="no run with id"):
            await h.engine.queries.row(run)
        again = await h.trigger(t, idempotency_key="nightly")
        assert again != run


@run_async
async def test_prune_after_prunes_at_start_and_every_hour(tmp_path):
    async with EngineHarness(tmp_path, prune_after=30 * DAY) as h:
        t = h.task("t", retry=NO_RETRY)
        run = await _finished_run(h, t)
        await h.advance(31 * DAY)  # a prune every hour (one at a time)
        await _wait_idle(h)
        await h.advance(3600)  # the next hour's prune takes it, if an earlier one did not
        assert await _wait_gone(h, run)
        old = await _finished_run(h, t)
        await h.stop()
        h.clock.advance(31 * DAY)  # while the engine is down
        await h.start()  # pruned at start, before an hour passes
        assert await _wait_gone(h, old)


async def _wait_idle(h: EngineHarness) -> None:
    for _ in range(500):
        if not h.engine.pruner.busy:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the automatic prune did not end")


async def _wait_gone(h: EngineHarness, run_id: str) -> bool:
    """Whether the run leaves the store within a few seconds (the prune runs in a thread)."""
    for _ in range(500):
        if not await h.rows("SELECT id FROM runs WHERE id = ?", run_id):
            return True
        await asyncio.sleep(0.01)
    return False


def test_the_prune_after_setting_is_a_duration_or_off():
    from durable_nb.core.config import BY_NAME, ConfigError, engine_config

    s = BY_NAME["prune_after"]
    values = {x.name: x.default for x in BY_NAME.values()}
    assert engine_config({**values, "db_path": "x.duckdb"}).prune_after is None
    assert engine_config({**values, "db_path": "x.duckdb", "prune_after": "30d"}
                         ).prune_after == 30 * DAY
    assert engine_config({**values, "db_path": "x.duckdb", "prune_after": "0"}
                         ).prune_after is None
    with pytest.raises(ConfigError, match="not a duration"):
        s.parse("a month", "--prune-after")
    assert s.from_env({"DURABLE_NB_PRUNE_AFTER": "12h"}) == "12h"
    with pytest.raises(ConfigError, match="DURABLE_NB_PRUNE_AFTER"):
        s.from_env({"DURABLE_NB_PRUNE_AFTER": "soon"})
