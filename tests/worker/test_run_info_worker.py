"""dn.metadata and dn.progress in a real worker process, whose engine side the test plays:
a value that is not JSON is refused in the user's code before anything is sent; a change
waits for the engine, which may refuse it; progress is throttled to about ten messages a
second and its last value always arrives; tqdm, imported only by the run, feeds it."""

from __future__ import annotations

import sys
import time

import pytest
from _support import FakeEngineWorker

import durable_nb as dn
from durable_nb.core.run_reports import check_json


@pytest.fixture(scope="module")
def worker():
    w = FakeEngineWorker()
    yield w
    w.close()


def _ok(worker, msg):
    worker.chan.send({"ok": True, "aid": msg["aid"], "re": msg["req"]})


# ---------------------------------------------------------------------- run in the worker

def bad_values():
    """Every refusal the worker makes by itself, as (type, message)."""
    out = []
    for call in (lambda: dn.metadata.set("score", float("nan")),
                 lambda: dn.metadata.set("scores", {"a": [1.0, float("inf")]}),
                 lambda: dn.metadata.set("by_id", {1: "x"}),
                 lambda: dn.metadata.set("when", object()),
                 lambda: dn.metadata.append("rows", {"a", "b"}),
                 lambda: dn.metadata.increment("count", "1"),
                 lambda: dn.metadata.set("", 1),
                 lambda: dn.metadata.set(3, 1),
                 lambda: dn.metadata.set("big", "x" * (300 * 1024)),
                 lambda: dn.progress("half"),
                 lambda: dn.progress(-1),
                 lambda: dn.progress(1, 0),
                 lambda: dn.progress(1, 10, text=5)):
        try:
            call()
            out.append(("no error", ""))
        except Exception as exc:
            out.append((type(exc).__name__, str(exc)))
    return out


def changes_then_refused():
    dn.metadata.set("stage", "load")
    dn.metadata.increment("rows", 10)
    try:
        dn.metadata.append("stage", 1)
    except TypeError as exc:
        return f"TypeError: {exc}"
    return "not refused"


def many_reports(n):
    for i in range(1, n + 1):
        dn.progress(i, n, "rows")
    return n


def held_then_step():
    dn.progress(1, 10)
    dn.progress(2, 10, "held")  # within 0.1 s of the first: held back...
    reporting_step()  # ...and sent before the step's message
    return "ok"


@dn.step
def reporting_step():
    return 1


def tqdm_loops():
    already = "tqdm" in sys.modules
    from tqdm.auto import tqdm  # imported by the run only: the import hook patches it

    for _ in tqdm(range(3), desc="outer", mininterval=0):
        for _ in tqdm(range(50), desc="inner", leave=False, mininterval=0):
            time.sleep(0.001)
    return already


# ---------------------------------------------------------------------- tests

def test_values_that_are_not_json_are_refused_before_anything_is_sent(worker):
    worker.run(bad_values)
    seen, end = worker.until("done", "failed")
    assert end["op"] == "done", end
    assert not [m for m in seen if m.get("op") in ("metadata", "progress")]
    got = _loads(end["output"])
    kinds = [k for k, _ in got]
    assert kinds == ["ValueError", "ValueError", "TypeError", "TypeError", "TypeError",
                     "TypeError", "ValueError", "TypeError", "PayloadTooLarge", "TypeError",
                     "ValueError", "ValueError", "TypeError"]
    text = [m for _, m in got]
    assert "metadata 'score' is nan" in text[0]
    assert "metadata 'scores' at ['a'][1] is inf" in text[1]
    assert "metadata 'by_id' has the key 1 (int)" in text[2]
    assert "metadata 'when' is of type object, which is not JSON" in text[3]
    assert "metadata 'rows' is of type set" in text[4]
    assert "takes a number n" in text[5]
    assert "over the limit of 256.0 KB" in text[8]


def _loads(data):
    from durable_nb.core import serial

    return serial.loads(data)


def test_a_change_waits_for_the_engine_which_may_refuse_it(worker):
    worker.run(changes_then_refused)
    _, msg = worker.until("metadata", "done", "failed")
    assert (msg["change"], msg["key"], msg["value"], msg["call"]) == (
        "set", "stage", '"load"', "metadata:stage#1")
    _ok(worker, msg)
    _, msg = worker.until("metadata")
    assert (msg["change"], msg["value"], msg["call"]) == ("increment", "10", "metadata:rows#1")
    _ok(worker, msg)
    _, msg = worker.until("metadata")
    assert msg["call"] == "metadata:stage#2"  # the place in the run of each call of a key
    worker.chan.send({"refused": {"type": "TypeError", "message": "holds str, cannot append"},
                      "aid": msg["aid"], "re": msg["req"]})
    _, end = worker.until("done", "failed")
    assert _loads(end["output"]) == "TypeError: holds str, cannot append"


def test_progress_is_throttled_and_its_last_value_arrives(worker):
    worker.run(many_reports, 20_000)
    seen, end = worker.until("done", "failed")
    reports = [m for m in seen if m.get("op") == "progress"]
    assert 1 <= len(reports) < 40, len(reports)  # ~10 a second, not 20,000
    assert (reports[-1]["done"], reports[-1]["total"], reports[-1]["text"]) == (
        20_000, 20_000, "rows")
    assert reports[0]["done"] == 1  # the first goes at once


def test_a_held_progress_value_goes_before_the_next_request(worker):
    worker.run(held_then_step)
    seen, msg = worker.until("step")
    assert [(m["done"], m["text"]) for m in seen if m.get("op") == "progress"] == [
        (1, None), (2, "held")]
    _ok(worker, msg)
    worker.until("done")


def test_tqdm_imported_by_the_run_feeds_progress_from_its_outermost_bar():
    w = FakeEngineWorker()  # a fresh process: tqdm not imported yet
    try:
        w.run(tqdm_loops)
        seen, end = w.until("done", "failed")
        assert end["op"] == "done", end
        assert _loads(end["output"]) is False, "tqdm was imported before the run"
        reports = [m for m in seen if m.get("op") == "progress"]
        assert reports and {m["text"] for m in reports} == {"outer"}  # never the inner bar
        assert all(m["total"] == 3 for m in reports)
        assert reports[-1]["done"] == 3  # the closing value of the outer bar
    finally:
        w.close()


def test_outside_a_run_metadata_and_progress_say_where_they_work():
    with pytest.raises(dn.DurableError, match="only works inside a task run or a %%durable"):
        dn.metadata.set("a", 1)
    with pytest.raises(dn.DurableError, match=r"dn\.progress .* only works inside a task run"):
        dn.progress(1, 2)


def test_json_checks_name_the_key_and_the_place():
    check_json("ok", {"a": [1, 2.5, None, True, "x", {"b": []}]})
    with pytest.raises(TypeError, match=r"metadata 'k' at \['a'\]\[0\]\['b'\] is of type bytes"):
        check_json("k", {"a": [{"b": b"x"}]})
