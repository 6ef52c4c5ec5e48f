"""Resources of %%durable cells in a real kernel: `--resource db="sqlite3.connect(path)"`
and `db = dn.resource(...)` inside the cell survive a worker SIGKILLed in statement 3 with
a fresh connection, are left out of the variables brought back, and bad options are
refused in the kernel with a clear message."""

from __future__ import annotations

from _support import count

BUMP = """
import os, signal, sqlite3
def bump(marks, name):
    path = os.path.join(marks, name)
    with open(path, "a") as f:
        f.write("x")
    return os.path.getsize(path)
"""


def test_a_resource_option_is_made_again_after_the_worker_is_killed(kernel, scratch):
    kernel.ok(BUMP + f"path = {str(scratch / 'option.db')!r}\n"
              f"\nmarks = {str(scratch)!r}")
    out = kernel.ok(
        "%%durable --wait --resource db=\"sqlite3.connect(path)\"\n"
        "db.execute('create table t (pid)')\n"
        "db.execute('insert into t values (?)', (os.getpid(),)); db.commit()\n"
        "if bump(marks, 'option') == 1:\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "db.execute('insert into t values (?)', (os.getpid(),)); db.commit()\n"
        "pids = [r[0] for r in db.execute('select pid from t')]\n", timeout=90)
    assert "COMPLETED" in out.stdout, out.text
    assert "not brought back (resources): db" in out.stdout
    assert count(scratch, "option") == 2
    pids = kernel.value("pids")
    assert len(pids) == 2 and pids[0] != pids[1], "the second attempt had a new connection"
    assert kernel.value("'db' in dir()") is False


def test_a_resource_made_in_the_cell_is_bound_again_on_the_resume(kernel, scratch):
    kernel.ok(BUMP + f"p = {str(scratch / 'inline.db')!r}\n"
              f"\nmarks = {str(scratch)!r}")
    out = kernel.ok(
        "%%durable --wait\n"
        "db = dn.resource('db', lambda: sqlite3.connect(p))\n"
        "db.execute('create table t (v)')\n"
        "if bump(marks, 'inline') == 1:\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "db.execute(\"insert into t values ('after')\"); db.commit()\n"
        "rows = db.execute('select v from t').fetchall()\n", timeout=90)
    assert "COMPLETED" in out.stdout, out.text
    assert kernel.value("rows") == [("after",)]
    assert kernel.value("'db' in dir()") is False
    assert count(scratch, "inline") == 2


def test_a_malformed_resource_option_is_refused_in_the_kernel(kernel):
    out = kernel.run("%%durable --resource db\nx = 1\n")
    assert out.status == "error" and "is not NAME=EXPR" in out.evalue
    out = kernel.run("%%durable --resource 'db=sqlite3.connect('\nx = 1\n")
    assert out.status == "error" and "is not valid Python" in out.evalue
    out = kernel.run("%%durable --resource a=1 --resource a=2\nx = 1\n")
    assert out.status == "error" and "names a variable twice" in out.evalue
