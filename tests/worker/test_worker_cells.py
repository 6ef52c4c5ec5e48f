"""A %%durable cell inside a real worker: a checkpoint after each top-level statement, and a
resume that continues after the last checkpointed statement."""

import math

import pytest
from _support import FakeEngineWorker

from durable_nb.core import serial
from durable_nb.worker.cells import checkpointable, run_cell

CELL = "a = base + 1\nimport math\nb = a * 2\nawait_free = math.floor(b / 3)\n"


def run_source(source, inputs, transient=()):
    return run_cell(source, inputs, list(transient))


@pytest.fixture(scope="module")
def worker():
    """One worker process for the module's tests: it runs their attempts one after another."""
    w = FakeEngineWorker()
    yield w
    w.close()


def _checkpoints(worker) -> tuple[list[dict], dict]:
    cps = []
    while True:
        _, msg = worker.until("checkpoint", "done", "failed")
        if msg["op"] != "checkpoint":
            return cps, msg
        cps.append(msg)
        worker.chan.send({"ok": True, "aid": msg["aid"], "re": msg["req"]})


def test_run_cell_refuses_to_run_outside_a_worker():
    with pytest.raises(RuntimeError, match="inside a worker"):
        run_cell("x = 1", {})


def test_checkpointable_leaves_out_module_names_and_transients():
    ns = {"__name__": "__main__", "__builtins__": None, "a": 1, "conn": object()}
    assert checkpointable(ns, {"conn"}) == {"a": 1}


def test_each_statement_is_checkpointed_and_unchanged_values_are_sent_once(worker):
    worker.run(run_source, CELL, {"base": 1}, ["math"])
    cps, done = _checkpoints(worker)
    assert [(c["statement"], c["total"]) for c in cps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert sorted(cps[-1]["manifest"]) == ["a", "await_free", "b", "base"]
    assert cps[2]["manifest"]["a"] == cps[0]["manifest"]["a"]
    (piece,) = cps[0]["manifest"]["a"]["p"]  # a small value: one piece, a database row
    assert piece in cps[0]["blobs"]
    assert piece not in cps[2]["blobs"]  # already sent
    assert serial.loads(done["output"]) == {"statements": 4,
                                            "variables": ["a", "await_free", "b", "base"]}


def test_a_resume_continues_after_the_last_checkpoint(worker):
    a, base = serial.dumps(41, "a"), serial.dumps(40, "base")
    mod = serial.dumps(math, "math")  # modules travel by reference
    cp = {"statement": 2, "counts": {}, "manifest": {"a": "ha", "base": "hb", "math": "hm"},
          "blobs": {"ha": a, "hb": base, "hm": mod}}
    worker.run(run_source, CELL, {"base": 1}, [], checkpoint=cp)
    cps, done = _checkpoints(worker)
    # statements 1 and 2 are not run again: `a` keeps its checkpointed value
    assert [c["statement"] for c in cps] == [3, 4]
    assert "ha" not in cps[0]["blobs"].values()
    (piece,) = cps[0]["manifest"]["b"]["p"]
    assert serial.loads(cps[0]["blobs"][piece]) == 82
    assert done["op"] == "done"
