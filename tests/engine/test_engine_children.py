"""Idempotency keys and child runs (acceptance 6)."""

import time

import pytest
from _support import wait_for

import durable_nb as dn


@dn.task(id="square")
def square(x: int) -> int:
    if x < 0:
        raise dn.AbortRun("negative input")
    return x * x


@dn.task(id="parent")
def parent(n: int) -> dict:
    one = square.trigger_and_wait(n)
    many = square.batch_trigger_and_wait([1, 2, 3, -1])
    return {"one": one, "many": [(r.status, r.output) for r in many]}


def test_idempotency_key_returns_existing_run(engine):
    a = square.trigger(4, idempotency_key="sq-4")
    b = square.trigger(5, idempotency_key="sq-4")
    assert a.id == b.id
    assert b.result(timeout=30) == 16
    c = square.trigger(5, idempotency_key="sq-5")
    assert c.id != a.id and c.result(timeout=30) == 25


def test_children_are_linked_and_parent_gets_results(engine):
    run = parent.trigger(7)
    out = run.result(timeout=60)
    assert out["one"] == 49
    assert out["many"][:3] == [("COMPLETED", 1), ("COMPLETED", 4), ("COMPLETED", 9)]
    assert out["many"][3][0] == "FAILED"
    children = run.info()["children"]
    assert len(children) == 5
    assert all(c["task_id"] == "square" for c in children)
    parents = dn.sql("select distinct parent_run_id from runs where task_id = 'square' "
                     "and parent_run_id is not null")
    assert list(parents) == [(run.id,)]
    # the parent suspended while its children ran, then resumed with their results
    assert "SUSPENDED" in [a["outcome"] for a in run.attempts] or len(run.attempts) == 1


@dn.task(id="slow-child")
def slow_child() -> str:
    time.sleep(1.0)
    return "done"


@dn.task(id="waiting-parent")
def waiting_parent() -> str:
    return slow_child.trigger_and_wait()


def test_parent_frees_its_worker_while_child_runs(engine):
    run = waiting_parent.trigger()
    wait_for(lambda: run.status == "WAITING", what="the parent to wait for its child")
    assert run.result(timeout=30) == "done"


def test_trigger_and_wait_outside_a_run(engine):
    assert square.trigger_and_wait(3) == 9
    with pytest.raises(dn.RunFailed, match="negative input"):
        square.trigger_and_wait(-3)


@dn.task(id="long-child")
def long_child() -> str:
    time.sleep(30)
    return "never"


@dn.task(id="cancelled-parent")
def cancelled_parent() -> str:
    return long_child.trigger_and_wait()


def test_canceling_a_parent_cancels_its_children(engine):
    run = cancelled_parent.trigger()
    children = wait_for(lambda: run.info()["children"], what="the child run")
    child = dn.get_run(children[0]["id"])
    run.cancel()
    assert run.wait(10) == "CANCELED"
    assert child.wait(10) == "CANCELED"
