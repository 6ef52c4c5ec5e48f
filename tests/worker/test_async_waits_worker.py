"""Awaitable waits inside a real worker process, the test playing the engine: each wait is
registered at once, the loop reports them only once it has nothing else to do,
resolutions are handed over one at a time in their recorded order (so a first-completed
wait has one winner, the same on every replay), and a suspend unwinds the attempt."""

from __future__ import annotations

import asyncio
import time

import pytest
from _support import FakeEngineWorker

import durable_nb as dn
from durable_nb.core import serial


@pytest.fixture(scope="module")
def worker():
    w = FakeEngineWorker()
    yield w
    w.close()


def _res(outcome: str, seq: int, **extra) -> dict:
    return {"outcome": outcome, "at": 1000.0 + seq, "by": "ann", "seq": seq, **extra}


def _resolve(worker, aid: str, key: str, res: dict) -> None:
    worker.chan.send({"op": "resolved", "aid": aid, "key": key, "resolution": res})


def _end(worker) -> dict:
    _, msg = worker.until("done", "failed", "suspended")
    return msg


async def gather_two():
    a, b = await asyncio.gather(dn.approval_async("a"), dn.approval_async("b"))
    return [a.approved, b.approved, a.by]


async def first_of(names_first: str):
    ship = dn.approval_async("ship")
    go = dn.wait_for_event_async("go")
    done, pending = await asyncio.wait([ship, go], return_when=asyncio.FIRST_COMPLETED)
    return sorted("ship" if f is ship else "go" for f in done)


async def timer_then_event():
    """Two branches: the event's wait is met only after a plain timer of 0.2 s."""
    order: list[str] = []

    async def approval():
        await dn.approval_async("a")
        order.append("a")

    async def event():
        await asyncio.sleep(0.2)
        await dn.wait_for_event_async("go")
        order.append("go")

    await asyncio.gather(approval(), event())
    return order


async def beside_a_timer():
    await asyncio.gather(dn.approval_async("a"), asyncio.sleep(0.5))
    return "ok"


async def beside_a_thread():
    loop = asyncio.get_running_loop()
    await asyncio.gather(dn.approval_async("a"), loop.run_in_executor(None, time.sleep, 0.5))
    return "ok"


async def event_with_timeout():
    return await dn.wait_for_event_async("late", timeout=5)


def not_in_a_loop():
    return dn.approval_async("x")


def test_waits_are_registered_at_once_and_reported_idle_together(worker):
    worker.run(gather_two, attempt=1)
    _, a = worker.until("wait")
    _, b = worker.until("wait")
    assert (a["key"], a["mode"], b["key"]) == ("approval:a#1", "async", "approval:b#1")
    _, idle = worker.until("waits_idle")
    assert idle["keys"] == ["approval:a#1", "approval:b#1"]
    _resolve(worker, a["aid"], "approval:b#1", _res("rejected", 1))
    _, idle = worker.until("waits_idle")  # went on, then idles on the other one alone
    assert idle["keys"] == ["approval:a#1"]
    _resolve(worker, a["aid"], "approval:a#1", _res("approved", 2))
    end = _end(worker)
    assert serial.loads(end["output"]) == [True, False, "ann"]


def test_a_suspend_unwinds_the_attempt(worker):
    worker.run(gather_two, attempt=2)
    _, idle = worker.until("waits_idle")
    worker.chan.send({"op": "suspend", "aid": idle["aid"], "key": idle["keys"][0]})
    assert _end(worker)["op"] == "suspended"


@pytest.mark.parametrize("first", ["ship", "go"])
def test_a_replay_hands_recorded_resolutions_over_in_their_order(worker, first):
    seq = {"ship": 1, "go": 2} if first == "ship" else {"ship": 2, "go": 1}
    waits = {"approval:ship#1": _res("approved", seq["ship"]),
             "event:go#1": _res("event", seq["go"], data=serial.dumps("x", "d"))}
    worker.run(first_of, "", attempt=3, waits=waits)
    end = _end(worker)
    assert serial.loads(end["output"]) == [first], "one winner: the first recorded"


def test_a_later_resolution_waits_for_an_earlier_one_whose_wait_is_met_later(worker):
    waits = {"event:go#1": _res("event", 1, data=serial.dumps(None, "d")),
             "approval:a#1": _res("approved", 2)}
    worker.run(timer_then_event, attempt=4, waits=waits)
    assert serial.loads(_end(worker)["output"]) == ["go", "a"]


@pytest.mark.parametrize("fn", [beside_a_timer, beside_a_thread])
def test_the_loop_is_not_idle_while_a_timer_or_a_thread_job_runs(worker, fn):
    worker.run(fn, attempt=5)
    _, wait = worker.until("wait")
    registered = time.monotonic()
    _, idle = worker.until("waits_idle")
    assert time.monotonic() - registered >= 0.4
    _resolve(worker, wait["aid"], "approval:a#1", _res("approved", 1))
    assert serial.loads(_end(worker)["output"]) == "ok"


def test_a_timed_out_event_raises_when_awaited(worker):
    worker.run(event_with_timeout, attempt=6)
    _, wait = worker.until("wait")
    assert wait["timeout"] == 5
    _resolve(worker, wait["aid"], "event:late#1", _res("timed_out", 1))
    end = _end(worker)
    assert end["op"] == "failed" and end["error"]["type"].endswith("WaitTimeout")
    assert "no event 'late' arrived within 5 s" in end["error"]["message"]


def test_outside_a_running_loop_it_says_to_use_the_blocking_form(worker):
    worker.run(not_in_a_loop, attempt=7)
    end = _end(worker)
    assert end["op"] == "failed" and "in plain code use the blocking form" in \
        end["error"]["message"]
