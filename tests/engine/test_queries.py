"""engine.queries: the API's reads (a run, run lists with totals and pending approvals)."""

from __future__ import annotations

import pytest
from inprocess import NO_RETRY, run_async

from durable_nb.core.errors import RunNotFound
from durable_nb.testing import EngineHarness


@run_async
async def test_run_lists_filter_page_count_and_name_pending_approvals(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t, other = h.task("t", retry=NO_RETRY), h.task("other", retry=NO_RETRY)
        ids = []
        for i in range(3):
            ids.append(await h.trigger(t, i))
            await h.advance(1)
        await h.trigger(other, delay=60)
        h.worker_of(ids[0]).done(1)
        h.worker_of(ids[1]).wait("approval", "ship")
        await h.settle()
        q = h._engine.queries
        page = await q.list_runs(task="t", limit=2)
        assert [r["id"] for r in page] == [ids[2], ids[1]], "newest first"
        assert page[1]["pending_approvals"] == ["ship"] and page[0]["pending_approvals"] == []
        assert await q.count_runs(task="t") == 3
        assert await q.count_runs(status="DELAYED,COMPLETED") == 2
        assert [r["id"] for r in await q.list_runs(status="completed")] == [ids[0]]
        with pytest.raises(ValueError, match="unknown status 'LOST'"):
            await q.list_runs(status="LOST")


@run_async
async def test_a_run_is_read_from_memory_the_cache_or_the_store(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        q = h._engine.queries
        assert (await q.row(run))["status"] == "EXECUTING"  # in memory
        h.worker_of(run).done("out")
        await h.settle()
        assert (await q.row(run))["status"] == "COMPLETED"  # the recent final rows
        await h.restart()
        q = h._engine.queries
        assert (await q.row(run))["status"] == "COMPLETED"  # the store
        detail = await q.run_detail(run)
        assert [a["outcome"] for a in detail["attempt_list"]] == ["COMPLETED"]
        with pytest.raises(RunNotFound, match="no run with id 'run_nope'"):
            await q.row("run_nope")
