"""The store under faults: a record DuckDB refuses is quarantined, damage in the journal
costs only the records it touched, a stop never deletes what was not ingested, and a full
disk refuses writes, keeps reads and recovers by itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _support import small_tmpfs, wait_for

import durable_nb as dn
from durable_nb.store import journal as _journal
from durable_nb.store.faults import DAMAGED, Quarantine
from durable_nb.store.store import Store


def _run_row(i: int) -> tuple:
    return ("ins", "runs", {"id": f"run_{i:04d}", "kind": "task", "task_id": "t",
                            "task_hash": "h", "status": "QUEUED", "created_at": float(i),
                            "attempts": 0, "tags": [], "payload": b"x" * 50})


def _journal_then_die(db: Path, records: list, batches: int = 1) -> None:
    """A real process journals ``records`` (in ``batches`` commits) and is SIGKILLed
    before DuckDB ingests any of them, as a crash would leave them."""
    script = textwrap.dedent(f"""
        import os, pickle, signal, threading
        from durable_nb.store.store import Store
        s = Store({str(db)!r}); s.open()
        s._apply = lambda batch: threading.Event().wait()   # ingestion never finishes
        records = pickle.loads({__import__("pickle").dumps(records)!r})
        n = len(records) // {batches}
        for i in range(0, len(records), n):
            s.write(records[i:i + n]); s.commit()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == -9


def _count_runs(store: Store) -> int:
    return store.query("select count(*) as n from runs")[0]["n"]


def test_a_record_duckdb_refuses_is_quarantined_and_the_others_go_on(tmp_path):
    db = tmp_path / "q.duckdb"
    s = Store(db)
    s.open()
    bad = ("upsert", "queues", {"name": "x", "concurrency_limit": 2**31, "updated_at": 0.0})
    s.write([_run_row(1), bad, _run_row(2)])
    s.commit()
    assert _count_runs(s) == 2, "the good records of the batch are ingested"
    assert s.query("select count(*) as n from queues")[0]["n"] == 0
    s.write([_run_row(3)])
    s.commit()
    assert _count_runs(s) == 3, "ingestion goes on after the bad record"
    health = s.health()
    assert health["quarantined"] == 1 and health["problem"] is None
    s.close()
    assert not _journal.segments(db.with_name(db.name + ".journal")), "all handled"

    s = Store(db)  # a restart neither replays nor trips over it
    s.open()
    assert _count_runs(s) == 3 and s.health()["quarantined"] == 1
    s.close()
    entries = Quarantine(db.with_name(db.name + ".journal")).entries()
    assert len(entries) == 1 and entries[0]["record"] == bad
    assert "2147483648" in entries[0]["error"] or "out of range" in entries[0]["error"].lower()


def test_a_refused_record_in_the_journal_does_not_stop_a_restart(tmp_path):
    """The record that bricked the engine (replayed at every start) is quarantined."""
    db = tmp_path / "r.duckdb"
    bad = ("upsert", "queues", {"name": "x", "concurrency_limit": 2**31, "updated_at": 0.0})
    _journal_then_die(db, [_run_row(1), bad, _run_row(2)])
    s = Store(db)
    s.open()
    assert _count_runs(s) == 2 and s.health()["quarantined"] == 1
    s.close()


@pytest.mark.parametrize("where", [0.2, 0.5, 0.8])
def test_a_flipped_byte_costs_only_the_record_it_hit(tmp_path, caplog, where):
    db = tmp_path / "f.duckdb"
    _journal_then_die(db, [_run_row(i) for i in range(120)], batches=12)
    jdir = db.with_name(db.name + ".journal")
    (seg,) = _journal.segments(jdir)
    data = bytearray(seg.read_bytes())
    pos = int(len(data) * where)
    data[pos] ^= 0x5A
    seg.write_bytes(bytes(data))
    s = Store(db)
    with caplog.at_level("ERROR", logger="durable_nb"):
        s.open()
    n = _count_runs(s)
    health = s.health()
    s.close()
    assert n == 119, f"only the record holding offset {pos} may be lost, kept {n} of 120"
    assert health["damaged_segments"] == 1 and health["lost_records"] == 1
    assert seg.name in caplog.text and "offset" in caplog.text
    report = json.loads((jdir / DAMAGED / f"{seg.name}.report.json").read_text())
    (damage,) = report["damage"]
    assert damage["offset"] <= pos < damage["offset"] + damage["length"]
    assert (jdir / DAMAGED / seg.name).exists(), "the damaged segment is kept aside"


def test_a_torn_or_truncated_tail_keeps_every_complete_record(tmp_path):
    db = tmp_path / "t.duckdb"
    _journal_then_die(db, [_run_row(i) for i in range(40)], batches=4)
    (seg,) = _journal.segments(db.with_name(db.name + ".journal"))
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.truncate(size - 30)  # the last record loses its end, as in a crash mid-write
    s = Store(db)
    s.open()
    n, health = _count_runs(s), s.health()
    s.close()
    assert n == 39 and health["damaged_segments"] == 0


def test_a_stop_keeps_segments_whose_records_are_not_ingested(tmp_path):
    """Old behaviour: after an ingest error a clean stop deleted un-ingested segments."""
    db = tmp_path / "s.duckdb"
    script = textwrap.dedent(f"""
        from durable_nb.store.store import Store
        import durable_nb.store.store as st
        s = Store({str(db)!r}); s.open()
        def fail(batch):
            raise OSError(28, "No space left on device")
        s._apply = fail
        st.INGEST_RETRY = 0.05
        s.write([("ins", "logs", {{"run_id": "r", "seq": i, "created_at": 0.0,
                                    "stream": "stdout", "line": "x"}}) for i in range(10)])
        s.commit()
        s.sync(timeout=5)
        assert s.health()["problem"], s.health()
        s.close()
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert _journal.segments(db.with_name(db.name + ".journal")), "the journal is kept"
    s = Store(db)
    s.open()
    n = s.query("select count(*) as n from logs")[0]["n"]
    s.close()
    assert n == 10


# ---------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs mounted for the test (root only)."""
    with small_tmpfs(tmp_path, "24m") as mnt:
        yield mnt


def _fill(folder: Path) -> Path:
    """Fill the disk holding ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@dn.task(id="disk-task")
def disk_task(i: int) -> int:
    return i * 2


@pytest.mark.slow
def test_a_full_disk_refuses_writes_keeps_reads_and_recovers(small_disk, tmp_path):
    from _support import EngineProcess

    engine = EngineProcess(small_disk / "full.duckdb", ["--wait-grace", "0.3"])
    client = engine.start()
    try:
        before = [disk_task.trigger(i) for i in range(5)]
        assert [r.result(timeout=30) for r in before] == [0, 2, 4, 6, 8]
        filler = _fill(small_disk)
        # Triggers go on until a write meets the full disk: that one still completes in the
        # space of the engine's reserve, and from then on every write is refused at once.
        acked = []
        for i in range(2000):
            try:
                acked.append((i, disk_task.trigger(100 + i)))
            except dn.DurableError as exc:
                assert "refuses writes" in str(exc) and "No space left" in str(exc), exc
                break
        else:
            pytest.fail("2,000 triggers on a full disk were all acknowledged")
        with pytest.raises(dn.DurableError, match="refuses writes.*No space left"):
            disk_task.trigger(5000)
        health = client.request("GET", "/health")
        assert health["ok"] is False and health["store"]["writable"] is False
        assert "No space left" in health["problem"]
        # reads go on: earlier runs, their steps and the run list
        assert before[0].status == "COMPLETED"
        wait_for(lambda: len(client.request("GET", "/runs", query={"task": "disk-task"})["runs"])
                 >= 5 + len(acked), 10, "the run list to show every acknowledged run")
        filler.unlink()
        wait_for(lambda: client.request("GET", "/health")["ok"], 20, "writes to resume")
        after = disk_task.trigger(7)
        assert after.result(timeout=30) == 14
        assert [r.result(timeout=30) for _, r in acked] == [2 * (100 + i) for i, _ in acked]
        assert [r.result(timeout=30) for r in before] == [0, 2, 4, 6, 8]
        # a stop and a start on a nearly full disk
        engine.stop()
        filler = _fill(small_disk)
        try:
            engine.start()
            started = True
        except RuntimeError as exc:
            started = False
            assert "No space left" in str(exc) or "disk" in str(exc).lower(), exc
        filler.unlink()
        if not started:
            engine.start()
        assert after.result(timeout=30) == 14
        assert [r.result(timeout=30) for r in before] == [0, 2, 4, 6, 8]
        assert "Traceback" not in engine.log.read_text()
    finally:
        engine.stop()
        time.sleep(0.1)
