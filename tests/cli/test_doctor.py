"""`durable-nb doctor` on real stores: healthy, with a running engine, with files open to
others, with a damaged journal segment (live, then set aside), with quarantined records,
and on a nearly full disk."""

from __future__ import annotations

import os
import re
import subprocess

import duckdb
import pytest

from durable_nb.cli import commands as cli
from durable_nb.cli import doctor as _doctor
from durable_nb.core import paths as _paths
from durable_nb.store import journal as _journal
from durable_nb.store.schema import SCHEMA_VERSION


def doctor(db, capsys) -> tuple[int, str]:
    """`durable-nb doctor --db DB`: its exit status and what it printed."""
    rc = cli.main(["doctor", "--db", str(db)])
    return rc, capsys.readouterr().out


def problems(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("PROBLEM")]


def fill(engine, n: int = 20) -> None:
    """Acknowledged writes: each is a journal record, then a DuckDB row."""
    for i in range(n):
        engine.client.request("PUT", f"/queues/doctor-{i}", {"concurrency_limit": 1 + i % 3})


def journal_of(db):
    return db.with_name(db.name + ".journal")


def test_running_engine_is_asked_and_its_database_left_alone(engine, capsys):
    fill(engine)
    rc, out = doctor(engine.db, capsys)
    assert rc == 0, out
    assert f"engine: pid {engine.pid} (durable-nb serve) answers at" in out
    assert "records waiting for DuckDB" in out and "quarantined records" in out
    assert "database: opens" not in out  # DuckDB allows one process: the engine
    assert out.rstrip().endswith("No problem found.")
    engine.client.request("PUT", "/queues/after-doctor", {"concurrency_limit": 1})
    queues = {q["name"] for q in engine.client.request("GET", "/queues")["queues"]}
    assert {"doctor-0", "doctor-19", "after-doctor"} <= queues


def test_healthy_store_after_a_clean_stop(engine, capsys):
    fill(engine)
    engine.stop()
    rc, out = doctor(engine.db, capsys)
    assert rc == 0, out
    assert "engine: none runs for this database" in out
    assert f"schema version {SCHEMA_VERSION} (current)" in out
    assert "journal: no live segment (everything is in DuckDB)" in out
    assert "quarantine: no record was refused" in out
    assert "are private (0600 files, 0700 folders)" in out
    assert problems(out) == []

    full = _doctor.diagnose(engine.db, min_free_bytes=1 << 62)
    assert [f.what.split(":")[0] for f in full.problems] == ["disk"]
    assert "on a full disk the engine refuses writes" in full.problems[0].todo

    engine.start()  # doctor's read-only look left no lock behind
    assert "doctor-3" in {q["name"] for q in engine.client.request("GET", "/queues")["queues"]}


def test_files_open_to_others_are_named_with_the_command_that_fixes_them(engine, capsys):
    fill(engine)
    engine.stop()
    journal = journal_of(engine.db)
    log = _paths.engine_log_file(engine.db)  # a detached engine's log, written by an old release
    log.write_text("")
    os.chmod(log, 0o644)
    os.chmod(engine.db, 0o644)
    os.chmod(journal, 0o755)

    rc, out = doctor(engine.db, capsys)
    assert rc == 1, out
    assert len(problems(out)) == 3, out
    assert f"files: {engine.db} is 0644, open to other users (should be 0600)" in out
    assert f"`chmod 600 {engine.db}`" in out
    assert f"`chmod 700 {journal}`" in out and f"`chmod 600 {log}`" in out

    for cmd in re.findall(r"`(chmod [^`]+)`", out):  # what doctor says to do fixes it
        subprocess.run(cmd, shell=True, check=True)
    rc, out = doctor(engine.db, capsys)
    assert rc == 0, out


def flip_middle_byte(seg) -> None:
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))


@pytest.mark.slow
def test_damaged_segment_is_reported_live_then_once_set_aside(engine, capsys):
    fill(engine, 30)
    stored = engine.client.request("POST", "/sql", {"query": "SELECT count(*) FROM queues"})
    assert stored["rows"] == [[30]]  # a read waits until the records are in DuckDB
    engine.kill()  # a crash leaves the live segment behind
    segs = _journal.segments(journal_of(engine.db))
    assert segs, "the killed engine left no journal segment"
    seg = segs[-1]
    flip_middle_byte(seg)

    rc, out = doctor(engine.db, capsys)
    assert rc == 1, out
    assert "the runtime file of engine pid" in out  # the kill left it: a note, no problem
    assert len(problems(out)) == 1, out
    [line] = problems(out)
    assert re.search(rf"journal: segment {re.escape(str(seg))} is damaged: \d+ bytes at "
                     r"offset \d+: .*; its 29 intact records are kept", line), line
    assert "start the engine: it replays the intact records" in line
    assert "journal: 1 live segment, 29 records, all in DuckDB" in out

    engine.start()  # replays what it can and sets the segment aside
    engine.stop()
    rc, out = doctor(engine.db, capsys)
    assert rc == 1, out
    assert len(problems(out)) == 1, out
    [line] = problems(out)
    assert f"damaged segments: journal segment {seg.name} was found damaged" in line
    damaged = journal_of(engine.db) / "damaged"
    report = damaged / f"{seg.name}.report.json"
    assert f"delete {damaged / seg.name} and {report} to clear this" in line

    (damaged / seg.name).unlink()
    report.unlink()
    rc, out = doctor(engine.db, capsys)
    assert rc == 0, out


@pytest.mark.slow
def test_records_lost_to_damage_before_ingestion_are_counted(engine, capsys):
    fill(engine, 1)
    engine.stop()
    with duckdb.connect(str(engine.db), read_only=True) as conn:
        seq = int(conn.execute("SELECT value FROM meta WHERE key = 'journal_seq'").fetchone()[0])
    # what a crash leaves when the engine journaled 20 writes and stored none of them
    journal = _journal.Journal(journal_of(engine.db), seq)
    journal.append([("upsert", "queues", {"name": f"lost-{i}", "concurrency_limit": 1,
                                          "updated_at": 0.0}) for i in range(20)])
    journal.commit()
    journal.close()
    flip_middle_byte(_journal.segments(journal_of(engine.db))[-1])

    rc, out = doctor(engine.db, capsys)
    assert rc == 1, out
    assert f"19 of them are beyond meta.journal_seq ({seq}): the next start replays them" in out
    assert len(problems(out)) == 2, out
    lost = problems(out)[1]
    found = re.search(r"journal: 1 record not in DuckDB is lost to that damage \(sequence "
                      r"number (\d+)\)", lost)
    assert found and seq < int(found.group(1)) <= seq + 20, lost

    engine.start()
    queues = {q["name"] for q in engine.client.request("GET", "/queues")["queues"]}
    assert len({q for q in queues if q.startswith("lost-")}) == 19
    rc, out = doctor(engine.db, capsys)
    assert rc == 1, out
    assert "1 journal record was lost to damaged journal segments at the engine's start" in out
    assert "damaged segments: journal segment" in out


def test_quarantined_records_are_listed(engine, capsys):
    from durable_nb.store.faults import Quarantine

    fill(engine, 3)
    engine.stop()
    journal = journal_of(engine.db)
    q = Quarantine(journal)
    q.add(7, ("upsert", "queues", {"name": "big", "concurrency_limit": 2**31}),
          "ConversionException: Type INT64 with value 2147483648 can't be cast to INT32")
    q.close()
    # the single-file form of the quarantine is read as well
    salt = 1234
    entry = {"seq": 9, "record": ("ins", "logs", {"line": "x"}), "error": "Boom: refused",
             "at": 0.0}
    fd = os.open(journal / "quarantine.jnl", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_journal.file_header(salt) + _journal.encode([(9, ("quarantined", entry))], salt))

    rc, out = doctor(engine.db, capsys)
    assert rc == 1, out
    assert len(problems(out)) == 1, out
    [line] = problems(out)
    assert "quarantine: 2 journal records could not be stored in DuckDB and are kept in" in line
    assert "they block nothing" in line
    assert re.search(r"seq 7 \(upsert queues\) at [\d-]+ [\d:]+: ConversionException", out)
    assert "seq 9 (ins logs) at" in out and "Boom: refused" in out
    assert "big" not in out.replace("upsert queues", "")  # values are not shown


def test_a_database_not_created_yet_is_no_problem(tmp_path, capsys):
    rc, out = doctor(tmp_path / "nowhere" / "x.duckdb", capsys)
    assert rc == 0, out
    assert "no database at" in out and "an engine creates it at its first start" in out


def test_a_malformed_runtime_file_is_a_note_not_an_engine(tmp_path, capsys):
    db = tmp_path / "y.duckdb"
    duckdb.connect(str(db)).close()
    rt = _paths.runtime_file(db)
    rt.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(rt, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write('{"url": "http://127.0.0.1:1/", "pid": "not a pid"}')
    try:
        rc, out = doctor(db, capsys)
    finally:
        rt.unlink()
    assert f"engine: none runs; its runtime file {rt} is unreadable or malformed" in out
