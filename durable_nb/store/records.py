"""The records the store journals: every state change is one of four shapes.

Each record is a tuple whose first item names its operation. The classes here build them
with names and types (``Insert("runs", row)``) and keep exactly the tuple layout the
journal has always held, so records written by earlier releases, which are plain tuples,
replay unchanged, and the store takes either form. The journal pickles every record as a
plain tuple (see ``journal.Journal.append``), so its bytes never name these classes.

=============  ====================================  =============================================
op             tuple                                 tables
=============  ====================================  =============================================
``ins``        ``("ins", table, row)``               runs, transitions, attempts, steps, waits,
                                                     events, logs, checkpoints, span_records
``ins_ignore`` ``("ins_ignore", table, row)``        tasks, blobs (content-addressed, written
                                                     once)
``upsert``     ``("upsert", table, row)``            queues (a limit set again replaces it)
``upd``        ``("upd", table, key, changes)``      runs, attempts, waits
=============  ====================================  =============================================

- ``Insert``: insert ``row`` (column -> value). A later update of the same row in the
  same ingested batch is folded into the insert.
- ``InsertIgnore``: insert unless a row with the same primary key exists. The row's first
  column must be its primary key (duplicates in one batch keep the first).
- ``Upsert``: insert, or replace the row with the same primary key. The row's first
  column must be its primary key (duplicates in one batch keep the last).
- ``Update``: set ``changes`` on the rows whose columns equal ``key`` (a primary key);
  the row was inserted by an earlier record.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

Row = dict[str, Any]


class _Insert(NamedTuple):
    op: Literal["ins"]
    table: str
    row: Row


class Insert(_Insert):
    """``("ins", table, row)``: insert ``row`` into ``table``."""

    __slots__ = ()

    def __new__(cls, table: str, row: Row) -> Insert:
        return super().__new__(cls, "ins", table, row)

    def __getnewargs__(self) -> tuple[str, Row]:  # pickle and copy call __new__ with these
        return self.table, self.row


class _InsertIgnore(NamedTuple):
    op: Literal["ins_ignore"]
    table: str
    row: Row


class InsertIgnore(_InsertIgnore):
    """``("ins_ignore", table, row)``: insert unless the primary key (first column) exists."""

    __slots__ = ()

    def __new__(cls, table: str, row: Row) -> InsertIgnore:
        return super().__new__(cls, "ins_ignore", table, row)

    def __getnewargs__(self) -> tuple[str, Row]:
        return self.table, self.row


class _Upsert(NamedTuple):
    op: Literal["upsert"]
    table: str
    row: Row


class Upsert(_Upsert):
    """``("upsert", table, row)``: insert or replace by primary key (first column)."""

    __slots__ = ()

    def __new__(cls, table: str, row: Row) -> Upsert:
        return super().__new__(cls, "upsert", table, row)

    def __getnewargs__(self) -> tuple[str, Row]:
        return self.table, self.row


class _Update(NamedTuple):
    op: Literal["upd"]
    table: str
    key: Row
    changes: Row


class Update(_Update):
    """``("upd", table, key, changes)``: set ``changes`` on the rows matching ``key``."""

    __slots__ = ()

    def __new__(cls, table: str, key: Row, changes: Row) -> Update:
        return super().__new__(cls, "upd", table, key, changes)

    def __getnewargs__(self) -> tuple[str, Row, Row]:
        return self.table, self.key, self.changes


TypedRecord = Insert | InsertIgnore | Upsert | Update
"""A record built by one of the classes above."""

PlainRecord = tuple[str, str, Row] | tuple[str, str, Row, Row]
"""A record as a plain tuple: how the journal stores it and how older code wrote it."""

Record = TypedRecord | PlainRecord
"""What the store takes and replays: either form of any of the four records."""

_CLASSES: dict[str, type[TypedRecord]] = {
    "ins": Insert, "ins_ignore": InsertIgnore, "upsert": Upsert, "upd": Update}


def typed(rec: Record) -> TypedRecord:
    """The record as its class (``Insert`` ...), e.g. for a journal's plain tuple; raises
    ValueError for a tuple that is no record."""
    cls = _CLASSES.get(rec[0]) if rec else None
    if cls is None or len(rec) != len(cls._fields):
        raise ValueError(f"not a journal record: {rec!r:.200}")
    return cls._make(rec)



InsertGroups = dict[tuple[str, str, tuple[str, ...]], list[tuple[Any, ...]]]
"""(op, table, columns) -> the rows' values, in column order."""

UpdateGroups = dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[tuple[Any, ...]]]
"""(table, key columns, columns set) -> each row's key values, then the values set."""


def group(records: Iterable[Record]) -> tuple[InsertGroups, UpdateGroups]:
    """A batch of records as the rows of as few statements as possible, inserts first.

    Inserts are grouped by op, table and columns (``ins_ignore`` keeps the first row of a
    key, ``upsert`` the last); updates are merged per row and grouped by the columns they
    set. An update of a row inserted in the same batch is folded into the insert, so a
    short run costs no UPDATE at all. Every update refers to a row inserted before it, so
    inserts, then updates, is the journal's order.
    """
    added: list[tuple[str, str, Row]] = []
    updates: dict[tuple[str, tuple[str, ...], tuple[Any, ...]], Row] = {}
    for rec in records:
        if rec[0] == "upd" and len(rec) == 4:  # the only record of four items
            _, table, key, changes = rec
            updates.setdefault((table, tuple(key), tuple(key.values())), {}).update(changes)
        else:
            added.append((rec[0], rec[1], dict(rec[2])))
    if updates:  # a row inserted in this batch takes its updates before it is inserted
        keys = {(t, kcols) for t, kcols, _ in updates}
        for op, table, row in added:
            for t, kcols in keys:
                if op == "ins" and t == table:
                    folded = updates.pop((t, kcols, tuple(row.get(c) for c in kcols)), None)
                    if folded:
                        row.update(folded)
    inserts: InsertGroups = {}
    for op, table, row in added:
        inserts.setdefault((op, table, tuple(row)), []).append(tuple(row.values()))
    for (op, table, cols), rows in inserts.items():
        if op != "ins":  # keyed by the first column: keep one row per key
            kept = {r[0]: r for r in (rows if op == "upsert" else rows[::-1])}
            inserts[(op, table, cols)] = list(kept.values())
    grouped: UpdateGroups = {}
    for (table, kcols, kvals), changes in updates.items():
        grouped.setdefault((table, kcols, tuple(changes)), []).append(
            (*kvals, *changes.values()))
    return inserts, grouped
