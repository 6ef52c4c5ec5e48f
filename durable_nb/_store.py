"""The store of record: one DuckDB file, written through the journal.

Writes are records (see ``Store.write``) made durable by ``Store.commit`` (the journal's
group commit), then ingested into DuckDB in batches by one thread. Reads wait until
everything written before them is ingested, so a reader never sees less than was
acknowledged. ``write`` and ``commit`` are called from one thread (the engine's loop).

Record shapes, the storage interface in one place:

- ``("ins", table, row)``: insert a row (dict of column -> value)
- ``("ins_ignore", table, row)``: insert unless the primary key exists (blobs, tasks)
- ``("upsert", table, row)``: insert or replace by primary key (queues)
- ``("upd", table, where, changes)``: update the rows matching ``where`` (dict equality)
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from . import _journal, _readonly_sql
from ._errors import DurableError, EngineLocked
from ._schema import migrate

_INSERT_VERB = {"ins": "INSERT INTO", "ins_ignore": "INSERT OR IGNORE INTO", "upsert": "INSERT OR REPLACE INTO"}
# Checkpoint values at least this large are files in ``<db>.blobs/`` (see schema 3).
EXTERNAL_BLOB_BYTES = 1 << 20
_HASH = re.compile(r"[0-9a-f]{64}")
# How long ingestion gathers records into one DuckDB transaction. Durability comes from
# the journal, so this only trades read freshness (a waiting reader cuts it short) for
# fewer DuckDB commits competing with the journal's fdatasync for the disk.
INGEST_INTERVAL = 0.05


def _chmod_private(path: Path) -> None:
    try:
        if path.exists() and (path.stat().st_mode & 0o077):
            os.chmod(path, 0o600)
    except OSError:
        pass


class Store:
    """DuckDB file + journal. Only the engine process creates one."""

    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)
        self.journal_dir = self.db_path.with_name(self.db_path.name + ".journal")
        self.blob_dir = self.db_path.with_name(self.db_path.name + ".blobs")
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._journal: _journal.Journal | None = None
        self._ingest_cond = threading.Condition()
        self._to_ingest: list = []
        self._ingested_seq = 0
        self._closing = False
        self._readers = 0
        self._ingest_error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    def open(self) -> None:
        """Open (or create) the database, migrate it, replay the journal, start writing."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._conn = duckdb.connect(
                str(self.db_path), config={"enable_external_access": False}
            )
        except duckdb.IOException as exc:
            m = re.search(r"PID (\d+)", str(exc))
            if "lock" in str(exc).lower():
                owner = f"process {m.group(1)}" if m else "another process"
                raise EngineLocked(
                    f"the database {self.db_path} is already owned by {owner} (DuckDB allows one "
                    "writing process). Use that engine: clients find it through its runtime file, "
                    "or stop it first (`durable-nb stop`)."
                ) from None
            raise
        _chmod_private(self.db_path)
        migrate(self._conn)
        self._types = {
            (t, c): d for t, c, d in self._conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'main'").fetchall()
        }
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'journal_seq'").fetchone()
        self._ingested_seq = int(row[0]) if row else 0
        replayed = self._replay()
        self._journal = _journal.Journal(self.journal_dir, self._ingested_seq)
        self._done: list[Callable[[], None]] = []
        self._prune: list[Path] = []
        for seg in replayed:
            seg.unlink(missing_ok=True)
        self._thread = threading.Thread(target=self._ingest_loop, name="durable-ingest", daemon=True)
        self._thread.start()

    def _replay(self) -> list[Path]:
        """Apply journal records that a crash left un-ingested."""
        segs = _journal.segments(self.journal_dir) if self.journal_dir.exists() else []
        pending = []
        for seg in segs:
            pending.extend(r for r in _journal.read_segment(seg) if r[0] > self._ingested_seq)
        if pending:
            self._apply(pending)
        return segs

    def close(self) -> None:
        """Stop after ingesting everything written so far."""
        if self._journal is None:
            return
        self.commit()
        self._journal.close()
        with self._ingest_cond:
            self._closing = True
            self._ingest_cond.notify_all()
        if self._thread:
            self._thread.join(timeout=30)
        for seg in _journal.segments(self.journal_dir):
            if not self._to_ingest:
                seg.unlink(missing_ok=True)
        self._journal = None
        if self._conn is not None:
            self._conn.execute("CHECKPOINT")
            self._conn.close()
            self._conn = None

    # -- writing --------------------------------------------------------------------

    def write(self, records: list, done: Callable[[], None] | None = None) -> int:
        """Buffer records for the next commit; ``done()`` runs once they are durable."""
        if self._ingest_error is not None:
            raise DurableError(f"the store stopped writing: {self._ingest_error}")
        assert self._journal is not None, "store is not open"
        if done is not None:
            self._done.append(done)
        return self._journal.append(records)

    @property
    def pending(self) -> bool:
        return self._journal is not None and (self._journal.pending or bool(self._done))

    def take(self) -> tuple[list, list]:
        """Buffered records and their callbacks, for ``write_batch`` then ``committed``."""
        done, self._done = self._done, []
        return self._journal.take(), done

    def write_batch(self, batch: list, data: bytes | None = None) -> None:
        """Write and fdatasync a batch from ``take`` (may run in another thread);
        ``data`` is ``encode_batch(batch)`` if the caller has it already."""
        self._journal.write_encoded(batch, _journal.encode(batch) if data is None else data)

    @staticmethod
    def encode_batch(batch: list) -> bytes:
        return _journal.encode(batch)

    def commit(self) -> None:
        """Make everything written so far durable (one fdatasync), then run the callbacks."""
        batch, done = self.take()
        self.write_batch(batch)
        self.committed(batch, done)

    def committed(self, batch: list, done: list) -> None:
        """After ``write_batch``: hand the batch to ingestion, run the callbacks."""
        if batch:
            with self._ingest_cond:
                self._to_ingest.extend(batch)
                self._ingest_cond.notify_all()
        for fn in done:
            fn()
        with self._ingest_cond:
            prune, self._prune = self._prune, []
        for seg in prune:
            seg.unlink(missing_ok=True)

    def _ingest_loop(self) -> None:
        while True:
            with self._ingest_cond:
                while not self._to_ingest and not self._closing:
                    self._ingest_cond.wait()
                if not self._to_ingest and self._closing:
                    return
                deadline = time.monotonic() + INGEST_INTERVAL
                while not (self._readers or self._closing):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._ingest_cond.wait(left)
                batch, self._to_ingest = self._to_ingest, []
            try:
                self._apply(batch)
            except BaseException as exc:  # keep the journal; a restart replays it
                self._ingest_error = exc
                with self._ingest_cond:
                    self._ingest_cond.notify_all()
                return
            with self._ingest_cond:
                self._ingest_cond.notify_all()

    def _unnest(self, table: str, column: str) -> str:
        """A parameter holding one column's values as a list, typed like the column."""
        return f"unnest(?::{self._types[(table, column)]}[])"

    def _apply(self, batch: list[tuple[int, Any]]) -> None:
        """Apply records in one transaction, as few statements as possible.

        Inserts go first, grouped by table and columns; then updates, merged per row and
        grouped by the columns they set (an update of a row inserted in the same batch is
        folded into the insert, so a short run costs no UPDATE at all). Each group is one statement whose parameters are
        whole columns (lists, unnested by DuckDB), which costs a fraction of binding every
        value on its own. Every update refers to a row inserted before it, so this order is
        the journal's order.
        """
        conn = self._conn
        added: list[tuple[str, str, dict]] = []
        updates: dict[tuple, dict] = {}
        for _seq, rec in batch:
            if rec[0] == "upd":
                _, table, where, changes = rec
                updates.setdefault((table, tuple(where), tuple(where.values())), {}).update(changes)
            else:
                added.append((rec[0], rec[1], dict(rec[2])))
        if updates:  # a row inserted in this batch takes its updates before it is inserted
            keys = {(t, wcols) for t, wcols, _ in updates}
            for op, table, row in added:
                for t, wcols in keys:
                    if op == "ins" and t == table:
                        changes = updates.pop((t, wcols, tuple(row.get(c) for c in wcols)), None)
                        if changes:
                            row.update(changes)
        inserts: dict[tuple, list] = {}
        for op, table, row in added:
            inserts.setdefault((op, table, tuple(row)), []).append(tuple(row.values()))
        grouped: dict[tuple, list] = {}
        for (table, wcols, wvals), changes in updates.items():
            grouped.setdefault((table, wcols, tuple(changes)), []).append(
                (*wvals, *changes.values()))
        conn.execute("BEGIN")
        try:
            for (op, table, cols), rows in inserts.items():
                if op != "ins":  # keyed by the first column: keep one row per key
                    rows = list({r[0]: r for r in (rows if op == "upsert" else rows[::-1])}.values())
                conn.execute(
                    f"{_INSERT_VERB[op]} {table} ({', '.join(cols)}) SELECT "
                    + ", ".join(self._unnest(table, c) for c in cols),
                    [list(col) for col in zip(*rows, strict=True)])
            for (table, wcols, ccols), rows in grouped.items():
                names = [f"k{i}" for i in range(len(wcols))] + [f"c{i}" for i in range(len(ccols))]
                cols = (*wcols, *ccols)
                sets = ", ".join(f"{c} = v.c{i}" for i, c in enumerate(ccols))
                cond = " AND ".join(f"{table}.{c} = v.k{i}" for i, c in enumerate(wcols))
                values = ", ".join(f"{self._unnest(table, c)} AS {n}"
                                   for c, n in zip(cols, names, strict=True))
                conn.execute(f"UPDATE {table} SET {sets} FROM (SELECT {values}) AS v WHERE {cond}",
                             [list(col) for col in zip(*rows, strict=True)])
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('journal_seq', ?)", [str(batch[-1][0])]
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._ingested_seq = batch[-1][0]
        if self._journal is not None:
            finished = self._journal.finished_segments(self._ingested_seq)
            if finished:
                with self._ingest_cond:
                    self._prune.extend(finished)
        _chmod_private(self.db_path.with_name(self.db_path.name + ".wal"))

    def sync(self, timeout: float = 30.0) -> None:
        """Block until every record written so far is ingested into DuckDB."""
        assert self._journal is not None, "store is not open"
        target = self._journal.seq
        deadline = time.monotonic() + timeout
        with self._ingest_cond:
            self._readers += 1
            self._ingest_cond.notify_all()
            try:
                while self._ingested_seq < target:
                    if self._ingest_error is not None:
                        raise DurableError(f"the store stopped writing: {self._ingest_error}")
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("the store did not catch up with its journal in time")
                    self._ingest_cond.wait(left)
            finally:
                self._readers -= 1

    # -- large values -----------------------------------------------------------------

    def _blob_path(self, h: str) -> Path:
        if not _HASH.fullmatch(h):
            raise ValueError(f"not a blob hash: {h!r}")
        return self.blob_dir / h

    def put_blob_files(self, blobs: dict[str, bytes]) -> None:
        """Write values as files named by their hash, durable when this returns (call it
        before journaling the rows that refer to them; may run in another thread)."""
        self.blob_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        wrote = False
        for h, data in blobs.items():
            path = self._blob_path(h)
            if path.exists() and path.stat().st_size == len(data):
                continue
            tmp = path.with_name(f"{h}.{threading.get_ident()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            wrote = True
        if wrote:
            dfd = os.open(self.blob_dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def blobs(self, hashes: list[str], data: bool = True) -> dict[str, dict]:
        """Rows of ``blobs`` (hash, size and, with ``data``, the bytes) wherever they live."""
        if not hashes:
            return {}
        cols = "hash, size, external" + (", data" if data else "")
        rows = self.query(f"SELECT {cols} FROM blobs WHERE hash IN "
                          f"({','.join('?' * len(hashes))})", list(hashes))
        for r in rows:
            if data and r["external"]:
                r["data"] = self._blob_path(r["hash"]).read_bytes()
        return {r["hash"]: r for r in rows}

    # -- reading --------------------------------------------------------------------

    def query(self, sql: str, params: list | tuple = (), sync: bool = True) -> list[dict]:
        """Rows as dicts, reading everything written before the call."""
        if sync:
            self.sync()
        cur = self._conn.cursor()
        try:
            res = cur.execute(sql, list(params))
            cols = [d[0] for d in res.description]
            return [dict(zip(cols, r, strict=True)) for r in res.fetchall()]
        finally:
            cur.close()

    def read_only(self, sql: str, limit: int = 10_000) -> tuple[list[str], list[tuple]]:
        """Run a user's read-only query; returns columns and rows (see ``_readonly_sql``)."""
        _readonly_sql.check(sql)
        self.sync()
        return _readonly_sql.run(self._conn, sql, limit)
