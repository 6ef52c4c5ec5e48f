"""Append-only journal with group commit: the durable write path of the engine.

Records are appended to segment files and made durable with one ``fdatasync`` for all
records that arrived while the previous sync ran. The store ingests durable records
into DuckDB in batches and deletes segments it has fully ingested; on start it replays
what was not ingested yet. A record is acknowledged only once it is on disk.
"""

from __future__ import annotations

import os
import pickle
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
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


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("seg-*.jnl"))


class Journal:
    """Group-commit writer. ``on_durable(last_seq)`` runs in the writer thread after each sync."""

    def __init__(self, folder: Path, first_seq: int, on_durable: Callable[[list], None]):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._seq = first_seq
        self._pending: list[tuple[tuple[int, object], Callable[[], None] | None]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._on_durable = on_durable
        self._file = None
        self._size = 0
        self._segment_no = max((int(p.stem[4:]) for p in segments(folder)), default=0)
        self._segment_max: dict[Path, int] = {}
        self._path: Path | None = None
        self._thread = threading.Thread(target=self._run, name="durable-journal", daemon=True)
        self._thread.start()

    def append(self, records: list, done: Callable[[], None] | None = None) -> int:
        """Queue records; ``done`` is called (in the writer thread) once they are durable."""
        with self._cond:
            if self._closed:
                raise RuntimeError("journal is closed")
            for i, rec in enumerate(records):
                self._seq += 1
                last = i == len(records) - 1
                self._pending.append(((self._seq, rec), done if last else None))
            if not records and done is not None:
                self._pending.append((None, done))
            self._cond.notify()
            return self._seq

    def _open_segment(self) -> None:
        if self._file is not None:
            self._file.close()
        self._segment_no += 1
        path = self._path = self.folder / f"seg-{self._segment_no:09d}.jnl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "ab", buffering=0)
        self._size = 0
        # make the new file's directory entry durable too
        dfd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                batch, self._pending = self._pending, []
            if self._file is None or self._size > SEGMENT_BYTES:
                self._open_segment()
            chunks, recs = [], []
            for item, _ in batch:
                if item is None:
                    continue
                body = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                chunks.append(_HEADER.pack(len(body), zlib.crc32(body)))
                chunks.append(body)
                recs.append(item)
            if chunks:
                data = b"".join(chunks)
                self._file.write(data)
                os.fdatasync(self._file.fileno())
                self._size += len(data)
                with self._cond:
                    self._segment_max[self._path] = recs[-1][0]
                self._on_durable(recs)
            for _, done in batch:
                if done is not None:
                    done()

    def prune(self, ingested_seq: int) -> None:
        """Delete finished segments whose every record is ingested into DuckDB."""
        with self._cond:
            done = [p for p, mx in self._segment_max.items() if mx <= ingested_seq and p != self._path]
            for p in done:
                del self._segment_max[p]
        for p in done:
            p.unlink(missing_ok=True)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)
        if self._file is not None:
            self._file.close()
            self._file = None
