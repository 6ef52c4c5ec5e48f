"""Append-only journal: the durable write path of the engine.

Records are buffered by ``append`` and made durable by ``commit``: one write and one
``fdatasync`` for everything buffered since the previous commit (group commit). The
engine commits at the end of a turn of its event loop, so records from all workers and
requests handled in that turn share one sync; while other runs execute, the sync runs on
the engine's journal thread (``write_encoded``) and whatever arrives meanwhile shares the
next one (``engine.writer``). The store ingests committed records into
DuckDB in batches and deletes segments it has fully ingested; on start it replays what
was not ingested yet.

Segment format 2 (``seg-NNNNNNNNN.jnl``)::

    file header, written twice:  magic (8) | version u16 | 0 u16 | salt u32 | crc32 u32
    each record:                 sync (4) | length u32 | body crc u32 | header crc u32 | body

``body`` is the pickle of ``(seq, record)``. Both record checksums are CRC-32 seeded with
the segment's random salt: the body crc covers the body, the header crc covers the sync
marker, the length and the body crc. A damaged length is thus caught before it is used,
and frame-shaped bytes inside a user's payload (written without knowing the salt) are
never taken for a record. The header is written twice so that one damaged byte in it
does not make the whole segment unverifiable.

``scan_segment`` checks every record on its own. After damage it resynchronises at the
next sync marker whose frame checks out, so every intact record on either side of a
damaged one is kept, and the damaged bytes are reported with their offset. An
incomplete last record is a torn tail: normal after a crash in the middle of a write,
whose records were never acknowledged. Segments of format 1 (no file header,
``length u32 | crc32 u32 | body``, written by earlier releases) are still read, up to
their first bad record.

A write that fails (ENOSPC, EIO) is rolled back, so the segment stays readable, and the
caller may write the same batch again later. If the rollback fails too, the segment is
abandoned and may keep part of the failed batch, so a seq can appear twice across
segments. Both copies hold the same record; readers keep the first one they meet
(segments in name order, records in file order).
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.private import fsync_dir

log = logging.getLogger("durable_nb")

Entry = tuple[int, Any]
"""A journaled ``(seq, record)``: the store's records are ``records.Record`` tuples, the
quarantine's are its entries; the journal only needs them to pickle."""

SEGMENT_BYTES = 8 * 1024 * 1024
VERSION = 2
MAGIC = b"\x89DNBJNL\n"
SYNC = b"\xfe\xeb\xd1\xff"

_HEADER_COPY = struct.Struct("<8sHHI")  # magic, version, reserved, salt; then its crc32
_U32 = struct.Struct("<I")
_COPY_BYTES = _HEADER_COPY.size + _U32.size
FILE_HEADER_BYTES = 2 * _COPY_BYTES
_FRAME = struct.Struct("<4sIII")  # sync, length, body crc, header crc
_FRAME_HEAD = struct.Struct("<4sII")  # the part the header crc covers
_V1 = struct.Struct("<II")  # format 1: length, crc32 of the body


# -- reading ------------------------------------------------------------------------


@dataclass
class Damage:
    """A range of a segment's bytes that held no intact record."""

    offset: int
    length: int
    reason: str

    def __str__(self) -> str:
        return f"{self.length} bytes at offset {self.offset}: {self.reason}"


@dataclass
class SegmentScan:
    """What a segment holds: its intact records, its damage and its torn tail.

    ``torn_tail`` is the offset of an incomplete last record (a write cut by a crash,
    never acknowledged), not damage."""

    records: list[Entry] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    torn_tail: int | None = None
    version: int = VERSION


def read_segment(path: Path) -> Iterator[Entry]:
    """Yield every intact (seq, record) of a segment, in file order."""
    yield from scan_segment(path).records


def scan_segment(path: Path) -> SegmentScan:
    """Read a segment of either format, checking each record on its own."""
    with open(path, "rb") as f:
        return scan_bytes(f.read())


def scan_bytes(data: bytes) -> SegmentScan:
    """``scan_segment`` of a segment's bytes."""
    if not data:
        return SegmentScan()
    copies = [_header_copy(data, 0), _header_copy(data, _COPY_BYTES)]
    good = [c for c in copies if c is not None]
    if good:
        version, salt = good[0]
        scan = SegmentScan(version=version)
        if len(data) < FILE_HEADER_BYTES:  # the crash came while the segment was created
            scan.torn_tail = _COPY_BYTES if copies[0] else 0
            return scan
        for i, c in enumerate(copies):
            if c is None:
                scan.damage.append(Damage(i * _COPY_BYTES, _COPY_BYTES,
                                          "damaged file header (its other copy is intact)"))
        if version > VERSION:
            scan.damage.append(Damage(
                0, len(data), f"segment format {version} is newer than this release reads "
                f"({VERSION}): upgrade durable_nb to read it"))
            return scan
        _scan_frames(data, FILE_HEADER_BYTES, salt, scan)
        return scan
    if _v1_frame_ok(data, 0):
        return _scan_v1(data)
    if len(data) < FILE_HEADER_BYTES and _is_header_prefix(data):
        return SegmentScan(torn_tail=0)
    recovered = _recover_salt(data)
    if recovered is not None:
        scan = SegmentScan(damage=[Damage(0, FILE_HEADER_BYTES,
                                          "damaged file header (salt recovered from records)")])
        _scan_frames(data, FILE_HEADER_BYTES, recovered, scan)
        return scan
    if _looks_like_header(data):
        return SegmentScan(damage=[Damage(
            0, len(data), "damaged file header: no record of this segment can be verified")])
    return _scan_v1(data)


def _header_copy(data: bytes, pos: int) -> tuple[int, int] | None:
    """(version, salt) of the header copy at ``pos``, if it is intact."""
    if len(data) < pos + _COPY_BYTES:
        return None
    magic, version, _, salt = _HEADER_COPY.unpack_from(data, pos)
    (crc,) = _U32.unpack_from(data, pos + _HEADER_COPY.size)
    if magic != MAGIC or zlib.crc32(data[pos:pos + _HEADER_COPY.size]) != crc:
        return None
    return version, salt


def _is_header_prefix(data: bytes) -> bool:
    """Whether ``data`` could be the beginning of a header cut short by a crash."""
    if not data.startswith(MAGIC[: len(data)]):
        return False
    first = data[:_COPY_BYTES]
    return data[_COPY_BYTES:] == first[: max(0, len(data) - _COPY_BYTES)]


def _looks_like_header(data: bytes) -> bool:
    """Whether at least half the magic is in place in either copy of the header."""
    return any(sum(a == b for a, b in zip(data[pos:pos + 8], MAGIC, strict=False)) >= 4
               for pos in (0, _COPY_BYTES))


def _recover_salt(data: bytes) -> int | None:
    """The salt of a segment whose two header copies are damaged, if a record confirms one
    of the salt fields (a frame header checks out with it)."""
    if len(data) < FILE_HEADER_BYTES:
        return None
    salts = {_U32.unpack_from(data, pos + 12)[0] for pos in (0, _COPY_BYTES)}
    pos = data.find(SYNC, FILE_HEADER_BYTES)
    while 0 <= pos and pos + _FRAME.size <= len(data):
        _, _, _, hcrc = _FRAME.unpack_from(data, pos)
        for salt in salts:
            if zlib.crc32(data[pos:pos + _FRAME_HEAD.size], salt) == hcrc:
                return salt
        pos = data.find(SYNC, pos + 1)
    return None


def _scan_frames(data: bytes, pos: int, salt: int, scan: SegmentScan) -> None:
    """Collect the records of format 2 from ``pos``, resynchronising after damage."""
    view = memoryview(data)
    end_of_data = len(data)
    bad: tuple[int, str] | None = None  # start and reason of the current damaged run
    while pos < end_of_data:
        item, end, reason = _frame_at(data, view, pos, salt)
        if item is not None:
            if bad is not None:
                scan.damage.append(Damage(bad[0], pos - bad[0], bad[1]))
                bad = None
            scan.records.append(item)
            pos = end
            continue
        if bad is None:
            bad = (pos, reason)
        nxt = data.find(SYNC, pos + 1)
        pos = nxt if nxt >= 0 else end_of_data
    if bad is not None:
        if _is_torn(data, bad[0], salt):
            scan.torn_tail = bad[0]
        else:
            scan.damage.append(Damage(bad[0], end_of_data - bad[0], bad[1]))


def _frame_at(data: bytes, view: memoryview, pos: int,
              salt: int) -> tuple[Entry | None, int, str]:
    """(record, end, "") for an intact frame at ``pos``, else (None, 0, why not)."""
    if not data.startswith(SYNC, pos):
        return None, 0, "no record frame here (unexpected bytes)"
    if pos + _FRAME.size > len(data):
        return None, 0, "incomplete record header"
    _, length, bcrc, hcrc = _FRAME.unpack_from(data, pos)
    if zlib.crc32(view[pos:pos + _FRAME_HEAD.size], salt) != hcrc:
        return None, 0, "bad record header checksum"
    end = pos + _FRAME.size + length
    if end > len(data):
        return None, 0, "record runs past the end of the segment"
    body = view[pos + _FRAME.size:end]
    if zlib.crc32(body, salt) != bcrc:
        return None, 0, "bad record checksum"
    item, reason = _unpickle(body)
    return item, end, reason


def _unpickle(body) -> tuple[Entry | None, str]:
    try:
        item = pickle.loads(body)
    except Exception as e:  # checksums match, so this is not damage of the bytes
        return None, f"record checks out but does not unpickle: {e!r}"
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int)):
        return None, "record checks out but is not a (seq, record) pair"
    return item, ""


def _is_torn(data: bytes, pos: int, salt: int) -> bool:
    """Whether the bytes from ``pos`` to the end (no intact record among them) are a write
    cut short: a frame's beginning, possibly followed by zeros (some filesystems extend
    a file before its data reaches the disk), or zeros only."""
    rest = data[pos:].rstrip(b"\0")
    if len(rest) < len(SYNC):
        return SYNC.startswith(rest)
    if not rest.startswith(SYNC):
        return False
    if len(rest) < _FRAME.size:
        return True
    _, length, _, hcrc = _FRAME.unpack_from(rest, 0)
    if zlib.crc32(rest[:_FRAME_HEAD.size], salt) != hcrc:
        return False
    return _FRAME.size + length > len(rest)


def _v1_frame_ok(data: bytes, pos: int) -> bool:
    if pos + _V1.size > len(data):
        return False
    length, crc = _V1.unpack_from(data, pos)
    end = pos + _V1.size + length
    return end <= len(data) and zlib.crc32(memoryview(data)[pos + _V1.size:end]) == crc


def _scan_v1(data: bytes) -> SegmentScan:
    """Format 1 has no sync markers: read up to the first bad record, report the rest."""
    scan = SegmentScan(version=1)
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        item, reason, end = None, "", len(data) + 1
        if pos + _V1.size <= len(data):
            length, crc = _V1.unpack_from(data, pos)
            end = pos + _V1.size + length
        if end <= len(data):
            body = view[pos + _V1.size:end]
            if zlib.crc32(body) != crc:
                reason = "bad record checksum"
            else:
                item, reason = _unpickle(body)
        if item is not None:
            scan.records.append(item)
            pos = end
            continue
        # Format 1 cannot tell a torn write from a damaged length: an incomplete record,
        # or zeros only, is taken for a torn tail, as earlier releases did.
        if not reason or not data[pos:].strip(b"\0"):
            scan.torn_tail = pos
        else:
            scan.damage.append(Damage(pos, len(data) - pos, reason + (
                "; format 1 has no sync markers, so the records after it cannot be found")))
        return scan
    return scan


# -- writing ------------------------------------------------------------------------


class Encoded(bytes):
    """Framed records as ``encode`` makes them, with the salt they were framed for and
    their pickled bodies (so a journal can re-frame them for another segment without
    pickling again)."""

    salt: int
    bodies: list[bytes]


def _new_salt() -> int:
    return int.from_bytes(os.urandom(4), "little")


# The salt the most recently active journal of this process writes with next, used by
# ``encode`` when no salt is given; a journal re-frames data made for another salt.
_salt_hint = _new_salt()


def _frame(bodies: list[bytes], salt: int) -> Encoded:
    crc32, head, u32 = zlib.crc32, _FRAME_HEAD.pack, _U32.pack
    chunks: list[bytes] = []
    for body in bodies:
        h = head(SYNC, len(body), crc32(body, salt))
        chunks += (h, u32(crc32(h, salt)), body)
    out = Encoded(b"".join(chunks))
    out.salt, out.bodies = salt, bodies
    return out


def encode(batch: list[Entry], salt: int | None = None) -> bytes:
    """The bytes of a batch of (seq, record) as they go into a segment with ``salt``
    (by default the one this process's journal writes with next)."""
    dumps, proto = pickle.dumps, pickle.HIGHEST_PROTOCOL
    return _frame([dumps(item, protocol=proto) for item in batch],
                  _salt_hint if salt is None else salt)


def file_header(salt: int, version: int = VERSION) -> bytes:
    """The header a segment of ``version`` with ``salt`` starts with."""
    copy = _HEADER_COPY.pack(MAGIC, version, 0, salt)
    copy += _U32.pack(zlib.crc32(copy))
    return copy + copy


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("seg-*.jnl"))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Journal:
    """Segment files of checksummed, framed pickles of (seq, record)."""

    def __init__(self, folder: Path, first_seq: int):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.seq = first_seq
        self.durable_seq = first_seq  # the last seq written and synced
        self._buffer: list[Entry] = []
        self._fd: int | None = None
        self._size = 0
        self._salt = 0
        self._next_salt = _new_salt()
        self._segment_no = max((int(p.stem[4:]) for p in segments(folder)), default=0)
        self._segment_max: dict[Path, int] = {}
        self._path: Path | None = None
        self._lock = threading.Lock()  # _segment_max: written by the syncing thread
        self._write_lock = threading.Lock()  # one write at a time
        self._publish_salt()

    def append(self, records: Iterable[Any]) -> int:
        """Buffer records (not durable until ``commit``); returns the last sequence number.

        A record that is a tuple subclass (``records.Insert`` ...) is buffered as a plain
        tuple: pickled, a NamedTuple names its class, and the journal's bytes stay those of
        plain tuples, whatever built them."""
        for rec in records:
            self.seq += 1
            if type(rec) is not tuple and isinstance(rec, tuple):
                rec = tuple(rec)
            self._buffer.append((self.seq, rec))
        return self.seq

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def take(self) -> list[Entry]:
        """The buffered records, for ``write`` (possibly in another thread)."""
        batch, self._buffer = self._buffer, []
        return batch

    def requeue(self, batch: list[Entry]) -> None:
        """Put back a batch whose write failed, before what was buffered since, so the
        next write holds it again (same seqs) and records stay in seq order."""
        self._buffer[:0] = batch

    def commit(self) -> list[Entry]:
        """Write and fdatasync everything buffered; returns the records made durable."""
        return self.write(self.take())

    def encode(self, batch: list[Entry]) -> bytes:
        """``encode(batch)`` for the segment the next write goes to."""
        return encode(batch, self._target_salt())

    def write(self, batch: list[Entry]) -> list[Entry]:
        """Append ``batch`` and fdatasync it; returns it."""
        return self.write_encoded(batch, self.encode(batch))

    def write_encoded(self, batch: list[Entry], data: bytes) -> list[Entry]:
        """Append ``data`` (``encode(batch)``) and fdatasync it; returns ``batch``.

        If the write or the sync fails, the segment is cut back to its size before this
        batch and the error is raised: the caller may write the same batch again. If the
        cut fails too, the next write goes to a new segment."""
        if not batch:
            return batch
        with self._write_lock:
            fd, path = self._fd, self._path
            if fd is None or path is None or self._size > SEGMENT_BYTES:
                fd, path = self._open_segment()
            if getattr(data, "salt", None) != self._salt:
                bodies = getattr(data, "bodies", None)
                data = _frame(bodies, self._salt) if bodies else encode(batch, self._salt)
            start = self._size
            try:
                _write_all(fd, data)
                os.fdatasync(fd)
            except BaseException:
                self._roll_back(fd, start)
                raise
            self._size = start + len(data)
            last = batch[-1][0]
            self.durable_seq = max(self.durable_seq, last)
            with self._lock:
                self._segment_max[path] = max(self._segment_max.get(path, 0), last)
            self._publish_salt()
        return batch

    def _target_salt(self) -> int:
        """The salt of the segment the next write goes to."""
        if self._fd is None or self._size > SEGMENT_BYTES:
            return self._next_salt
        return self._salt

    def _publish_salt(self) -> None:
        global _salt_hint
        _salt_hint = self._target_salt()

    def _roll_back(self, fd: int, size: int) -> None:
        """Cut the segment (open as ``fd``) back to ``size`` after a failed write, or
        abandon it."""
        try:
            os.ftruncate(fd, size)
            os.fdatasync(fd)
        except OSError as e:
            log.warning("journal: could not cut %s back after a failed write (%s); it may end "
                        "with part of that batch, and the next write starts a new segment",
                        self._path, e)
            self._close_fd()
            self._path = None  # the abandoned segment is pruned like a finished one
            self._publish_salt()

    def _open_segment(self) -> tuple[int, Path]:
        """Start a new segment: its header is durable, and so is its directory entry.
        Returns its file descriptor and path."""
        self._close_fd()
        salt = self._next_salt
        while True:
            self._segment_no += 1
            path = self.folder / f"seg-{self._segment_no:09d}.jnl"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
                break
            except FileExistsError:
                continue
        header = file_header(salt)
        try:
            _write_all(fd, header)
            os.fdatasync(fd)
            fsync_dir(self.folder)
        except BaseException:
            try:
                os.close(fd)
                path.unlink(missing_ok=True)
            except OSError:
                pass
            raise
        self._fd, self._path, self._salt, self._size = fd, path, salt, len(header)
        self._next_salt = _new_salt()
        with self._lock:
            self._segment_max[path] = self.durable_seq
        return fd, path

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def finished_segments(self, ingested_seq: int) -> list[Path]:
        """Segments (not the current one) whose every record is ingested, forgotten here."""
        with self._lock:
            done = [p for p, mx in self._segment_max.items()
                    if mx <= ingested_seq and p != self._path]
            for p in done:
                del self._segment_max[p]
        return done

    def close(self) -> None:
        with self._write_lock:
            self._close_fd()
