"""Cells run statement by statement with checkpoints (the engine side of %%durable)."""

import socket

import pytest
from _support import count, small_tmpfs

import durable_nb as dn
from durable_nb.client.cells import fetch_variables, trigger_cell

CELL = '''
import os, signal
first = bump(marks, "stmt1")
counter = first * 10
if bump(marks, "stmt2") == 1:
    os.kill(os.getpid(), signal.SIGKILL)
counter += 1
@decorate
def helper(x):
    return x + counter
result = helper(100)
'''


def decorate(f):
    return f


def test_cell_resumes_after_the_last_checkpoint(engine, marks):
    from _support import bump

    ns = {"bump": bump, "marks": str(marks), "decorate": decorate, "unused": object()}
    run = trigger_cell(CELL, ns, name="resumable", retries=2)
    out = run.result(timeout=60)
    assert out["statements"] == 7
    assert count(marks, "stmt1") == 1, "statement 1 ran once: it was checkpointed"
    assert count(marks, "stmt2") == 2
    assert [a["outcome"] for a in run.attempts] == ["CRASHED", "COMPLETED"]
    values = fetch_variables(run, ["counter", "result", "first"])
    assert values == {"counter": 11, "result": 111, "first": 1}
    cps = dn.sql(f"select statement from checkpoints where run_id = '{run.id}' order by seq")
    assert [c[0] for c in cps] == [1, 2, 3, 4, 5, 6, 7]
    assert dn.sql(f"select kind, task_id from runs where id = '{run.id}'")[0] == (
        "cell", "resumable")


FIVE = """
a = bump(marks, "s1")
b = bump(marks, "s2")
if bump(marks, "s3") == 1:
    os.kill(os.getpid(), signal.SIGKILL)
d = a + b
e = bump(marks, "s5")
"""


def test_a_crashed_cell_resumes_by_default_without_retries(engine, marks):
    """Default options (no --retries): a worker killed in statement 3 is not the cell's
    exception, so the run resumes after statement 2's checkpoint and completes."""
    import os
    import signal

    from _support import bump

    ns = {"bump": bump, "marks": str(marks), "os": os, "signal": signal}
    run = trigger_cell(FIVE, ns, name="five")
    assert run.result(timeout=60)["statements"] == 5
    assert [count(marks, s) for s in ("s1", "s2", "s3", "s5")] == [1, 1, 2, 1]
    assert [a["outcome"] for a in run.attempts] == ["CRASHED", "COMPLETED"]
    assert fetch_variables(run, ["d", "e"]) == {"d": 2, "e": 1}


def test_unchanged_values_are_stored_once(engine):
    src = "big = b'x' * 3_000_000\n" + "\n".join(f"n{i} = {i}" for i in range(10))
    run = trigger_cell(src, {}, name="dedupe")
    run.result(timeout=60)
    total = dn.sql("select sum(size) from blobs")[0][0]
    assert 3_000_000 < total < 3_100_000
    checkpointed = dn.sql(f"select sum(size) from checkpoints where run_id = '{run.id}'")[0][0]
    assert checkpointed > 10 * 3_000_000  # what naive snapshots would have stored


BIG_CELL = '''
import os, signal
big = bytes(range(256)) * 8192
if bump(marks, "big-stmt") == 1:
    os.kill(os.getpid(), signal.SIGKILL)
size = len(big)
'''


def test_large_values_are_private_files_that_a_resume_reads_back(engine, marks):
    import os
    import stat

    from _support import bump

    run = trigger_cell(BIG_CELL, {"bump": bump, "marks": str(marks)}, name="big", retries=2)
    run.result(timeout=60)
    assert [a["outcome"] for a in run.attempts] == ["CRASHED", "COMPLETED"]
    assert fetch_variables(run, ["size", "big"]) == {"size": 2 ** 21, "big": bytes(range(256)) * 8192}
    rows = dn.sql("select hash, size, external, data is null from blobs where size > 1000000")
    assert len(rows) == 1, "the large value is stored once, across both attempts"
    h, size, external, no_data = rows[0]
    assert external and no_data and size > 2 ** 21
    folder = engine.db.with_name(engine.db.name + ".blobs")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder / h).st_mode) == 0o600
    assert os.path.getsize(folder / h) == size
    assert os.path.getsize(engine.db) < 2 ** 21, "the database itself holds no copy"


@dn.step()
def numbered(x):
    return x


def test_step_occurrences_survive_a_resume(engine, marks):
    src = '''
import os, signal
a = numbered(1)
b = numbered(2)
if bump(marks, "crash") == 1:
    os.kill(os.getpid(), signal.SIGKILL)
c = numbered(3)
'''
    from _support import bump

    run = trigger_cell(src, {"numbered": numbered, "bump": bump, "marks": str(marks)},
                       retries=1)
    run.result(timeout=60)
    assert fetch_variables(run, ["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}
    keys = [s["step_key"] for s in run.steps]
    assert keys == ["numbered#1", "numbered#2", "numbered#3"]


def test_top_level_await(engine):
    src = "import asyncio\nawait asyncio.sleep(0.01)\nx = await asyncio.sleep(0, result=5)\n"
    run = trigger_cell(src, {})
    run.result(timeout=60)
    assert fetch_variables(run, ["x"]) == {"x": 5}


def test_unpicklable_variable_is_named_and_transient_works(engine):
    src = "import socket\nws = socket.socket()\nn = 1\n"
    run = trigger_cell(src, {})
    with pytest.raises(dn.RunFailed) as err:
        run.result(timeout=60)
    msg = err.value.error["message"]
    assert "cannot checkpoint after statement 2" in msg
    assert "variable 'ws'" in msg and "socket.socket" in msg and "--transient ws" in msg
    assert len(run.attempts) == 1
    ok = trigger_cell(src, {}, transient=["ws"])
    ok.result(timeout=60)
    assert fetch_variables(ok) == {"n": 1, "socket": socket}


def test_unpicklable_input_is_refused_in_the_kernel(engine):
    s = socket.socket()
    try:
        with pytest.raises(dn.NotPicklable, match="variable 'conn'.*--transient conn"):
            trigger_cell("x = conn", {"conn": s})
    finally:
        s.close()


def test_oversized_checkpoint_lists_the_largest_variables(make_engine):
    make_engine("--max-checkpoint-mb", "1")
    run = trigger_cell("a = b'x' * 900_000\nb = b'y' * 600_000\n", {})
    with pytest.raises(dn.RunFailed) as err:
        run.result(timeout=60)
    msg = err.value.error["message"]
    assert "after statement 2" in msg and "'a' 878.9 KB" in msg and "'b' 585.9 KB" in msg


def test_missing_variable_request_is_clear(engine):
    run = trigger_cell("x = 1\n", {})
    run.result(timeout=60)
    with pytest.raises(dn.ApiError, match="no variable 'y'.*it has x"):
        fetch_variables(run, ["y"])


FLAKY = """
a = bump(marks, "f1")
b = bump(marks, "f2")
if bump(marks, "f3") == 1:
    raise ConnectionError("the model server is busy")
c = a + b
"""


def test_a_failed_cell_resumes_after_its_last_checkpoint(engine, marks):
    from _support import bump

    run = trigger_cell(FLAKY, {"bump": bump, "marks": str(marks)}, name="flaky")
    with pytest.raises(dn.RunFailed, match="model server is busy"):
        run.result(timeout=60)
    assert run.resume() is run
    assert run.result(timeout=60)["statements"] == 4
    assert [count(marks, s) for s in ("f1", "f2", "f3")] == [1, 1, 2]
    assert fetch_variables(run, ["c"]) == {"c": 2}
    assert [a["outcome"] for a in run.attempts] == ["FAILED", "COMPLETED"]
    with pytest.raises(dn.WaitConflict, match="is COMPLETED; only a"):
        run.resume()


@pytest.fixture
def small_disk(tmp_path):
    """A 256 MB tmpfs mounted for the test (root only): the database's disk."""
    with small_tmpfs(tmp_path, "256m") as mnt:
        yield mnt


@pytest.mark.slow
def test_a_checkpoint_that_would_fill_the_disk_is_refused_clearly(small_disk):
    from _support import EngineProcess

    eng = EngineProcess(small_disk / "store.duckdb", ["--wait-grace", "0.3"])
    eng.start()  # the default limit: half of the free space on the database's disk
    try:
        # random bytes: zeros would be stored once per 4 MB piece, however many there are
        run = trigger_cell("a = b'x' * 5_000_000\nbig = __import__('os').urandom(150_000_000)\n"
                           "c = 3\n", {})
        with pytest.raises(dn.RunFailed) as err:
            run.result(timeout=120)
        msg = err.value.error["message"]
        assert "after statement 2 adds 143.1 MB" in msg, msg
        assert "more than half of the free space" in msg and "earlier checkpoints are intact" in msg
        cp = run.client.request("GET", f"/runs/{run.id}/checkpoint")
        assert cp["statement"] == 1 and set(cp["variables"]) == {"a"}
        assert len(fetch_variables(run, ["a"])["a"]) == 5_000_000
        # the engine goes on: a cell that fits is stored
        assert trigger_cell("small = list(range(10))\n", {}).wait(timeout=60) == "COMPLETED"
    finally:
        eng.stop()
