"""A cell's namespace as content-addressed pieces, so a checkpoint costs what changed.

Each variable is pickled with protocol 5: arrays, DataFrames and Arrow tables hand over
their memory as out-of-band buffers, not copied. The small pickle and every ``PIECE``-sized
slice of each buffer are hashed with xxh3-128 (memory speed); a piece already stored is
not written again. New large pieces are written here, in the worker, straight from the
value's memory into private files beside the database (``tmp``, fsync, rename, then one
fsync of the folder), so gigabytes never cross the engine's socket; the engine journals
the checkpoint's rows only once they are durable (see ``core.checkpoints``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pickle
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from ..core.checkpoints import (
    EXTERNAL_BLOB_BYTES,
    PIECE,
    free_bytes,
    piece_hash,
    room_problem,
)
from ..core.errors import NotPicklable, PayloadTooLarge
from ..core.serial import fmt_size, type_name


@dataclass
class Snapshot:
    """The checkpoint of a namespace: manifest entries and the pieces not yet stored."""

    entries: dict[str, dict] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # variable -> bytes
    new: dict[str, memoryview] = field(default_factory=dict)  # hash -> bytes, not stored yet

    @property
    def size(self) -> int:
        return sum(self.sizes.values())

    def new_bytes(self) -> int:
        return sum(len(v) for v in self.new.values())


def take(variables: dict[str, Any], stored: set[str], statement: int) -> Snapshot:
    """Pickle and hash ``variables``; pieces whose hash is in ``stored`` are not new."""
    snap = Snapshot()
    for name, value in variables.items():
        small, buffers = _pickle(name, value, statement)
        phases = [phase(b) for b in buffers]
        entry: dict = {"p": _pieces(small, 0, stored, snap), "s": len(small),
                       "b": [_pieces(b, o, stored, snap) for b, o in zip(buffers, phases, strict=True)],
                       "n": [len(b) for b in buffers], "o": phases}
        snap.entries[name] = entry
        snap.sizes[name] = len(small) + sum(entry["n"])
    return snap


def _pickle(name: str, value: Any, statement: int) -> tuple[memoryview, list[memoryview]]:
    buffers: list[memoryview] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        try:
            view = buf.raw()  # contiguous memory, no copy
        except BufferError:
            return True  # not contiguous: pickled in band
        buffers.append(view)
        return False

    try:
        small = cloudpickle.dumps(value, protocol=5, buffer_callback=out_of_band)
    except Exception as exc:  # pickling raises many types
        raise NotPicklable(
            f"cannot checkpoint after statement {statement}: variable '{name}' cannot be "
            f"stored: {type_name(value)} — {exc}. To avoid this, re-create '{name}' inside "
            f"the statement that uses it (and del it there), or mark it transient with "
            f"--transient {name} (it is then missing after a resume).") from None
    return memoryview(small), buffers


# Memory that values of a resumed cell were read into: (start, end, shift). A buffer in
# it is cut as if it were where it was taken from (its address + shift), so that the
# first checkpoint after a resume finds its pieces unchanged.
_placed: list[tuple[int, int, int]] = []


def address(buf: memoryview) -> int:
    """Where a buffer starts in memory (0 when that cannot be told)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(buf))
    except (TypeError, ValueError):  # read-only or empty
        pass
    np = sys.modules.get("numpy")  # read-only buffers come from numpy, pandas or Arrow
    if np is None:
        return 0
    try:
        return int(np.frombuffer(buf, np.uint8).__array_interface__["data"][0])
    except (TypeError, ValueError):
        return 0


def remember(placed: list[tuple[bytearray, int]]) -> None:
    """Note where a resume put each restored buffer, and the phase it had when taken."""
    _placed.clear()
    for buf, was in placed:
        if len(buf) > PIECE:
            start = address(memoryview(buf))
            _placed.append((start, start + len(buf), (was - start) % PIECE))


def phase(buf: memoryview) -> int:
    """Where PIECE boundaries fall in ``buf``: its address modulo PIECE, as if restored
    memory were still where it was taken from."""
    at = address(buf)
    for start, end, shift in _placed:
        if start <= at < end:
            return (at + shift) % PIECE
    return at % PIECE


def _pieces(data: memoryview, phase: int, stored: set[str], snap: Snapshot) -> list[str]:
    """Hash ``data`` in pieces that end where its memory address is a multiple of PIECE
    (``phase``: the start's address modulo PIECE): a value that is a view of another, as
    the blocks pandas splits a DataFrame into when a column is replaced, cuts the shared
    memory at the same places, so its unchanged pieces keep their hashes."""
    cuts = [0, *range((PIECE - phase) % PIECE or PIECE, len(data), PIECE), len(data)]
    pieces = [data[at:end] for at, end in zip(cuts, cuts[1:], strict=False)]
    hashes = list(_hasher().map(piece_hash, pieces)) if len(pieces) > 2 else \
        [piece_hash(p) for p in pieces]
    for h, piece in zip(hashes, pieces, strict=True):
        if h not in stored and h not in snap.new:
            snap.new[h] = piece
    return hashes


@functools.cache
def _hasher() -> ThreadPoolExecutor:
    """Threads that hash pieces side by side (xxhash lets go of the GIL while it hashes)."""
    return ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                              thread_name_prefix="durable-hash")


def check_size(snap: Snapshot, statement: int, limit: int) -> None:
    """Refuse a checkpoint over a fixed ``--max-checkpoint-mb`` limit (0: none)."""
    if not limit or snap.size <= limit:
        return
    largest = sorted(snap.sizes.items(), key=lambda p: -p[1])[:3]
    listing = ", ".join(f"'{n}' {fmt_size(b)}" for n, b in largest)
    raise PayloadTooLarge(
        f"the checkpoint after statement {statement} is {fmt_size(snap.size)}, over the "
        f"limit of {fmt_size(limit)}; largest variables: {listing}. Delete what you no "
        "longer need (del name), keep large data in files, or raise the limit with "
        "`--max-checkpoint-mb`.")


def check_room(snap: Snapshot, statement: int, blob_dir: str, limit: int) -> None:
    """Refuse, before writing anything, new pieces that would fill the disk."""
    need = snap.new_bytes()
    if not need:
        return
    try:
        free = free_bytes(os.path.dirname(blob_dir) or ".")
    except OSError:
        return  # cannot tell: the write itself reports a full disk
    problem = room_problem(statement, need, free, limit)
    if problem:
        raise PayloadTooLarge(problem)


def write_files(snap: Snapshot, blob_dir: str, again: Iterable[str] = ()) -> dict[str, int]:
    """Write the new large pieces as private files, durable on return (those in ``again``
    even if a file of theirs seems to be there). Returns {hash: size} of the files; the
    other new pieces are small ones for the engine to journal.

    All pieces are written first and then fsynced side by side, which lets the disk take
    them as one stream (one fsync after another would wait for each in turn)."""
    files = {h: len(v) for h, v in snap.new.items() if len(v) >= EXTERNAL_BLOB_BYTES}
    if not files:
        return files
    if not os.path.isdir(blob_dir):
        os.makedirs(blob_dir, mode=0o700, exist_ok=True)
        _fsync_dir(os.path.dirname(blob_dir) or ".")
    again = set(again)
    todo = [h for h in files
            if h in again or not _present(os.path.join(blob_dir, h), files[h])]
    for at in range(0, len(todo), _BATCH):
        _write_batch(blob_dir, todo[at:at + _BATCH], snap)
    if todo:
        _fsync_dir(blob_dir)
    return files


_BATCH = 64  # pieces open at once (256 MB): far below the limit on open files


def _write_batch(blob_dir: str, hashes: list[str], snap: Snapshot) -> None:
    opened: list[tuple[int, str, str]] = []
    try:
        for h in hashes:
            path = os.path.join(blob_dir, h)
            tmp = f"{path}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            opened.append((fd, tmp, path))
            view = snap.new[h]
            while view:
                view = view[os.write(fd, view):]
        list(_hasher().map(os.fsync, [fd for fd, _, _ in opened]))
        for _fd, tmp, path in opened:
            os.replace(tmp, path)
    except BaseException:
        for _fd, tmp, _ in opened:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    finally:
        for fd, _, _ in opened:
            os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _present(path: str, size: int) -> bool:
    """Whether a piece was written before (by this run or another)."""
    try:
        return os.stat(path).st_size == size
    except FileNotFoundError:
        return False
