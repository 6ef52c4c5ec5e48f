"""Parallel and async waits with a real engine and real workers: an async task gathering
two approvals holds no worker while both are pending, a first-completed wait takes
whichever comes first and replays with the same winner after the engine is killed, and a
durable sleep runs beside an approval."""

from __future__ import annotations

import asyncio
import time

import pytest
from _support import bump, count, wait_for

import durable_nb as dn
from durable_nb.client.cells import fetch_variables, trigger_cell


@dn.step()
def note(marks: str, what: str) -> str:
    bump(marks, what)
    return what


@dn.task(id="async-two-approvals")
async def two_approvals(marks: str) -> dict:
    a, b = await asyncio.gather(dn.approval_async("legal"), dn.approval_async("finance"))
    note(marks, "after")
    return {"legal": a.approved, "finance": b.approved, "by": [a.by, b.by]}


@dn.task(id="async-first-completed")
async def approval_or_cancel(marks: str, event: str) -> str:
    ship = dn.approval_async("ship")
    cancel = dn.wait_for_event_async(event)
    done, _ = await asyncio.wait([ship, cancel], return_when=asyncio.FIRST_COMPLETED)
    winner = "approval" if ship in done else "event"
    note(marks, winner)
    await dn.approval_async("finish")  # the run waits here while the engine is killed
    return winner


@dn.task(id="async-sleep-and-approval")
async def sleep_beside_approval(seconds: float) -> bool:
    _, decision = await asyncio.gather(dn.sleep_async(seconds), dn.approval_async("go"))
    return decision.approved


def _waiting_on(run, *names: str, timeout: float = 30.0) -> None:
    """The run is WAITING with these waits pending, and no worker executes it."""
    def check() -> bool:
        if run.status != "WAITING":
            return False
        pending = {w["name"] for w in run.waits if w["outcome"] is None}
        return pending == set(names)

    wait_for(check, timeout, f"run {run.id} to wait on {names}")
    workers = run.client.request("GET", "/workers")["workers"]
    assert all(w["run_id"] != run.id for w in workers), "a waiting run holds no worker"
    assert run.attempts[-1]["outcome"] == "SUSPENDED"


@pytest.mark.parametrize("first", ["legal", "finance"])
def test_gathered_approvals_hold_no_worker_and_complete_in_either_order(engine, marks, first):
    run = two_approvals.trigger(str(marks))
    _waiting_on(run, "legal", "finance")
    run.approve(first)
    other = "finance" if first == "legal" else "legal"
    # replayed: the first decision is recorded, the other is pending: it suspends again
    wait_for(lambda: len(run.attempts) >= 2, 30, "the replay after the first decision")
    _waiting_on(run, other)
    assert count(marks, "after") == 0
    run.reject(other)
    out = run.result(timeout=30)
    assert out["legal"] is (first == "legal") and out["finance"] is (first == "finance")
    assert all(out["by"]) and count(marks, "after") == 1


@pytest.mark.slow
@pytest.mark.parametrize("first", ["event", "approval"])
def test_first_completed_takes_the_first_and_replays_it_after_an_engine_kill(
        engine, marks, first):
    event = f"cancel-{marks.parent.name}"
    run = approval_or_cancel.trigger(str(marks), event)
    _waiting_on(run, "ship", event)
    if first == "event":
        dn.send_event(event, "stop")
    else:
        run.approve("ship")
    _waiting_on(run, "finish", "ship" if first == "event" else event)  # and the loser
    assert count(marks, first) == 1
    engine.kill()
    engine.start()
    # the loser resolves too, before the replay: the replay still takes the first one
    if first == "event":
        run.approve("ship")
    else:
        dn.send_event(event, "stop")
    run.approve("finish")
    assert run.result(timeout=60) == first
    assert count(marks, first) == 1, "the step after the winner ran once"
    assert count(marks, "approval" if first == "event" else "event") == 0


def test_a_durable_sleep_beside_an_approval(engine):
    started = time.time()
    run = sleep_beside_approval.trigger(1.5)
    wait_for(lambda: any(w["kind"] == "approval" for w in run.waits), 30, "the approval")
    run.approve("go")
    assert run.result(timeout=30) is True
    assert time.time() - started >= 1.5, "the sleep is waited for"
    kinds = sorted(w["kind"] for w in run.waits)
    assert kinds == ["approval", "sleep"]


CELL = """
import asyncio
first = 1
legal, finance = await asyncio.gather(dn.approval_async("legal"), dn.approval_async("finance"))
both = legal.approved and finance.approved
"""


def test_a_cell_awaits_two_approvals_without_a_worker(engine):
    run = trigger_cell(CELL, {"dn": dn})
    _waiting_on(run, "legal", "finance")
    run.approve("finance")
    wait_for(lambda: len(run.attempts) >= 2, 30, "the replay after the first decision")
    _waiting_on(run, "legal")
    run.approve("legal")
    run.result(timeout=30)
    assert fetch_variables(run, ["first", "both"]) == {"first": 1, "both": True}
    # statement 2 (first = 1) was checkpointed before the wait: the resumes started there
    cps = dn.sql(f"select statement from checkpoints where run_id = '{run.id}' order by seq")
    assert [c[0] for c in cps] == [1, 2, 3, 4]


@dn.task(id="async-timers")
async def timers() -> str:
    await asyncio.gather(dn.sleep_async("1h"), dn.sleep_async("2h"))
    try:
        await dn.wait_for_event_async("never-sent", timeout="3h")
    except dn.WaitTimeout:
        return "timed out"
    return "event"


def test_durable_timers_in_a_gather_skip_time_in_a_test_environment():
    from durable_nb.testing import TestEnvironment

    with TestEnvironment():
        run = timers.trigger()
        assert run.result(timeout=30) == "timed out"
        # suspended on both sleeps, then on the second one, then on the event
        assert [a["outcome"] for a in run.attempts] == ["SUSPENDED"] * 3 + ["COMPLETED"]
