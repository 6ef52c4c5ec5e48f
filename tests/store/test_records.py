"""Journal records: the typed constructors keep today's tuples, on disk and in replay."""

from __future__ import annotations

import copy
import pickle
import struct
import zlib

import pytest

from durable_nb.store import journal as _journal
from durable_nb.store.records import Insert, InsertIgnore, Update, Upsert, group, typed
from durable_nb.store.store import Store

TYPED = [
    Insert("logs", {"run_id": "r", "seq": 1, "created_at": 0.0, "stream": "stdout",
                    "line": "hello"}),
    InsertIgnore("events", {"key": "k", "data": b"\x80\x05", "sent_at": 1.5}),
    Upsert("queues", {"name": "q", "concurrency_limit": 2, "updated_at": 2.0}),
    Update("queues", {"name": "q"}, {"concurrency_limit": 3}),
]
PLAIN = [
    ("ins", "logs", {"run_id": "r", "seq": 1, "created_at": 0.0, "stream": "stdout",
                     "line": "hello"}),
    ("ins_ignore", "events", {"key": "k", "data": b"\x80\x05", "sent_at": 1.5}),
    ("upsert", "queues", {"name": "q", "concurrency_limit": 2, "updated_at": 2.0}),
    ("upd", "queues", {"name": "q"}, {"concurrency_limit": 3}),
]


def test_layout_is_the_plain_tuple():
    for rec, plain in zip(TYPED, PLAIN, strict=True):
        assert rec == plain and tuple(rec) == plain and rec[0] == plain[0]
        assert typed(plain) == rec and type(typed(plain)) is type(rec)
        assert pickle.loads(pickle.dumps(rec)) == rec and copy.deepcopy(rec) == rec
    assert TYPED[3].key == {"name": "q"} and TYPED[3].changes == {"concurrency_limit": 3}
    assert TYPED[0].op == "ins" and TYPED[0].table == "logs"
    for bad in [("nope", "t", {}), ("upd", "t", {}), ("ins", "t", {}, {}), ()]:
        with pytest.raises(ValueError):
            typed(bad)


def test_group_folds_updates_and_keeps_one_row_per_key():
    inserts, updates = group([
        Insert("runs", {"id": "a", "status": "QUEUED"}),
        ("upd", "runs", {"id": "a"}, {"status": "EXECUTING"}),  # folded into the insert
        Update("runs", {"id": "b"}, {"status": "COMPLETED"}),
        Update("runs", {"id": "b"}, {"attempts": 2}),  # merged with the one before
        InsertIgnore("tasks", {"hash": "h", "task_id": "first"}),
        InsertIgnore("tasks", {"hash": "h", "task_id": "second"}),
        Upsert("queues", {"name": "q", "concurrency_limit": 1}),
        Upsert("queues", {"name": "q", "concurrency_limit": 2}),
    ])
    assert inserts == {
        ("ins", "runs", ("id", "status")): [("a", "EXECUTING")],
        ("ins_ignore", "tasks", ("hash", "task_id")): [("h", "first")],
        ("upsert", "queues", ("name", "concurrency_limit")): [("q", 2)],
    }
    assert updates == {("runs", ("id",), ("status", "attempts")): [("b", "COMPLETED", 2)]}


def test_bytes_are_those_of_plain_tuples(tmp_path):
    a = _journal.Journal(tmp_path / "a", 0)
    b = _journal.Journal(tmp_path / "b", 0)
    a.append(TYPED)
    b.append(PLAIN)
    ta, tb = a.take(), b.take()
    assert all(type(rec) is tuple for _, rec in ta)
    salt = 12345
    data = _journal.encode(ta, salt)
    assert data == _journal.encode(tb, salt)
    assert b"records" not in data and b"Insert" not in data  # no class is named
    a.close()
    b.close()


def test_round_trip_through_a_segment(tmp_path):
    j = _journal.Journal(tmp_path / "j", 0)
    j.append(TYPED)
    j.commit()
    j.close()
    (seg,) = _journal.segments(tmp_path / "j")
    got = list(_journal.read_segment(seg))
    assert got == list(enumerate(PLAIN, start=1))
    assert all(type(rec) is tuple for _, rec in got)
    assert [typed(rec) for _, rec in got] == TYPED


def _store_rows(s: Store) -> tuple[list, list, list]:
    return (s.query("select line from logs where run_id = 'r'"),
            s.query("select key, data from events"),
            s.query("select name, concurrency_limit from queues where name = 'q'"))


@pytest.mark.parametrize("records", [TYPED, PLAIN, TYPED[:2] + PLAIN[2:]],
                         ids=["typed", "plain", "mixed"])
def test_store_takes_either_form(tmp_path, records):
    s = Store(tmp_path / "s.duckdb")
    s.open()
    try:
        s.write(records)
        s.commit()
        logs, events, queues = _store_rows(s)
    finally:
        s.close()
    assert logs == [{"line": "hello"}]
    assert events == [{"key": "k", "data": b"\x80\x05"}]
    assert queues == [{"name": "q", "concurrency_limit": 3}]


def test_plain_tuples_of_a_format_1_segment_replay(tmp_path):
    """Records an earlier release journaled (plain tuples, segment format 1) and did not
    ingest are replayed into DuckDB."""
    db = tmp_path / "old.duckdb"
    s = Store(db)
    s.open()
    s.close()
    frame = struct.Struct("<II")  # format 1: length, crc32 of the body
    chunks = []
    for seq, rec in enumerate(PLAIN, start=1):
        body = pickle.dumps((seq, rec), protocol=pickle.HIGHEST_PROTOCOL)
        chunks += [frame.pack(len(body), zlib.crc32(body)), body]
    folder = db.with_name(db.name + ".journal")
    (folder / "seg-000000001.jnl").write_bytes(b"".join(chunks))
    assert _journal.scan_segment(folder / "seg-000000001.jnl").version == 1
    s = Store(db)
    s.open()
    try:
        logs, events, queues = _store_rows(s)
        s.write([Insert("logs", {"run_id": "r", "seq": 2, "created_at": 0.0,
                                 "stream": "stdout", "line": "again"})])
        s.commit()
        again = s.query("select count(*) as n from logs where run_id = 'r'")
    finally:
        s.close()
    assert logs == [{"line": "hello"}]
    assert events == [{"key": "k", "data": b"\x80\x05"}]
    assert queues == [{"name": "q", "concurrency_limit": 3}]
    assert again == [{"n": 2}]
