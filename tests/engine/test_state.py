"""engine.state: subscribers, status changes as journal records, the recent-runs cache."""

from __future__ import annotations

from inprocess import NO_RETRY, run_async

from durable_nb.engine import state as state_module
from durable_nb.testing import EngineHarness


@run_async
async def test_a_failing_subscriber_does_not_stop_the_others(tmp_path):
    async with EngineHarness(tmp_path) as h:
        seen: list[str] = []

        def broken(event: dict) -> None:
            raise RuntimeError("a view went away")

        h._engine.subscribe(broken)
        stop = h._engine.subscribe(lambda e: seen.append(e.get("status", e["type"])))
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        stop()
        h.worker_of(run).done()
        await h.settle()
        assert seen == ["QUEUED", "EXECUTING"], "unsubscribed before the run completed"
        rows = await h.rows("SELECT from_status, to_status FROM transitions "
                            "WHERE run_id = ? ORDER BY created_at, to_status DESC", run)
        assert [(r["from_status"], r["to_status"]) for r in rows][-1] == (
            "EXECUTING", "COMPLETED")


@run_async
async def test_the_recent_final_rows_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(state_module, "RECENT_RUNS", 2)
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", retry=NO_RETRY)
        ids = []
        for _ in range(3):
            run = await h.trigger(t)
            h.worker_of(run).done()
            await h.settle()
            ids.append(run)
        assert list(h._engine.state.finished) == ids[1:]
