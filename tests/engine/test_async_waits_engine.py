"""Awaitable waits in the engine, deterministically: several pending waits of one attempt,
suspension only once its loop reports them idle, resumption by any of them, and the order
resolutions are first delivered in (``seq``), kept for every replay."""

from __future__ import annotations

import asyncio

from inprocess import NO_RETRY, run_async

from durable_nb.testing import EngineHarness


async def _two_pending(h: EngineHarness, *, idle: bool = True):
    """A run whose attempt registered approval 'a' and event 'go' without blocking."""
    run = await h.trigger(h.task("t", retry=NO_RETRY))
    w = h.worker_of(run)
    w.wait_async("approval", "a", key="approval:a#1")
    w.wait_async("event", "go", key="event:go#1")
    if idle:
        w.idle("approval:a#1", "event:go#1")
    await h.settle()
    return run, w


async def _suspend(h: EngineHarness, run: str, w) -> None:
    await h.advance(1.0)  # the grace period
    assert [m["aid"] for m in w.received("suspend")][-1:] == [w.attempt["aid"]]
    w.suspended()
    await h.settle()
    assert h.status(run) == "WAITING"


def _executing(h: EngineHarness, run: str) -> bool:
    assert h.pool is not None
    return any(x.run is not None and x.run.id == run for x in h.pool.workers)


def _seqs(attempt: dict) -> dict[str, int]:
    return {k: r["seq"] for k, r in attempt["waits"].items()}


@run_async
async def test_registered_waits_hold_nothing_until_the_loop_reports_them_idle(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run, w = await _two_pending(h, idle=False)
        await h.advance(10)  # the attempt's loop still has work: no grace, no suspend
        assert w.received("suspend") == [] and h.status(run) == "EXECUTING"
        w.idle("approval:a#1", "event:go#1")
        await h.settle()
        await h.advance(0.5)
        assert w.received("suspend") == [], "held for the grace period first"
        await h.advance(0.5)
        assert [m["key"] for m in w.received("suspend")] == ["approval:a#1"]
        w.suspended()
        await h.settle()
        assert h.status(run) == "WAITING" and not _executing(h, run), "no worker held"
        (row,) = await h.rows("SELECT reason FROM transitions WHERE run_id = ? AND "
                              "to_status = 'WAITING'", run)
        assert row["reason"] == "approval 'a', event 'go'"
        rows = await h.rows("SELECT wait_key, outcome FROM waits WHERE run_id = ? "
                            "ORDER BY wait_key", run)
        assert rows == [{"wait_key": "approval:a#1", "outcome": None},
                        {"wait_key": "event:go#1", "outcome": None}]


@run_async
async def test_either_wait_resolving_requeues_and_the_replay_gets_it(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run, w = await _two_pending(h)
        await _suspend(h, run, w)
        await h._engine.resolve_approval(run, True, "a", by="ann")
        await h.settle()
        w2 = h.worker_of(run)
        assert w2.attempt["attempt"] == 2
        assert list(w2.attempt["waits"]) == ["approval:a#1"]
        assert w2.attempt["waits"]["approval:a#1"]["outcome"] == "approved"
        # the replay: 'a' is recorded; 'go' is registered again, still pending: idle again
        w2.wait_async("event", "go", key="event:go#1")
        w2.idle("event:go#1")
        await _suspend(h, run, w2)
        await h._engine.send_event("go", b"x")
        await h.settle()
        w3 = h.worker_of(run)
        assert set(w3.attempt["waits"]) == {"approval:a#1", "event:go#1"}
        w3.done("both")
        await h.settle()
        assert h.status(run) == "COMPLETED"
        rows = await h.rows("SELECT count(*) AS n FROM waits WHERE run_id = ?", run)
        assert rows == [{"n": 2}], "one row per wait key across the three attempts"


@run_async
async def test_a_resolution_in_the_grace_period_goes_on_in_place(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run, w = await _two_pending(h)
        await h.advance(0.5)
        await h._engine.send_event("go", b"e")
        await h.settle()
        (got,) = w.received("resolved")
        assert got["key"] == "event:go#1" and got["resolution"]["seq"] == 1
        await h.advance(5)  # the grace timer of the first report is void
        assert w.received("suspend") == [] and h.worker_of(run) is w
        w.idle("approval:a#1")  # the loop goes on, then idles on the approval alone
        await h.settle()
        await h.advance(1.0)
        assert [m["key"] for m in w.received("suspend")] == ["approval:a#1"]


@run_async
async def test_a_wait_resolved_before_it_is_registered_is_sent_at_once(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        await h._engine.send_event("early", b"1")
        w.wait_async("event", "early", key="event:early#1")
        await h.settle()
        assert [m["key"] for m in w.received("resolved")] == ["event:early#1"]
        w.idle("event:early#1")  # a report that crossed the resolution on the way
        await h.advance(5)
        assert w.received("suspend") == [], "it is not suspended for a resolved wait"


@run_async
async def test_two_resolutions_in_one_loop_turn_are_delivered_in_their_order(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run, w = await _two_pending(h)
        decide = asyncio.ensure_future(h._engine.resolve_approval(run, True, "a", by="ann"))
        event = asyncio.ensure_future(h._engine.send_event("go", None))
        await asyncio.gather(decide, event)
        await h.settle()
        got = [(m["key"], m["resolution"]["seq"]) for m in w.received("resolved")]
        assert got == [("approval:a#1", 1), ("event:go#1", 2)]
        rows = await h.rows("SELECT wait_key, resolved_at IS NOT NULL AS done FROM waits "
                            "WHERE run_id = ? ORDER BY wait_key", run)
        assert all(r["done"] for r in rows)


@run_async
async def test_first_completed_order_is_recorded_and_given_back_after_a_restart(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run, w = await _two_pending(h)
        await _suspend(h, run, w)
        await h._engine.send_event("go", b"e")  # the event comes first
        await h.settle()
        w2 = h.worker_of(run)
        assert _seqs(w2.attempt) == {"event:go#1": 1}
        # the approval is decided before the replay registers it again: it is numbered
        # when this attempt first hears of it, after the event
        await h._engine.resolve_approval(run, True, "a", by="ann")
        await h.settle()
        assert w2.received("resolved") == []
        w2.wait_async("approval", "a", key="approval:a#1")
        await h.settle()
        (got,) = w2.received("resolved")
        assert got["key"] == "approval:a#1" and got["resolution"]["seq"] == 2
        await h.restart()  # the engine stops mid-attempt: the run is replayed
        w3 = h.worker_of(run)
        assert w3.attempt["attempt"] == 3
        assert _seqs(w3.attempt) == {"event:go#1": 1, "approval:a#1": 2}


@run_async
async def test_resolutions_while_waiting_are_numbered_in_the_order_they_came(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0, max_workers=1) as h:
        blocker = await h.trigger(h.task("busy", retry=NO_RETRY))  # holds the one worker
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        hw = h.worker_of(blocker)
        hw.done(None)
        await h.settle()
        w = h.worker_of(run)
        w.wait_async("approval", "a", key="approval:a#1")
        w.wait_async("event", "go", key="event:go#1")
        w.idle("approval:a#1", "event:go#1")
        await h.settle()
        await _suspend(h, run, w)
        other = await h.trigger(h.task("busy2", retry=NO_RETRY))  # takes the worker
        await h.settle()
        await h._engine.send_event("go", None)  # queued again, but no worker is free
        await h._engine.resolve_approval(run, True, "a", by="ann")
        await h.settle()
        assert h.status(run) == "QUEUED"
        h.worker_of(other).done(None)
        await h.settle()
        assert _seqs(h.worker_of(run).attempt) == {"event:go#1": 1, "approval:a#1": 2}


@run_async
async def test_a_restart_while_waiting_resumes_on_any_pending_wait(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run, w = await _two_pending(h)
        await _suspend(h, run, w)
        await h.restart()
        assert h.status(run) == "WAITING"
        await h._engine.send_event("go", None)
        await h.settle()
        assert h.status(run) == "EXECUTING"
        assert list(h.worker_of(run).attempt["waits"]) == ["event:go#1"]


@run_async
async def test_cancel_while_waiting_on_several_ends_it_without_a_resume(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run, w = await _two_pending(h)
        await _suspend(h, run, w)
        await h._engine.cancel(run)
        await h.settle()
        assert h.status(run) == "CANCELED" and not _executing(h, run)
        rows = await h.rows("SELECT outcome FROM waits WHERE run_id = ?", run)
        assert [r["outcome"] for r in rows] == ["canceled", "canceled"]


@run_async
async def test_an_idle_report_of_unknown_keys_or_garbage_changes_nothing(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run, w = await _two_pending(h, idle=False)
        w.idle("approval:nope#1")
        w.tell("waits_idle", keys="approval:a#1")  # not a list
        await h.advance(5)
        assert w.received("suspend") == [] and h.status(run) == "EXECUTING"


@run_async
async def test_two_resolutions_in_one_turn_while_waiting_requeue_once_in_order(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run, w = await _two_pending(h)
        await _suspend(h, run, w)
        event = asyncio.ensure_future(h._engine.send_event("go", None))
        decide = asyncio.ensure_future(h._engine.resolve_approval(run, True, "a", by="ann"))
        await asyncio.gather(event, decide)
        await h.settle()
        w2 = h.worker_of(run)  # started in the event's turn: it gets the event only
        assert _seqs(w2.attempt) == {"event:go#1": 1}
        w2.wait_async("approval", "a", key="approval:a#1")  # then hears of the decision
        await h.settle()
        assert [(m["key"], m["resolution"]["seq"]) for m in w2.received("resolved")
                if m["aid"] == w2.attempt["aid"]] == [("approval:a#1", 2)]
        rows = await h.rows("SELECT count(*) AS n FROM transitions WHERE run_id = ? AND "
                            "to_status = 'QUEUED'", run)
        assert rows == [{"n": 2}], "queued at the trigger and once again, not twice"


@run_async
async def test_a_worker_crash_in_the_grace_period_keeps_both_waits(tmp_path):
    async with EngineHarness(tmp_path, wait_grace=1.0) as h:
        run, w = await _two_pending(h)
        await h.advance(0.5)
        w.crash()
        await h.settle()  # resumed at once in a new attempt, which registers them again
        w2 = h.worker_of(run)
        assert w2.attempt["attempt"] == 2 and w2.attempt["waits"] == {}
        w2.wait_async("approval", "a", key="approval:a#1")
        w2.wait_async("event", "go", key="event:go#1")
        w2.idle("approval:a#1", "event:go#1")
        await _suspend(h, run, w2)
        rows = await h.rows("SELECT count(*) AS n FROM waits WHERE run_id = ?", run)
        assert rows == [{"n": 2}], "one row per wait key, also across the crash"
        await h._engine.resolve_approval(run, True, "a", by="ann")
        await h.settle()
        assert h.status(run) == "EXECUTING"
