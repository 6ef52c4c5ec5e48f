"""The store of record: one DuckDB file, written through the journal.

Writes are records (see ``Store.write``) made durable by ``Store.commit`` (the journal's
group commit), then ingested into DuckDB in batches by one thread. Reads wait until
everything written before them is ingested, so a reader never sees less than was
acknowledged. ``write`` and ``commit`` are called from one thread (the engine's loop).

Faults (see ``faults``): the journal stays the source of truth until its records are
in DuckDB, and a segment is deleted only once every record in it is ingested. A record
DuckDB refuses is quarantined and the others go on. Damage in a segment costs only the
records it touched, and is reported. When the disk is full, a batch that could not be
written is held (not acknowledged) and written again, first, once space returns; until
then ``problem`` says why, writes are refused by the engine, and reads serve what is
ingested.

Record shapes, the storage interface in one place (built by ``records``, which says
which tables use each; plain tuples of the same layout are taken too, as older journals
hold them):

- ``Insert(table, row)``, ``("ins", table, row)``: insert a row (dict of column -> value)
- ``InsertIgnore(table, row)``, ``("ins_ignore", table, row)``: insert unless the primary
  key exists (blobs, tasks)
- ``Upsert(table, row)``, ``("upsert", table, row)``: insert or replace by primary key
  (queues)
- ``Update(table, key, changes)``, ``("upd", table, key, changes)``: update the rows
  matching ``key`` (dict equality)
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import duckdb

from ..core.errors import EngineLocked, StoreUnavailable
from ..core.private import private_thread, private_umask
from . import journal as _journal
from . import readonly_sql as _readonly_sql
from .faults import (
    Quarantine,
    Reserve,
    damaged_count,
    describe,
    is_disk_full,
    is_transient,
    set_aside,
)
from .journal import Entry
from .migrations import migrate
from .records import Record, group

log = logging.getLogger("durable_nb")

_INSERT_VERB = {"ins": "INSERT INTO", "ins_ignore": "INSERT OR IGNORE INTO", "upsert": "INSERT OR REPLACE INTO"}
# Large checkpoint pieces are files in ``<db>.blobs/`` named by their hash (core.checkpoints)
_HASH = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")  # xxh3-128 pieces, sha256 of schema 3-4
# How long ingestion gathers records into one DuckDB transaction. Durability comes from
# the journal, so this only trades read freshness (a waiting reader cuts it short) for
# fewer DuckDB commits competing with the journal's fdatasync for the disk.
INGEST_INTERVAL = 0.25
# How long ingestion waits before trying a batch again after a fault of the disk.
INGEST_RETRY = 0.5


def _chmod_private(path: Path) -> None:
    try:
        if path.exists() and (path.stat().st_mode & 0o077):
            os.chmod(path, 0o600)
    except OSError:
        pass


class _Transient(Exception):
    """Ingestion met a fault of the disk or the process; the batch is tried again."""


class Store:
    """DuckDB file + journal. Only the engine process creates one."""

    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)
        self.journal_dir = self.db_path.with_name(self.db_path.name + ".journal")
        self.blob_dir = self.db_path.with_name(self.db_path.name + ".blobs")
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._journal: _journal.Journal | None = None
        self._ingest_cond = threading.Condition()
        self._to_ingest: list[Entry] = []
        self._ingested_seq = 0
        self._closing = False
        self._readers = 0
        self._thread: threading.Thread | None = None
        self._held: list[Entry] = []  # a batch the journal could not write, with its callbacks
        self._held_done: list[Callable[[], None]] = []
        self.write_problem: str | None = None  # why the journal cannot write, if it cannot
        self.ingest_problem: str | None = None  # why ingestion is stuck, if it is
        self.quarantine: Quarantine | None = None
        self.reserve = Reserve(self.journal_dir)
        self.lost_records = 0  # sequence numbers missing from damaged segments at replay

    # -- lifecycle ------------------------------------------------------------------

    def open(self) -> None:
        """Open (or create) the database, migrate it, replay the journal, start writing."""
        with private_umask():  # the database and its WAL are private from their first byte
            self._open()

    def _open(self) -> None:
        self.db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            # settings locked, no extensions or external access: see readonly_sql
            self._conn = duckdb.connect(str(self.db_path), config=_readonly_sql.CONNECT_CONFIG)
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
        self.quarantine = Quarantine(self.journal_dir)
        self.journal_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.reserve.make():
            self._low_space(OSError(28, "No space left on device (no room for the engine's "
                                        f"reserve of {self.reserve.size >> 20} MB)"))
        replayed, last_seq = self._replay()
        # new records continue after every sequence number seen, ingested or not
        self._journal = _journal.Journal(self.journal_dir, max(self._ingested_seq, last_seq))
        self._done: list[Callable[[], None]] = []
        self._prune: list[Path] = []
        for seg in replayed:
            seg.unlink(missing_ok=True)
        self._thread = threading.Thread(target=self._ingest_loop, name="durable-ingest", daemon=True)
        self._thread.start()

    def _replay(self) -> tuple[list[Path], int]:
        """Apply journal records that a crash left un-ingested; returns the segments that
        may go and the highest sequence number seen. Damaged segments are reported and
        set aside once their intact records are in DuckDB."""
        segs = _journal.segments(self.journal_dir) if self.journal_dir.exists() else []
        pending: dict[int, Record] = {}
        damaged = []
        last = 0
        for seg in segs:
            scan = _journal.scan_segment(seg)
            for seq, rec in scan.records:
                last = max(last, seq)
                if seq > self._ingested_seq and seq not in pending:  # a rewritten batch: first
                    pending[seq] = rec
            if scan.damage:
                where = ", ".join(f"{d.length} bytes at offset {d.offset} ({d.reason})"
                                  for d in scan.damage)
                log.error("durable_nb: journal segment %s is damaged: %s; its %d intact "
                          "records are kept", seg, where, len(scan.records))
                damaged.append((seg, scan))
        if damaged and pending:
            expected = set(range(self._ingested_seq + 1, last + 1))
            missing = sorted(expected - set(pending))
            if missing:
                self.lost_records = len(missing)
                log.error("durable_nb: %d journal records were lost to that damage (sequence "
                          "numbers %d to %d); every other record is replayed", len(missing),
                          missing[0], missing[-1])
        if pending:
            try:
                self._ingest(sorted(pending.items()))
            except _Transient as exc:
                raise StoreUnavailable(
                    f"cannot replay {len(pending)} journal records into {self.db_path}: "
                    f"{exc}. They are kept in {self.journal_dir}; free space on that disk and "
                    "start the engine again.") from None
        for seg, scan in damaged:
            set_aside(seg, scan.damage, len(scan.records))
        return [s for s in segs if s not in {d[0] for d in damaged}], last

    def close(self) -> None:
        """Stop after ingesting everything written so far."""
        if self._journal is None:
            return
        try:
            self.commit()
        except OSError as exc:
            log.error("durable_nb: %d records not acknowledged are dropped at stop: the "
                      "journal cannot write (%s)", len(self._held), describe(exc))
        self._journal.close()
        with self._ingest_cond:
            self._closing = True
            self._ingest_cond.notify_all()
        if self._thread:
            self._thread.join(timeout=30)
        # only segments whose every record is in DuckDB go; the rest are replayed next time
        done = self._journal.finished_segments(self._ingested_seq)
        if self._ingested_seq >= self._journal.durable_seq and not self._to_ingest:
            done = _journal.segments(self.journal_dir)
        for seg in done:
            seg.unlink(missing_ok=True)
        self._journal = None
        if self.quarantine is not None:
            self.quarantine.close()
        if self._conn is not None:
            try:
                self._conn.execute("CHECKPOINT")
            except duckdb.Error as exc:  # DuckDB replays its own WAL at the next open
                log.warning("durable_nb: DuckDB checkpoint at stop failed (%s)", describe(exc))
            self._conn.close()
            self._conn = None

    def _db(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection of the open store."""
        if self._conn is None:
            raise RuntimeError("the store is not open")
        return self._conn

    def _open_journal(self) -> _journal.Journal:
        """The journal of the open store."""
        if self._journal is None:
            raise RuntimeError("the store is not open")
        return self._journal

    # -- writing --------------------------------------------------------------------

    def write(self, records: Iterable[Record], done: Callable[[], None] | None = None) -> int:
        """Buffer records for the next commit; ``done()`` runs once they are durable."""
        assert self._journal is not None, "store is not open"
        if done is not None:
            self._done.append(done)
        return self._journal.append(records)

    @property
    def pending(self) -> bool:
        return self._journal is not None and (
            self._journal.pending or bool(self._done) or bool(self._held))

    @property
    def problem(self) -> str | None:
        """Why the store cannot write (or ingest) right now; None when it can."""
        return self.write_problem or self.ingest_problem

    def take(self) -> tuple[list[Entry], list[Callable[[], None]]]:
        """Buffered records and their callbacks, for ``write_batch`` then ``committed``;
        a held batch comes first, so records stay in journal order."""
        batch = self._held + self._open_journal().take()
        done = self._held_done + self._done
        self._held, self._held_done, self._done = [], [], []
        return batch, done

    def hold(self, batch: list[Entry], done: list[Callable[[], None]],
             exc: BaseException) -> bool:
        """The journal could not write ``batch``: keep it (and its callbacks, which must not
        run: nothing in it is acknowledged) to be written first by the next commit.
        Returns True when a full disk released the reserve (so try again at once)."""
        self._held, self._held_done = batch + self._held, done + self._held_done
        if is_disk_full(exc):
            return self._low_space(exc)
        if self.write_problem is None:
            log.error("durable_nb: the journal of %s cannot write (%s); writes are refused "
                      "until it can, reads go on", self.db_path, describe(exc))
        self.write_problem = (f"the journal in {self.journal_dir} cannot write: "
                              f"{describe(exc)}")
        return False

    def _low_space(self, exc: BaseException) -> bool:
        """The disk is full: refuse new writes, and give back the reserve so that what is
        in flight can finish. Returns True if the reserve was released just now."""
        released = self.reserve.release()
        if self.write_problem is None:
            log.error("durable_nb: the disk holding %s is full (%s); new writes are refused "
                      "until it has room again, reads go on%s", self.db_path, describe(exc),
                      "; the engine's reserve was released" if released else "")
        self.write_problem = (f"the disk holding {self.journal_dir} is full "
                              f"({describe(exc)})")
        return released

    def try_restore(self) -> bool:
        """After a fault: accept writes again once nothing is held and the disk has room
        for the reserve twice over. Returns True when writes are accepted."""
        if self.write_problem is None:
            return True
        if self._held or not self.reserve.room() or not self.reserve.make():
            return False
        log.warning("durable_nb: the disk holding %s has room again; writes are accepted",
                    self.db_path)
        self.write_problem = None
        return True

    def write_batch(self, batch: list[Entry], data: bytes | None = None) -> None:
        """Write and fdatasync a batch from ``take`` (may run in another thread);
        ``data`` is ``encode_batch(batch)`` if the caller has it already."""
        journal = self._open_journal()
        journal.write_encoded(batch, journal.encode(batch) if data is None else data)

    def encode_batch(self, batch: list[Entry]) -> bytes:
        return self._open_journal().encode(batch)

    def commit(self) -> None:
        """Make everything written so far durable (one fdatasync), then run the callbacks."""
        batch, done = self.take()
        self.write_batch(batch)
        self.committed(batch, done)

    def committed(self, batch: list[Entry], done: list[Callable[[], None]]) -> None:
        """After ``write_batch``: hand the batch to ingestion, run the callbacks."""
        if self.write_problem is not None and self.reserve.present:  # not a full disk
            log.warning("durable_nb: the journal of %s writes again", self.db_path)
            self.write_problem = None
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
        private_thread()  # the WAL DuckDB creates again after each checkpoint is private
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
            while True:
                try:
                    try:
                        self._ingest(batch)
                    except _Transient:
                        raise
                    except Exception as err:  # a bug must not stop ingestion for good
                        log.exception("durable_nb: ingestion failed unexpectedly")
                        raise _Transient(describe(err)) from None
                    break
                except _Transient as exc:  # the disk, not the records: try again later
                    if is_disk_full(exc) and self._low_space(exc):
                        continue  # the reserve's space lets the batch in
                    if self.ingest_problem is None:
                        log.error("durable_nb: cannot ingest into %s (%s); the journal keeps "
                                  "the records and ingestion retries", self.db_path, exc)
                        if is_disk_full(exc) and not self.reserve.present:
                            self.ingest_problem = str(exc)
                            continue  # the reserve went a moment ago: there may be room now
                    self.ingest_problem = f"cannot ingest into {self.db_path}: {exc}"
                    with self._ingest_cond:
                        self._ingest_cond.notify_all()
                        if self._closing:
                            self._to_ingest[:0] = batch  # a restart replays them
                            return
                        self._ingest_cond.wait(INGEST_RETRY)
            if self.ingest_problem is not None:
                log.warning("durable_nb: ingestion into %s goes on", self.db_path)
                self.ingest_problem = None
            with self._ingest_cond:
                self._ingest_cond.notify_all()

    def _ingest(self, batch: list[Entry]) -> None:
        """Apply a batch; if DuckDB refuses it, apply its records one by one and quarantine
        those it refuses. Raises ``_Transient`` on a fault of the disk (nothing is lost:
        the records stay in the journal and the caller tries again)."""
        batch = [r for r in batch if r[0] > self._ingested_seq]  # idempotent after a retry
        if not batch:
            return
        try:
            self._apply(batch)
            return
        except Exception as exc:
            if is_transient(exc):
                raise _Transient(describe(exc)) from None
        for item in batch:  # one bad record must not hold up the others
            try:
                self._apply([item])
            except Exception as exc:
                if is_transient(exc):
                    raise _Transient(describe(exc)) from None
                self._quarantine(item, exc)

    def _quarantine(self, item: tuple[int, Record], exc: BaseException) -> None:
        seq, rec = item
        if self.quarantine is None:
            raise RuntimeError("the store is not open")
        try:
            self.quarantine.add(seq, rec, describe(exc))
        except OSError as err:
            raise _Transient(f"cannot quarantine record {seq}: {describe(err)}") from None
        log.error("durable_nb: journal record %d (%s %s) cannot be stored in %s and is "
                  "quarantined (%s); the other records go on. `durable-nb doctor` lists it.",
                  seq, rec[0], rec[1], self.db_path, describe(exc))
        try:  # the next batch records it otherwise (a replay would quarantine it again)
            self._db().execute("INSERT OR REPLACE INTO meta VALUES ('journal_seq', ?)",
                               [str(seq)])
        except duckdb.Error:
            pass
        self._advance(seq)

    def _unnest(self, table: str, column: str) -> str:
        """A parameter holding one column's values as a list, typed like the column."""
        return f"unnest(?::{self._types[(table, column)]}[])"

    def _apply(self, batch: list[tuple[int, Record]]) -> None:
        """Apply records in one transaction, as few statements as possible: one per group
        of ``records.group`` (inserts, then updates, which keeps the journal's meaning).
        Each statement's parameters are whole columns (lists, unnested by DuckDB), which
        costs a fraction of binding every value on its own."""
        conn = self._db()
        inserts, grouped = group(rec for _seq, rec in batch)
        conn.execute("BEGIN")
        try:
            for (op, table, cols), rows in inserts.items():
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
            try:
                conn.execute("ROLLBACK")
            except duckdb.Error:
                pass  # a failed COMMIT already ended the transaction
            raise
        self._advance(batch[-1][0])

    def _advance(self, seq: int) -> None:
        """Records up to ``seq`` are in DuckDB: segments holding only those may go."""
        self._ingested_seq = seq
        if self._journal is not None:
            finished = self._journal.finished_segments(self._ingested_seq)
            if finished:
                with self._ingest_cond:
                    self._prune.extend(finished)
        _chmod_private(self.db_path.with_name(self.db_path.name + ".wal"))

    def sync(self, timeout: float = 30.0) -> None:
        """Block until every record written so far is ingested into DuckDB."""
        assert self._journal is not None, "store is not open"
        # what the journal holds durably, plus what this loop turn buffered (written at its
        # end); a held batch is not durable and not waited for
        target = self._journal.seq if self.write_problem is None else self._journal.durable_seq
        deadline = time.monotonic() + timeout
        with self._ingest_cond:
            self._readers += 1
            self._ingest_cond.notify_all()
            try:
                # while ingestion waits for the disk, give its retry a moment, then serve
                # what DuckDB has
                stale_at = time.monotonic() + 2 * INGEST_RETRY
                while self._ingested_seq < target:
                    now = time.monotonic()
                    if self.ingest_problem is not None and now >= stale_at:
                        return
                    left = deadline - now
                    if self.ingest_problem is not None:
                        left = min(left, stale_at - now)
                    elif left <= 0:
                        raise TimeoutError("the store did not catch up with its journal in time")
                    self._ingest_cond.wait(left)
            finally:
                self._readers -= 1

    def health(self) -> dict:
        """The store's state for ``/health`` and ``durable-nb doctor``."""
        segs = _journal.segments(self.journal_dir) if self.journal_dir.exists() else []
        durable = self._journal.durable_seq if self._journal is not None else 0
        backlog = max(0, durable - self._ingested_seq)  # durable, not yet in DuckDB
        return {"writable": self.write_problem is None, "problem": self.problem,
                "quarantined": self.quarantine.count if self.quarantine else 0,
                "damaged_segments": damaged_count(self.journal_dir),
                "lost_records": self.lost_records, "journal_segments": len(segs),
                "ingest_backlog": backlog + len(self._held)}

    # -- large values -----------------------------------------------------------------

    def _blob_path(self, h: str) -> Path:
        if not _HASH.fullmatch(h):
            raise ValueError(f"not a blob hash: {h!r}")
        return self.blob_dir / h

    def missing_blob_files(self, files: dict[str, int]) -> list[str]:
        """Which of the files {hash: size} a worker wrote are absent or of another size."""
        out = []
        for h, size in files.items():
            try:
                if os.stat(self._blob_path(h)).st_size == size:
                    continue
            except OSError:
                pass
            out.append(h)
        return out

    def blobs(self, hashes: list[str], data: bool = True,
              files: bool = True) -> dict[str, dict]:
        """Rows of ``blobs`` (hash, size and, with ``data``, the bytes: of pieces that are
        files too unless ``files`` is false, when theirs stay None)."""
        if not hashes:
            return {}
        cols = "hash, size, external" + (", data" if data else "")
        rows = self.query(f"SELECT {cols} FROM blobs WHERE hash IN "
                          f"({','.join('?' * len(hashes))})", list(hashes))
        for r in rows:
            if data and files and r["external"]:
                r["data"] = self._blob_path(r["hash"]).read_bytes()
        return {r["hash"]: r for r in rows}

    # -- reading --------------------------------------------------------------------

    def query(self, sql: str, params: list | tuple = (), sync: bool = True) -> list[dict]:
        """Rows as dicts, reading everything written before the call."""
        if sync:
            self.sync()
        cur = self._db().cursor()
        try:
            res = cur.execute(sql, list(params))
            cols = [d[0] for d in res.description]
            return [dict(zip(cols, r, strict=True)) for r in res.fetchall()]
        finally:
            cur.close()

    def read_only(self, sql: str, limit: int = 10_000) -> tuple[list[str], list[tuple]]:
        """Run a user's read-only query; returns columns and rows (see ``readonly_sql``)."""
        _readonly_sql.check(sql)
        self.sync()
        return _readonly_sql.run(self._db(), sql, limit)
