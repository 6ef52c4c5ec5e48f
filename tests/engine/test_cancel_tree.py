"""Cancelling a run with the runs below it, deterministically (manual clock, scripted
workers): every unfinished descendant is canceled in the cancel's own durable write
(those executing are killed), also below a child that already finished; "abandon" leaves
them running."""

from __future__ import annotations

import pytest
from inprocess import NO_RETRY, run_async

from durable_nb.testing import EngineHarness


async def _tree(h: EngineHarness) -> tuple[str, str, str, str]:
    """parent (executing) -> child (delayed) -> grandchild (executing), and a second
    child (queued behind a full queue)."""
    t = h.task("t", retry=NO_RETRY)
    q = h.task("q", retry=NO_RETRY, queue="one", concurrency_limit=1)
    parent = await h.trigger(t)
    child = await h.trigger(t, parent_run_id=parent, delay=600)
    grandchild = await h.trigger(t, parent_run_id=child)
    await h.trigger(q)
    queued = await h.trigger(q, parent_run_id=parent)
    assert [h.status(r) for r in (parent, child, grandchild, queued)] == [
        "EXECUTING", "DELAYED", "EXECUTING", "QUEUED"]
    return parent, child, grandchild, queued


@run_async
async def test_cancel_takes_every_unfinished_descendant_in_one_write(tmp_path):
    async with EngineHarness(tmp_path) as h:
        parent, child, grandchild, queued = await _tree(h)
        below = await h._engine.cancel(parent)
        assert set(below) == {child, grandchild, queued}
        # durable when cancel returns: those without a worker are CANCELED already, and the
        # workers of those executing are being killed
        assert h.status(child) == h.status(queued) == "CANCELED"
        await h.settle()
        assert {h.status(r) for r in (parent, child, grandchild, queued)} == {"CANCELED"}
        rows = await h.rows("SELECT outcome FROM attempts WHERE run_id IN (?, ?)",
                            parent, grandchild)
        assert [r["outcome"] for r in rows] == ["CANCELED", "CANCELED"]


@run_async
async def test_abandon_leaves_the_descendants_running(tmp_path):
    async with EngineHarness(tmp_path) as h:
        parent, child, grandchild, queued = await _tree(h)
        assert await h._engine.cancel(parent, children="abandon") == []
        await h.settle()
        assert h.status(parent) == "CANCELED"
        assert [h.status(r) for r in (child, grandchild, queued)] == [
            "DELAYED", "EXECUTING", "QUEUED"]
        h.worker_of(grandchild).done(1)
        await h.settle()
        assert h.status(grandchild) == "COMPLETED"


@run_async
async def test_a_cancel_reaches_below_a_child_that_finished(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", retry=NO_RETRY)
        parent = await h.trigger(t)
        child = await h.trigger(t, parent_run_id=parent)
        grandchild = await h.trigger(t, parent_run_id=child, delay=600)
        h.worker_of(child).done("left its own child running")
        await h.settle()
        await h.restart()  # memory no longer links the grandchild to the parent
        assert await h._engine.cancel(parent) == [grandchild]
        assert h.status(grandchild) == "CANCELED"


@run_async
async def test_a_bad_children_mode_is_refused_and_nothing_is_canceled(tmp_path):
    async with EngineHarness(tmp_path) as h:
        parent, child, *_ = await _tree(h)
        with pytest.raises(ValueError, match="children must be 'cancel'.*or 'abandon'"):
            await h._engine.cancel(parent, children="orphan")
        assert h.status(parent) == "EXECUTING" and h.status(child) == "DELAYED"
