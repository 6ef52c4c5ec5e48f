"""dn.resource against a real engine: a sqlite3 connection made once per attempt (the same
object for every call with its name in that attempt), made anew after a SIGKILLed worker
and after a wait, and closed when each attempt ends; outside a run a plain call; cells
keep no resource in their checkpoints and bind it anew on a resume."""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest
from _support import bump, count, wait_for

import durable_nb as dn
from durable_nb.client.cells import fetch_variables, trigger_cell


class Tracked:
    """A connection that counts its closes in the marks folder."""

    def __init__(self, path: str, marks: str):
        self.conn = sqlite3.connect(path)
        self.marks = marks
        bump(marks, "made")

    def close(self) -> None:
        self.conn.close()
        bump(self.marks, "closed")


def _db(path: str, marks: str) -> Tracked:
    return dn.resource("db", lambda: Tracked(path, marks))


@dn.step
def insert(path: str, marks: str, value: str) -> tuple[int, int]:
    db = _db(path, marks)  # a step of the attempt gets the attempt's connection
    db.conn.execute("insert into t values (?)", (value,))
    db.conn.commit()
    return os.getpid(), id(db)


@dn.step
def crash_once(marks: str) -> None:
    if bump(marks, "crash") == 1:
        os.kill(os.getpid(), signal.SIGKILL)


@dn.task(id="res-sqlite")
def with_a_connection(path: str, marks: str):
    db = _db(path, marks)
    assert _db(path, marks) is db
    assert dn.resource("db", dict) is db, "another factory: the first one's object"
    db.conn.execute("create table if not exists t (v)")
    first = insert(path, marks, "one")
    crash_once(marks)  # the worker dies: the next attempt has a new connection
    second = insert(path, marks, "two")
    dn.sleep(1)  # longer than the grace: the run suspends, then resumes in a new attempt
    rows = [r[0] for r in db.conn.execute("select v from t order by rowid")]
    return first, second, (os.getpid(), id(db)), rows


def test_a_connection_is_made_again_in_each_attempt_and_closed_at_its_end(engine, tmp_path,
                                                                          marks):
    run = with_a_connection.trigger(str(tmp_path / "x.db"), str(marks))
    first, second, last, rows = run.result(timeout=60)
    assert rows == ["one", "two"], "each attempt's connection works"
    assert first[0] != second[0], "a new worker process after the SIGKILL"
    assert [a["outcome"] for a in run.attempts][:2] == ["CRASHED", "SUSPENDED"]
    attempts = len(run.attempts)
    assert count(marks, "made") == attempts, "made once per attempt"
    assert count(marks, "closed") == attempts - 1, "closed at each end but the SIGKILL"


def test_outside_a_run_a_resource_is_a_plain_call():
    made = [dn.resource("x", list), dn.resource("x", list)]
    assert made == [[], []] and made[0] is not made[1]
    with pytest.raises(TypeError, match="factory must be callable"):
        dn.resource("x", 42)
    with pytest.raises(ValueError, match="non-empty string"):
        dn.resource("", list)


CELL = """
db = dn.resource("db", lambda: sqlite3.connect(path))
db.execute("create table if not exists t (v)")
if bump(marks, "cell") == 1:
    os.kill(os.getpid(), signal.SIGKILL)
db.execute("insert into t values ('cell')")
db.commit()
n = db.execute("select count(*) from t").fetchone()[0]
"""


def test_a_cells_resource_is_not_checkpointed_and_is_bound_again_on_a_resume(engine,
                                                                           tmp_path, marks):
    ns = {"dn": dn, "sqlite3": sqlite3, "path": str(tmp_path / "c.db"), "bump": bump,
          "marks": str(marks), "os": os, "signal": signal}
    run = trigger_cell(CELL, ns, name="resource-cell")
    out = run.result(timeout=60)
    assert [a["outcome"] for a in run.attempts] == ["CRASHED", "COMPLETED"]
    assert "db" not in out["variables"] and "n" in out["variables"]
    values = fetch_variables(run)
    assert values["n"] == 1 and "db" not in values
    assert not any(k.startswith("__durable") for k in values)


def test_a_cells_resource_expression_is_evaluated_in_every_attempt(engine, tmp_path, marks):
    src = ("if bump(marks, 'expr') == 1:\n    os.kill(os.getpid(), signal.SIGKILL)\n"
           "rows = db.execute('select 41 + 1').fetchone()[0]\n")
    ns = {"sqlite3": sqlite3, "path": str(tmp_path / "e.db"), "bump": bump,
          "marks": str(marks), "os": os, "signal": signal, "db": object()}
    run = trigger_cell(src, ns, name="resource-expr",
                       resources={"db": "sqlite3.connect(path)"})
    variables = run.result(timeout=60)["variables"]
    assert "db" not in variables and {"rows", "path", "sqlite3"} <= set(variables)
    assert fetch_variables(run, ["rows"]) == {"rows": 42}
    with pytest.raises(ValueError, match="must be a Python name"):
        trigger_cell("x = 1", {}, resources={"not a name": "1"})
    with pytest.raises(SyntaxError):
        trigger_cell("x = 1", {}, resources={"db": "connect("})


def test_a_factory_that_cannot_be_pickled_is_named_at_the_checkpoint(engine):
    src = ("import threading\n"
           "db = (lambda lock: dn.resource('db', lambda: (lock, sqlite3.connect(':memory:'))[1]))"
           "(threading.Lock())\n")
    run = trigger_cell(src, {"dn": dn, "sqlite3": sqlite3}, name="resource-unpicklable")
    with pytest.raises(dn.RunFailed, match="variable 'db' holds resource 'db', whose factory "
                                           "cannot be pickled"):
        run.result(timeout=60)


WAITING = """
db = dn.resource("db", lambda: sqlite3.connect(path))
db.execute("create table if not exists t (v)")
approved = dn.approval("go").approved
db.execute("insert into t values (1)"); db.commit()
n = db.execute("select count(*) from t").fetchone()[0]
"""


def test_a_cells_resource_is_bound_again_after_a_killed_engine(engine, tmp_path):
    ns = {"dn": dn, "sqlite3": sqlite3, "path": str(tmp_path / "w.db")}
    run = trigger_cell(WAITING, ns, name="resource-engine-kill")
    wait_for(lambda: run.status == "WAITING", what="the cell to wait for its approval")
    engine.kill()
    engine.start()
    run = dn.get_run(run.id)
    run.approve()
    assert run.result(timeout=60)["statements"] == 6
    assert fetch_variables(run, ["n", "approved"]) == {"n": 1, "approved": True}
