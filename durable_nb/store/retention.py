"""Retention: deleting finished runs, everything that belongs to them, and the checkpoint
values (blobs) no remaining checkpoint refers to.

These run in a thread of the engine, the store's only writer, beside ingestion, each step
in DuckDB transactions of its own (on its own cursor): first the runs' rows, in batches,
then in one transaction every row of the other tables whose run is gone. A kill between
the two leaves rows no run refers to (never shown: every read starts from a run), which
the next prune sweeps. Only rows of finished runs are touched, and the engine keeps those
runs from changing meanwhile, so ingestion (which writes rows of unfinished runs) never
meets these transactions on the same rows.

Blobs go last, in two durable steps: their rows are deleted (committed) and only then
their files in ``<db>.blobs/``. A kill between the two leaves unreferenced files, which
a later prune removes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.checkpoints import referenced_blobs
from ..core.private import fsync_dir
from ..core.status import TERMINAL, sql_list
from .store import Store

# the tables holding a run's rows, by run id
RUN_TABLES = ("transitions", "attempts", "steps", "waits", "logs", "span_records",
              "checkpoints")
# runs per transaction: DuckDB updates the primary key's index at commit, at about 70 us a
# run, so a batch holds the store's commit lock for a fraction of a second at most
BATCH = 5_000
_BLOB_NAME = re.compile(r"[0-9a-f]{16,128}")


@dataclass
class Removed:
    """What a prune removed (or, dry, would remove)."""

    runs: int = 0
    rows: int = 0  # rows of the runs' other tables
    blobs: int = 0
    blob_bytes: int = 0  # bytes of the blobs, inline and files
    files: int = 0
    candidates: set[str] = field(default_factory=set)  # blob hashes the runs referred to

    def as_dict(self) -> dict:
        return {"runs": self.runs, "rows": self.rows, "blobs": self.blobs,
                "blob_bytes": self.blob_bytes, "files": self.files}


def select_runs(store: Store, before: float, statuses: Iterable[str],
                keep: Iterable[str]) -> list[tuple[float, str]]:
    """(created_at, id) of the runs in one of ``statuses`` (terminal ones only) that
    finished before ``before``, oldest first, except ``keep`` (runs the engine holds),
    children of unfinished runs (their parents read their results) and lifecycle hook runs
    whose run is still there (a hook run is the record that its run's hook fired: without
    it the engine's start would fire it again; it goes in a prune after its run's)."""
    wanted = sorted(set(statuses) & TERMINAL)
    if not wanted:
        return []
    rows = store.query(
        f"SELECT created_at, id FROM runs WHERE status IN ({sql_list(wanted)}) "
        "AND coalesce(finished_at, updated_at, created_at) < ? "
        "AND id NOT IN (SELECT unnest(?::VARCHAR[])) "
        "AND (parent_run_id IS NULL OR parent_run_id NOT IN "
        f"(SELECT id FROM runs WHERE status NOT IN ({sql_list(TERMINAL)}))) "
        "AND (hook_of IS NULL OR hook_of NOT IN (SELECT id FROM runs)) "
        "ORDER BY created_at", [before, sorted(keep)])
    return [(r["created_at"], r["id"]) for r in rows]


def delete_runs(store: Store, runs: list[tuple[float, str]], dry_run: bool = False,
                stopping: Callable[[], bool] = lambda: False) -> Removed:
    """Delete ``runs`` (from ``select_runs``), ``BATCH`` per transaction, then every row
    of the other tables whose run is gone (``sweep``); with ``dry_run`` only count. Once
    ``stopping()`` says so, it ends after the batch in hand (the next prune goes on)."""
    out = Removed()
    conn = store._db().cursor()  # a connection of its own: its transactions stay its own
    try:
        if dry_run:
            ids = [i for _, i in runs]
            out.runs = len(ids)
            for table in RUN_TABLES:
                out.rows += _count(conn.execute(
                    f"SELECT count(*) FROM {table} WHERE run_id IN "
                    "(SELECT unnest(?::VARCHAR[]))", [ids]))
            out.candidates = referenced_blobs(_manifests(
                conn, "run_id IN (SELECT unnest(?::VARCHAR[]))", [ids]))
            return out
        for start in range(0, len(runs), BATCH):
            if stopping():
                return out
            batch = runs[start:start + BATCH]
            # the time range lets DuckDB skip the row groups of other runs (zone maps)
            out.runs += _count(_in_transaction(conn, (
                f"DELETE FROM runs WHERE created_at BETWEEN ? AND ? AND status IN "
                f"({sql_list(TERMINAL)}) AND id IN (SELECT unnest(?::VARCHAR[]))",
                [batch[0][0], batch[-1][0], [i for _, i in batch]])))
        sweep(conn, out)
    finally:
        conn.close()
    return out


def sweep(conn: Any, out: Removed) -> None:
    """Delete, in one transaction, the rows whose run is gone (this prune's, or those a
    killed prune left); the blobs their checkpoints referred to become ``candidates``."""
    gone = "run_id NOT IN (SELECT id FROM runs)"
    conn.execute("BEGIN")
    try:
        out.candidates |= referenced_blobs(_manifests(conn, gone, []))
        for table in RUN_TABLES:
            out.rows += _count(conn.execute(f"DELETE FROM {table} WHERE {gone}"))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _manifests(conn: Any, where: str, params: list) -> list[str]:
    """The manifests of the checkpoint rows matching ``where``."""
    return [r[0] for r in conn.execute(f"SELECT manifest FROM checkpoints WHERE {where}",
                                       params).fetchall()]


def _in_transaction(conn: Any, statement: tuple[str, list]) -> Any:
    conn.execute("BEGIN")
    try:
        cur = conn.execute(*statement)
        n = _count(cur)
        conn.execute("COMMIT")
        return n
    except BaseException:
        _rollback(conn)
        raise


def orphan_blobs(store: Store, candidates: set[str], before: float, live: set[str],
                 leaving: list[str] | None = None) -> tuple[dict[str, tuple[int, bool]],
                                                           list[Path]]:
    """Blobs no checkpoint in the store (but those of the runs ``leaving``, for a dry
    run) and none in ``live`` (the engine's unfinished runs) refers to: those the pruned
    runs referred to (``candidates``), and any left older than ``before`` (by an
    interrupted prune). Returns their rows (hash -> size, external) and the unreferenced
    files in ``<db>.blobs/``."""
    texts = [r["manifest"] for r in store.query(
        "SELECT manifest FROM checkpoints WHERE run_id NOT IN (SELECT unnest(?::VARCHAR[]))",
        [leaving or []])]
    used = referenced_blobs(texts) | live
    rows = store.query(
        "SELECT hash, size, external FROM blobs WHERE created_at < ? "
        "OR hash IN (SELECT unnest(?::VARCHAR[]))", [before, sorted(candidates)])
    gone = {r["hash"]: (int(r["size"] or 0), bool(r["external"])) for r in rows
            if r["hash"] not in used}
    files = []
    if store.blob_dir.is_dir():
        for entry in os.scandir(store.blob_dir):
            name = entry.name
            if not _BLOB_NAME.fullmatch(name) or name in used or not entry.is_file():
                continue
            if name in gone or name in candidates or entry.stat().st_mtime < before:
                files.append(Path(entry.path))
    return gone, files


def delete_blobs(store: Store, hashes: list[str], files: list[Path], out: Removed) -> None:
    """Delete the blob rows (committed, durable), then their files."""
    conn = store._db().cursor()
    try:
        for start in range(0, len(hashes), BATCH):
            conn.execute("BEGIN")
            try:
                conn.execute("DELETE FROM blobs WHERE hash IN (SELECT unnest(?::VARCHAR[]))",
                             [hashes[start:start + BATCH]])
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
    finally:
        conn.close()
    for path in files:
        try:
            out.blob_bytes += path.stat().st_size
            path.unlink()
            out.files += 1
        except FileNotFoundError:
            pass
    if files:
        fsync_dir(store.blob_dir)


def _count(cur: Any) -> int:
    if isinstance(cur, int):
        return cur
    row = cur.fetchone()
    return int(row[0]) if row else 0


def _rollback(conn: Any) -> None:
    try:
        conn.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - a failed COMMIT already ended the transaction
        pass
