"""What the store does with faults: transient ones wait, bad records are quarantined,
damaged journal segments are set aside with a report.

Layout beside the database ``<db>``:

- ``<db>.journal/quarantine/seg-*.jnl``: records DuckDB refused, as a journal of their own;
  each entry is ``(seq, ("quarantined", {"seq", "record", "error", "at"}))``. They are kept, counted and
  shown by ``/health`` and ``durable-nb doctor``; they never block other records or a start.
- ``<db>.journal/damaged/<segment>`` and ``<segment>.report.json``: a segment in which the
  journal found damage, moved aside once its intact records were ingested. The report
  names the damaged byte ranges (``offset``, ``length``, ``reason``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import duckdb

from ..core.checkpoints import free_bytes
from ..core.private import fsync_dir
from . import journal as _journal

QUARANTINE = "quarantine"
DAMAGED = "damaged"
# Words of errors that say the device, not the record, is at fault: the batch waits and is
# tried again instead of being quarantined.
_TRANSIENT_WORDS = ("no space left", "disk quota", "input/output error", "could not write",
                    "read-only file system", "out of memory", "invalidated")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the disk or the process (retry later), not of a record."""
    if isinstance(exc, (OSError, MemoryError, duckdb.IOException, duckdb.OutOfMemoryException)):
        return True
    text = str(exc).lower()
    return any(w in text for w in _TRANSIENT_WORDS)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Quarantine:
    """The records of one database that could not be ingested: a journal of their own."""

    def __init__(self, journal_dir: Path):
        self.folder = journal_dir / QUARANTINE
        self._journal: _journal.Journal | None = None
        self.count = len(self.entries())

    def entries(self) -> list[dict]:
        """Every quarantined entry: ``{"seq", "record", "error", "at"}``."""
        if not self.folder.exists():
            return []
        return [rec[1] for seg in _journal.segments(self.folder)
                for _, rec in _journal.scan_segment(seg).records]

    def add(self, seq: int, record: object, error: str) -> None:
        """Keep ``record`` durably (before its sequence number counts as ingested)."""
        if self._journal is None:
            self._journal = _journal.Journal(self.folder, 0)
        entry = {"seq": seq, "record": record, "error": error, "at": time.time()}
        self._journal.write([(seq, ("quarantined", entry))])
        self.count += 1

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def set_aside(segment: Path, damage: list, records_kept: int) -> Path:
    """Move a damaged segment to ``damaged/`` with a JSON report; returns its new path."""
    folder = segment.parent / DAMAGED
    folder.mkdir(mode=0o700, exist_ok=True)
    report = {"segment": segment.name, "found_at": time.time(), "records_kept": records_kept,
              "damage": [{"offset": d.offset, "length": d.length, "reason": d.reason}
                         for d in damage]}
    rpath = folder / f"{segment.name}.report.json"
    fd = os.open(rpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    target = folder / segment.name
    os.replace(segment, target)
    fsync_dir(folder)
    fsync_dir(segment.parent)
    return target


def damaged_count(journal_dir: Path) -> int:
    folder = journal_dir / DAMAGED
    return len(list(folder.glob("*.report.json"))) if folder.exists() else 0


RESERVE = "reserve"
RESERVE_BYTES = 8 * 1024 * 1024


class Reserve:
    """Disk space the store keeps for itself, given back when the disk fills.

    When a write meets a full disk, deleting this file lets what is already in flight
    finish (the journal's held batch, DuckDB ingesting what the journal holds) while the
    engine refuses new writes; it is made again once the disk has room for it twice."""

    def __init__(self, folder: Path, size: int = RESERVE_BYTES):
        self.path = folder / RESERVE
        self.size = size

    @property
    def present(self) -> bool:
        return self.size == 0 or self.path.exists()

    def room(self) -> bool:
        """Whether the disk has room for the reserve and as much again."""
        return free_bytes(self.path.parent) >= 2 * self.size

    def make(self) -> bool:
        """Take the space (True), or leave nothing behind if the disk is too full."""
        if self.present:
            return True
        tmp = self.path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            return True
        except OSError:
            tmp.unlink(missing_ok=True)
            return False

    def release(self) -> bool:
        """Give the space back; True if there was any."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False


def is_disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return getattr(exc, "errno", None) in (28, 122) or "no space left" in text \
        or "disk quota" in text
