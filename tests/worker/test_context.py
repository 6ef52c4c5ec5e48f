"""A run's context inside a real worker: steps are journaled through the engine and replayed
from the record, and occurrence keys count calls of the same step."""

import pytest
from _support import FakeEngineWorker

import durable_nb as dn
from durable_nb.core import serial
from durable_nb.worker.context import current, error_info


@dn.step
def double(x):
    print("computing", x)
    return x * 2


@dn.step
def refuse(x):
    raise ValueError(f"bad {x}")


def two_steps(x):
    return double(x) + double(x + 1)


def failing_step():
    try:
        refuse(1)
    except ValueError as exc:
        return f"caught {exc}"


@pytest.fixture(scope="module")
def worker():
    """One worker process for the module's tests: it runs their attempts one after another."""
    w = FakeEngineWorker()
    yield w
    w.close()


def _reply(worker, msg):
    worker.chan.send({"ok": True, "aid": msg["aid"], "re": msg["req"]})


def test_each_step_is_recorded_with_its_occurrence_key(worker):
    worker.run(two_steps, 5)
    keys = []
    while True:
        _, msg = worker.until("step", "done", "failed")
        if msg["op"] != "step":
            break
        keys.append(msg["key"])
        assert msg["end"] >= msg["start"] and msg["attempt"] == 1
        _reply(worker, msg)
    assert keys == ["double#1", "double#2"]
    assert msg["op"] == "done" and serial.loads(msg["output"]) == 22


def test_recorded_steps_are_replayed_without_running_again(worker):
    recorded = {"double#1": ("ok", serial.dumps(100, "x"))}
    worker.run(two_steps, 5, steps=recorded)
    logs, msg = worker.until("step", "done", "failed")
    assert msg["key"] == "double#2"  # the first call came from the record
    assert [line for m in logs for line in m.get("lines", [])] == ["computing 6"]
    _reply(worker, msg)
    _, done = worker.until("done", "failed")
    assert serial.loads(done["output"]) == 112


def test_a_failed_step_without_retry_is_final_and_raised_into_the_task(worker):
    worker.run(failing_step)
    _, msg = worker.until("step_failed", "done", "failed")
    assert msg["op"] == "step_failed" and msg["final"] and msg["delay"] is None
    assert msg["error"]["type"] == "ValueError" and msg["exc"] is not None
    _reply(worker, msg)
    _, done = worker.until("done", "failed")
    assert serial.loads(done["output"]) == "caught bad 1"


def test_there_is_no_context_outside_a_worker():
    assert current() is None
    with pytest.raises(dn.DurableError, match="only works inside a task run"):
        dn.approval("x")


def test_error_info_names_the_type_and_marks_aborts():
    try:
        raise dn.AbortRun("stop")
    except dn.AbortRun as exc:
        info = error_info(exc)
    assert info["type"] == "durable_nb.core.errors.AbortRun" and info["abort"] is True
    assert info["message"] == "stop" and "raise dn.AbortRun" in info["traceback"]
