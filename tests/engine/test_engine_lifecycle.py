"""Cancel, replay, delays, ttl, max_duration, kill_after, async tasks and logs."""

import asyncio
import time

import pytest
from _support import wait_for

import durable_nb as dn


@dn.task(id="nap")
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_cancel_executing_and_queued_runs(engine):
    run = nap.trigger(30)
    wait_for(lambda: run.status == "EXECUTING", what="the run to execute")
    run.cancel()
    with pytest.raises(dn.RunFailed) as err:
        run.result(timeout=10)
    assert err.value.status == "CANCELED"
    assert run.attempts[-1]["outcome"] == "CANCELED"
    later = nap.trigger(0.1, delay=30)
    assert later.status == "DELAYED"
    later.cancel()
    assert later.status == "CANCELED"
    with pytest.raises(dn.WaitConflict, match="already finished"):
        later.cancel()


def test_replay_starts_a_new_run_with_the_same_arguments(engine):
    run = nap.trigger(0.01)
    assert run.result(timeout=30) == 0.01
    again = run.replay()
    assert again.id != run.id and again.result(timeout=30) == 0.01
    assert dn.sql(f"select replay_of from runs where id = '{again.id}'")[0][0] == run.id


def test_delay_and_ttl(engine):
    t = time.time()
    run = nap.trigger(0, delay="0.6s")
    run.result(timeout=30)
    started = run.info()["started_at"]
    assert started - t >= 0.55
    blocker_q = dn.Queue("one-at-a-time", concurrency_limit=1)

    @dn.task(id="blocked", queue=blocker_q)
    def blocked(s):
        time.sleep(s)

    first = blocked.trigger(1.5)
    expiring = blocked.trigger(0, ttl=0.5)
    with pytest.raises(dn.RunFailed) as err:
        expiring.result(timeout=30)
    assert err.value.status == "EXPIRED"
    first.result(timeout=30)


@dn.task(id="overrun", max_duration=0.3)
def overrun() -> str:
    time.sleep(0.8)
    return "finished anyway"


@dn.task(id="killed", kill_after=0.5)
def killed() -> str:
    time.sleep(30)
    return "never"


def test_max_duration_warns_and_kill_after_times_out(engine):
    run = overrun.trigger()
    assert run.result(timeout=30) == "finished anyway"
    assert run.info()["duration_warning"] is True
    assert any(s["kind"] == "warning" for s in run.spans)
    k = killed.trigger()
    with pytest.raises(dn.RunFailed) as err:
        k.result(timeout=30)
    assert err.value.status == "TIMED_OUT"
    assert "kill_after" in err.value.error["message"]
    assert len(k.attempts) == 1


@dn.step()
async def async_double(x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


@dn.task(id="async-task")
async def async_task(x: int) -> int:
    return await async_double(x) + await async_double(1)


def test_async_task_and_steps(engine):
    run = async_task.trigger(20)
    assert run.result(timeout=30) == 42
    assert [s["step_key"] for s in run.steps] == ["async_double#1", "async_double#2"]


@dn.task(id="printer")
def printer() -> None:
    print("hello from the worker")
    import sys

    print("to stderr", file=sys.stderr)


def test_prints_are_captured_as_logs(engine):
    run = printer.trigger()
    run.result(timeout=30)
    logs = run.logs
    assert {"stream": "stdout", "line": "hello from the worker"} in [
        {"stream": x["stream"], "line": x["line"]} for x in logs]
    assert any(x["stream"] == "stderr" and x["line"] == "to stderr" for x in logs)


def test_steps_outside_a_run_are_plain_calls():
    @dn.step()
    def add(a, b):
        return a + b

    assert add(1, 2) == 3
    with pytest.raises(dn.DurableError, match="inside a task run"):
        dn.approval("x")


def test_runs_listing_and_sql(engine):
    runs = [nap.trigger(0) for _ in range(3)]
    for r in runs:
        r.result(timeout=30)
    listed = dn.runs(task="nap", status="COMPLETED")
    assert {r.id for r in runs} <= {r.id for r in listed}
    res = dn.sql("select status, count(*) as n from runs group by status")
    assert res.columns == ["status", "n"] and ("COMPLETED", len(listed)) in list(res)
    transitions = dn.sql(f"select to_status from transitions where run_id = '{runs[0].id}' "
                         "order by created_at")
    assert [t[0] for t in transitions] == ["QUEUED", "EXECUTING", "COMPLETED"]


@dn.step()
def keyed() -> str:
    return dn.idempotency_key()


@dn.task(id="keys")
def keys() -> list:
    return [keyed(), keyed()]


def test_idempotency_key_is_stable_per_step(engine):
    run = keys.trigger()
    assert run.result(timeout=30) == [f"{run.id}:keyed#1", f"{run.id}:keyed#2"]
    with pytest.raises(dn.DurableError, match="only available inside a step"):
        dn.idempotency_key()


def test_redeclared_options_take_effect(engine):
    def body():
        time.sleep(2)
        return "slow"

    assert dn.task(id="redeclared")(body).trigger().result(timeout=30) == "slow"
    limited = dn.task(id="redeclared", kill_after="0.5s")(body)
    with pytest.raises(dn.RunFailed) as err:
        limited.trigger().result(timeout=30)
    assert err.value.status == "TIMED_OUT"
