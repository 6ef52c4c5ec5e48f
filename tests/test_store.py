"""The store: journal replay after a crash, file modes, migrations, read-only SQL."""

import os
import stat
import subprocess
import sys
import textwrap

import duckdb
import pytest

from durable_nb import _journal
from durable_nb._schema import SCHEMA_VERSION
from durable_nb._store import Store


def test_new_store_is_private_and_migrated(tmp_path):
    s = Store(tmp_path / "a.duckdb")
    s.open()
    s.close()
    assert stat.S_IMODE(os.stat(tmp_path / "a.duckdb").st_mode) == 0o600
    conn = duckdb.connect(str(tmp_path / "a.duckdb"), read_only=True)
    assert conn.execute("select max(version) from schema_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("select table_name from information_schema.tables").fetchall()}
    assert {"runs", "steps", "attempts", "waits", "spans", "logs", "transitions",
            "checkpoints", "blobs", "tasks", "queues", "events"} <= tables


def test_records_written_before_a_kill_are_replayed(tmp_path):
    """A process that journals records and is SIGKILLed before ingesting them loses none."""
    db = tmp_path / "b.duckdb"
    script = textwrap.dedent(f"""
        import os, signal, threading
        from durable_nb._store import Store
        s = Store({str(db)!r}); s.open()
        s._apply = lambda batch: threading.Event().wait()   # ingestion never finishes
        s.write([("ins", "logs", {{"run_id": "r", "seq": i, "created_at": 0.0,
                                    "stream": "stdout", "line": f"line {{i}}"}})
                 for i in range(500)])
        s.commit()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == -9
    assert _journal.segments(db.with_name(db.name + ".journal"))
    s = Store(db)
    s.open()
    rows = s.query("select count(*) as n, max(line) as m from logs where run_id = 'r'")
    s.close()
    assert rows[0]["n"] == 500


def test_torn_journal_tail_is_ignored(tmp_path):
    j = _journal.Journal(tmp_path / "j", 0)
    j.append([("ins", "x", {"a": 1}), ("ins", "x", {"a": 2})])
    assert [seq for seq, _ in j.commit()] == [1, 2]
    j.close()
    seg = _journal.segments(tmp_path / "j")[0]
    with open(seg, "ab") as f:
        f.write(b"\x10\x00\x00\x00garbage")
    assert [seq for seq, _ in _journal.read_segment(seg)] == [1, 2]


def test_read_only_sql(tmp_path):
    s = Store(tmp_path / "c.duckdb")
    s.open()
    try:
        cols, rows = s.read_only("select count(*) as n from runs")
        assert cols == ["n"] and rows == [(0,)]
        for bad in ("insert into runs (id) values ('x')", "drop table runs",
                    "copy runs to 'x.csv'", "select 1; select 2"):
            with pytest.raises(ValueError):
                s.read_only(bad)
        with pytest.raises(ValueError):
            s.read_only("select * from read_csv('/etc/passwd')")
    finally:
        s.close()
