"""Append-only journal: the durable write path of the engine.

Records are buffered by ``append`` and made durable by ``commit``: one write and one
``fdatasync`` for everything buffered since the previous commit (group commit). The
engine commits once per turn of its event loop, so records from all workers and
requests handled in that turn share one sync. The store ingests committed records into
DuckDB in batches and deletes segments it has fully ingested; on start it replays what
was not ingested yet.
"""

from __future__ import annotations

import os
import pickle
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

_HEADER = struct.Struct("<II")  # length, crc32
SEGMENT_BYTES = 8 * 1024 * 1024


def read_segment(path: Path) -> Iterator[tuple[int, object]]:
    """Yield (seq, record) from a segment, stopping at a torn or corrupt tail."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        body = data[pos + _HEADER.size : pos + _HEADER.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            return
        yield pickle.loads(body)
        pos += _HEADER.size + length


def encode(batch: list[tuple[int, object]]) -> bytes:
    """The bytes of a batch of (seq, record) as they go into a segment."""
    chunks = []
    for item in batch:
        body = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        chunks.append(_HEADER.pack(len(body), zlib.crc32(body)))
        chunks.append(body)
    return b"".join(chunks)


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("seg-*.jnl"))


class Journal:
    """Segment files of length-prefixed, checksummed pickles of (seq, record)."""

    def __init__(self, folder: Path, first_seq: int):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.seq = first_seq
        self._buffer: list[tuple[int, object]] = []
        self._file = None
        self._size = 0
        self._segment_no = max((int(p.stem[4:]) for p in segments(folder)), default=0)
        self._segment_max: dict[Path, int] = {}
        self._path: Path | None = None
        self._lock = threading.Lock()  # _segment_max: written by the syncing thread

    def append(self, records: list) -> int:
        """Buffer records (not durable until ``commit``); returns the last sequence number."""
        for rec in records:
            self.seq += 1
            self._buffer.append((self.seq, rec))
        return self.seq

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def take(self) -> list[tuple[int, object]]:
        """The buffered records, for ``write`` (possibly in another thread)."""
        batch, self._buffer = self._buffer, []
        return batch

    def commit(self) -> list[tuple[int, object]]:
        """Write and fdatasync everything buffered; returns the records made durable."""
        return self.write(self.take())

    def write(self, batch: list[tuple[int, object]]) -> list[tuple[int, object]]:
        """Append ``batch`` and fdatasync it (one thread at a time); returns it."""
        return self.write_encoded(batch, encode(batch))

    def write_encoded(self, batch: list[tuple[int, object]], data: bytes) -> list[tuple[int, object]]:
        """Append ``data`` (``encode(batch)``) and fdatasync it; returns ``batch``."""
        if not batch:
            return batch
        if self._file is None or self._size > SEGMENT_BYTES:
            self._open_segment()
        self._file.write(data)
        os.fdatasync(self._file.fileno())
        self._size += len(data)
        with self._lock:
            self._segment_max[self._path] = batch[-1][0]
        return batch

    def _open_segment(self) -> None:
        if self._file is not None:
            self._file.close()
        self._segment_no += 1
        path = self._path = self.folder / f"seg-{self._segment_no:09d}.jnl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "ab", buffering=0)
        self._size = 0
        dfd = os.open(self.folder, os.O_RDONLY)  # make the new file's entry durable too
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def finished_segments(self, ingested_seq: int) -> list[Path]:
        """Segments (not the current one) whose every record is ingested, forgotten here."""
        with self._lock:
            done = [p for p, mx in self._segment_max.items()
                    if mx <= ingested_seq and p != self._path]
            for p in done:
                del self._segment_max[p]
        return done

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
