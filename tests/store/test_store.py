"""The store: journal replay after a crash, file modes, migrations, read-only SQL."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import duckdb
import pytest

from durable_nb.store import journal as _journal
from durable_nb.store.schema import SCHEMA_VERSION
from durable_nb.store.store import Store


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
        from durable_nb.store.store import Store
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


def test_version_1_database_keeps_its_spans_after_migrating(tmp_path):
    """Step spans written by schema 1 come back through the spans view, attributes and all."""
    from durable_nb.store.migrations import MIGRATIONS

    db = tmp_path / "v1.duckdb"
    conn = duckdb.connect(str(db))
    conn.execute("CREATE TABLE schema_version (version INTEGER, applied_at DOUBLE)")
    conn.execute(MIGRATIONS[0])
    conn.execute("INSERT INTO schema_version VALUES (1, 0)")
    conn.execute("INSERT INTO runs (id, task_id, status, created_at, finished_at, attempts, queue) "
                 "VALUES ('run_a', 't', 'COMPLETED', 1, 5, 2, 'q')")
    conn.execute("INSERT INTO attempts VALUES ('run_a', 2, 42, 2, 4, 'COMPLETED', NULL, NULL, NULL)")
    conn.execute("INSERT INTO steps (run_id, step_key, name, attempt, generation, status, "
                 "started_at, ended_at, error_type) VALUES ('run_a', 'f#1', 'f', 1, 0, 'FAILED', 2, 3, 'KeyError')")
    for span in [("run_a/s/f#1/1", "run_a/a2", "step", '{"key": "f#1", "attempt": 1, "error": "KeyError", "retry_delay": 0.5}'),
                 ("run_a/a2", "run_a", "attempt", '{"worker_pid": 42}'),
                 ("run_a/w/approval#1", "run_a", "wait", '{"key": "approval#1"}')]:
        conn.execute("INSERT INTO spans VALUES (?, 'run_a', ?, ?, 'x', 2, 3, 'S', ?)", [span[0], span[1], span[2], span[3]])
    conn.close()

    s = Store(db)
    s.open()
    try:
        rows = {r["kind"]: r for r in s.query("SELECT * FROM spans WHERE run_id = 'run_a'")}
    finally:
        s.close()
    assert set(rows) == {"run", "attempt", "step", "wait"}
    step = rows["step"]
    assert step["parent_id"] == "run_a/a2" and step["status"] == "FAILED"
    assert json.loads(step["attributes"]) == {"key": "f#1", "attempt": 1, "error": "KeyError", "retry_delay": 0.5}
    assert json.loads(rows["attempt"]["attributes"]) == {"worker_pid": 42, "worker": None}
    assert json.loads(rows["run"]["attributes"]) == {"attempts": 2, "queue": "q"}
    assert rows["run"]["end_at"] == 5
