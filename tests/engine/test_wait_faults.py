"""Waits under faults: one row and one resolution per wait key, stale worker messages
dropped, wait deadlines re-armed after an engine crash, attempts durable before they run."""

import asyncio
import os
import signal

import cloudpickle
import pytest
from _support import FakeEngineWorker, bump, count, wait_for

import durable_nb as dn
from durable_nb.core import serial as _serial
from durable_nb.engine.engine import Engine, EngineConfig


@dn.task(id="fault-approval", retry=dn.Retry(max_attempts=3, min_timeout=0.05, randomize=False))
def approval_after_crash(marks: str, timeout: float) -> dict:
    bump(marks, "start")
    d = dn.approval("ship", data={"n": 1}, timeout=timeout)
    return {"approved": d.approved, "timed_out": d.timed_out}


@dn.task(id="fault-sleep")
def sleeper(marks: str, seconds: float) -> str:
    bump(marks, "before")
    dn.sleep(seconds)
    bump(marks, "after")
    return "woke"


@dn.task(id="fault-approval-timeout")
def approval_timeout(marks: str, seconds: float) -> bool:
    bump(marks, "before")
    return dn.approval("late", timeout=seconds).timed_out


def _worker_of(engine, run_id: str) -> int | None:
    for w in engine.client.request("GET", "/workers")["workers"]:
        if w["run_id"] == run_id:
            return w["pid"]
    return None


def _wait_rows(engine, run_id: str) -> list:
    out = engine.client.request("POST", "/sql", {
        "query": f"select wait_key, outcome from waits where run_id = '{run_id}' "
                 "order by created_at"})
    return out["rows"]


@pytest.mark.slow
def test_a_wait_keeps_one_row_and_one_resolution_across_a_crash(make_engine, marks):
    """The worker dies while holding an approval; the retried attempt meets the same wait:
    its deadline is the first one, it times out once, and a late approval is refused."""
    engine = make_engine("--wait-grace", "30")
    run = approval_after_crash.trigger(str(marks), 3.0)
    wait_for(lambda: run.waits and _worker_of(engine, run.id), 30, "the run to hold its wait")
    os.kill(_worker_of(engine, run.id), signal.SIGKILL)
    wait_for(lambda: count(marks, "start") == 2 and _worker_of(engine, run.id), 30,
             "the retried attempt to reach the wait again")
    assert run.result(timeout=30) == {"approved": False, "timed_out": True}
    with pytest.raises(dn.WaitConflict, match="already resolved"):
        run.approve("ship")
    assert _wait_rows(engine, run.id) == [["approval:ship#1", "timed_out"]]
    assert [a["outcome"] for a in run.attempts] == ["CRASHED", "COMPLETED"]


@pytest.mark.slow
def test_an_approval_decided_while_the_run_is_retried_is_the_one_it_sees(make_engine, marks):
    engine = make_engine("--wait-grace", "30", "--workers", "1")
    run = approval_after_crash.trigger(str(marks), 60.0)
    wait_for(lambda: run.waits and _worker_of(engine, run.id), 30, "the run to hold its wait")
    os.kill(_worker_of(engine, run.id), signal.SIGKILL)
    run.approve("ship", comment="while it was down")
    assert run.result(timeout=30) == {"approved": True, "timed_out": False}
    assert _wait_rows(engine, run.id) == [["approval:ship#1", "approved"]]


@pytest.mark.slow
@pytest.mark.parametrize("task, expected", [(sleeper, "woke"), (approval_timeout, True)])
def test_wait_deadlines_fire_after_the_engine_died_in_the_grace_period(make_engine, marks,
                                                                        task, expected):
    engine = make_engine("--wait-grace", "30")
    run = task.trigger(str(marks), 2.0)
    wait_for(lambda: run.waits and run.status == "EXECUTING", 30, "the run inside its wait")
    engine.kill()
    engine.start()
    # the recovered attempt meets the same wait again: its deadline must still fire, long
    # before the 30 s grace period would suspend it
    assert run.result(timeout=15) == expected
    assert count(marks, "before") == 2


def _waits_for_approval():
    import durable_nb as dn

    return dn.approval("gate").approved


def test_a_worker_drops_messages_of_another_attempt_or_wait():
    worker = FakeEngineWorker()
    chan = worker.chan
    try:
        worker.run(_waits_for_approval, attempt=2)
        wait = chan.recv()
        assert wait["op"] == "wait", wait and wait["aid"] == "run_a/2"
        key = wait["key"]
        # stale: another attempt's suspend, another wait's resolution, a late reply
        chan.send({"op": "suspend", "aid": "run_a/1", "key": key})
        chan.send({"op": "suspend", "aid": "run_b/1", "key": key})
        chan.send({"op": "resolved", "aid": "run_a/2", "key": "approval:other#1",
                   "resolution": {"outcome": "rejected"}})
        chan.send({"ok": True, "aid": "run_a/2", "re": 999})
        chan.send({"op": "resolved", "aid": "run_a/2", "key": key,
                   "resolution": {"outcome": "approved", "comment": None, "by": "x", "at": 1.0}})
        done = chan.recv()
        assert done["op"] == "done" and done["aid"] == "run_a/2"
        assert _serial.loads(done["output"]) is True
        assert worker.proc.poll() is None, "the worker must survive stale messages"
    finally:
        worker.close()


def test_an_attempt_reaches_its_worker_only_once_its_record_is_durable(tmp_path):
    """In-process engine with real workers: when the run message goes to the worker, the
    journal has already synced the attempt's record."""

    def work(x):
        return x + 1

    async def main():
        engine = Engine(EngineConfig(db_path=tmp_path / "e.duckdb", max_workers=1))
        await engine.start()
        attempt_seqs: list[int] = []
        synced = [0]  # the highest sequence number the journal has written and synced
        late: list[str] = []
        write = engine.store.write
        write_batch = engine.store.write_batch

        def spy_write_batch(batch, data=None):
            write_batch(batch, data)
            if batch:
                synced[0] = max(synced[0], batch[-1][0])

        def spy_write(records, done=None):
            seq = write(records, done)
            if any(r[0] == "ins" and r[1] == "attempts" for r in records):
                attempt_seqs.append(seq)
            return seq

        engine.store.write = spy_write
        engine.store.write_batch = spy_write_batch
        try:
            code = cloudpickle.dumps(work)
            h = _serial.task_hash(code, "work", {})
            engine.register_task({"hash": h, "task_id": "work", "code": code, "options": {}})
            while not engine.pool.idle():
                await asyncio.sleep(0.01)
            for w in engine.pool.workers:
                send = w.send

                def spy_send(msg, send=send):
                    if msg.get("op") == "run" and synced[0] < attempt_seqs[-1]:
                        late.append(msg["run_id"])
                    send(msg)

                w.send = spy_send
            for i in range(5):
                rid, _ = await engine.trigger(h, _serial.dumps(((i,), {}), "payload"))
                row = await engine.wait_result(rid, 30)
                assert row["status"] == "COMPLETED"
        finally:
            await engine.stop()
        return late

    assert asyncio.run(main()) == []


@dn.task(id="fault-blocker", queue=dn.Queue("fault-one-slot", concurrency_limit=1))
def one_slot(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@pytest.mark.slow
def test_a_ttl_still_expires_a_queued_run_after_an_engine_crash(engine):
    blocker = one_slot.trigger(6.0)
    wait_for(lambda: blocker.status == "EXECUTING", 30, "the blocker to start")
    queued = one_slot.trigger(0.0, ttl=2.0)
    engine.kill()
    engine.start()
    with pytest.raises(dn.RunFailed) as err:
        queued.result(timeout=30)
    assert err.value.status == "EXPIRED"  # not started: without its timer it would complete
    assert queued.info()["attempts"] == 0
