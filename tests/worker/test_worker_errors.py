"""A real worker reports a failure with the user's frames only (the whole traceback beside
them), with the lines of functions defined in a notebook cell, and the exception pickled."""

from __future__ import annotations

import asyncio
import base64
import linecache
from pathlib import Path

import pytest
from _support import FakeEngineWorker

import durable_nb as dn
from durable_nb.core import codepickle, serial

PKG = str(Path(dn.__file__).resolve().parent)


class QuotaExceeded(Exception):
    def __init__(self, used: int):
        super().__init__(f"quota exceeded: {used} used")
        self.used = used


@dn.step
def charge(n: int) -> int:
    raise QuotaExceeded(n)


def bill(n: int) -> int:
    return charge(n) + 1


async def bill_async(n: int) -> int:
    await asyncio.sleep(0)
    raise QuotaExceeded(n)


@pytest.fixture(scope="module")
def worker():
    w = FakeEngineWorker()
    yield w
    w.close()


def _failed(worker) -> dict:
    """The error of the attempt's end, answering a final step failure on the way."""
    while True:
        _, msg = worker.until("step_failed", "done", "failed")
        if msg["op"] != "step_failed":
            assert msg["op"] == "failed", msg
            return msg["error"]
        step = msg["error"]
        assert "in charge" in step["traceback"] and "in bill" not in step["traceback"]
        assert PKG not in step["traceback"] and PKG in step["traceback_full"]
        worker.chan.send({"ok": True, "aid": msg["aid"], "re": msg["req"]})


def test_a_failure_has_the_users_frames_and_keeps_the_whole_traceback_beside(worker):
    worker.run(bill, 7)
    err = _failed(worker)
    tb, full = err["traceback"], err["traceback_full"]
    assert "in bill\n    return charge(n) + 1" in tb and "in charge\n    raise QuotaExceeded" in tb
    assert PKG not in tb and "durable_nb" not in tb.replace("test_worker_errors", "")
    assert tb.rstrip().endswith("QuotaExceeded: quota exceeded: 7 used")
    assert f"{PKG}/worker/main.py" in full and f"{PKG}/worker/context.py" in full
    exc = serial.loads(base64.b64decode(err["exc_b64"]))
    assert type(exc).__name__ == "QuotaExceeded" and exc.used == 7


def test_asyncios_runner_is_not_the_users_frame(worker):
    worker.run(bill_async, 3)
    err = _failed(worker)
    assert "asyncio" in err["traceback_full"] and "asyncio" not in err["traceback"]
    assert err["traceback"].startswith("Traceback (most recent call last):\n  File ")
    assert "in bill_async\n    raise QuotaExceeded(n)" in err["traceback"]


def test_a_notebook_cells_function_fails_with_its_lines_and_the_cells_label(worker):
    name = "/tmp/ipykernel_777/c0ffee.py"
    source = "import json\n\ndef parse(text):\n    data = json.loads(text)\n    return data\n"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    codepickle._LABELS[name] = "Cell In[4]"  # as the kernel's IPython names the cell
    ns: dict = {"__name__": "__main__"}
    exec(compile(source, name, "exec"), ns)
    worker.run(ns["parse"], "{oops", code=codepickle.dumps(ns["parse"]), task_hash="h-cell")
    tb = _failed(worker)["traceback"]
    assert 'File "Cell In[4]", line 4, in parse\n    data = json.loads(text)' in tb
    assert "<dynamic-code>" not in tb and name not in tb and PKG not in tb
    assert "json/decoder.py" in tb, "Python's frames below the user's stay"
