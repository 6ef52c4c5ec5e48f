"""The worker process: it greets the engine, runs attempts one at a time, reports results,
errors and printed lines, and exits when the engine's end of the channel closes."""

import asyncio

import pytest
from _support import FakeEngineWorker

from durable_nb.core import serial


@pytest.fixture(scope="module")
def worker():
    """One worker process for the module's tests: it runs their attempts one after another."""
    w = FakeEngineWorker()
    yield w
    w.close()


def add(a, b):
    print("adding", a, "and", b)
    print("partial line", end="")
    return a + b


async def add_async(a, b):
    await asyncio.sleep(0)
    return a + b


def fails():
    raise KeyError("missing")


def test_an_attempt_reports_its_result_and_printed_lines(worker):
    worker.run(add, 2, 3)
    logs, done = worker.until("done", "failed")
    assert done["op"] == "done" and done["aid"] == "run_a/1"
    assert serial.loads(done["output"]) == 5
    lines = [line for m in logs if m["op"] == "log" for line in m["lines"]]
    assert lines == ["adding 2 and 3", "partial line"]  # flushed at the attempt's end
    assert all(m["stream"] == "stdout" and m["aid"] == "run_a/1" for m in logs)


def test_a_coroutine_task_runs_to_its_result(worker):
    worker.run(add_async, 20, 22)
    _, done = worker.until("done", "failed")
    assert serial.loads(done["output"]) == 42


def test_an_error_is_reported_with_its_traceback_and_the_worker_goes_on(worker):
    worker.run(fails)
    _, failed = worker.until("done", "failed")
    assert failed["op"] == "failed"
    err = failed["error"]
    assert err["type"] == "KeyError" and err["message"] == "'missing'"
    assert "in fails" in err["traceback"] and err["abort"] is False
    worker.run(add, 1, 1, run_id="run_b")
    _, done = worker.until("done", "failed")
    assert done["aid"] == "run_b/1" and serial.loads(done["output"]) == 2


def test_a_result_over_the_payload_limit_fails_the_run_without_retry(worker):
    worker.run(add, "x" * 2000, "y", max_payload=1000)
    _, failed = worker.until("done", "failed")
    assert failed["op"] == "failed"
    assert failed["error"]["type"].endswith("PayloadTooLarge") and failed["error"]["abort"]


def test_the_worker_exits_when_the_engine_closes_the_channel():
    worker = FakeEngineWorker()
    worker.sock.close()
    assert worker.proc.wait(10) == 0
