"""A cell's namespace as content-addressed pieces, so a checkpoint costs what changed.

Each variable is pickled with protocol 5: arrays, DataFrames and Arrow tables hand over
their memory as out-of-band buffers, not copied. The small pickle and every ``PIECE``-sized
slice of each buffer are hashed with xxh3-128 (memory speed); a piece already stored is
not written again. ``take`` hands each new piece to ``on_new`` as soon as it is hashed:
the worker writes the large ones as files (``piecefiles``), so gigabytes never cross the
engine's socket; the engine journals the checkpoint's rows only once they are durable
(see ``core.checkpoints``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import pickle
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from ..core.checkpoints import (
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


@dataclass
class Pickled:
    """The namespace pickled (buffers out of band, not copied), before any hashing."""

    values: dict[str, tuple[memoryview, list[memoryview]]]
    sizes: dict[str, int]  # variable -> bytes

    @property
    def size(self) -> int:
        return sum(self.sizes.values())


def pickled(variables: dict[str, Any], statement: int) -> Pickled:
    """Pickle ``variables`` with protocol 5; sizes are known before anything is hashed."""
    values = {name: _pickle(name, value, statement) for name, value in variables.items()}
    return Pickled(values, {n: len(s) + sum(len(b) for b in bufs)
                            for n, (s, bufs) in values.items()})


def take(variables: dict[str, Any] | Pickled, stored: set[str], statement: int = 0,
         on_new: Callable[[str, memoryview], None] | None = None) -> Snapshot:
    """Hash the pickled ``variables``; pieces whose hash is in ``stored`` are not new.
    ``on_new`` hears of each new piece as soon as it is hashed (to write it meanwhile)."""
    p = variables if isinstance(variables, Pickled) else pickled(variables, statement)
    snap = Snapshot(sizes=dict(p.sizes))
    # smallest first: a replaced column is a small block beside the large unchanged one,
    # so its pieces reach ``on_new`` (and the disk) while the rest is still being hashed
    jobs = sorted(((len(b), name, i) for name, (_, bufs) in p.values.items()
                   for i, b in enumerate(bufs)), key=lambda j: j[0])
    phases = {(name, i): phase(b) for name, (_, bufs) in p.values.items()
              for i, b in enumerate(bufs)}
    hashed: dict[tuple[str, int], list[str]] = {}
    for _, name, i in jobs:
        hashed[name, i] = _pieces(p.values[name][1][i], phases[name, i], stored, snap, on_new)
    for name, (small, bufs) in p.values.items():
        snap.entries[name] = {
            "p": _pieces(small, 0, stored, snap, on_new), "s": len(small),
            "b": [hashed[name, i] for i in range(len(bufs))],
            "n": [len(b) for b in bufs], "o": [phases[name, i] for i in range(len(bufs))]}
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


def _pieces(data: memoryview, phase: int, stored: set[str], snap: Snapshot,
            on_new: Callable[[str, memoryview], None] | None) -> list[str]:
    """Hash ``data`` in pieces that end where its memory address is a multiple of PIECE
    (``phase``: the start's address modulo PIECE): a value that is a view of another, as
    the blocks pandas splits a DataFrame into when a column is replaced, cuts the shared
    memory at the same places, so its unchanged pieces keep their hashes."""
    cuts = [0, *range((PIECE - phase) % PIECE or PIECE, len(data), PIECE), len(data)]
    pieces = [data[at:end] for at, end in zip(cuts, cuts[1:], strict=False)]
    hashes = list(hasher().map(piece_hash, pieces)) if len(pieces) > 2 else \
        [piece_hash(p) for p in pieces]
    for h, piece in zip(hashes, pieces, strict=True):
        if h not in stored and h not in snap.new:
            snap.new[h] = piece
            if on_new is not None:
                on_new(h, piece)
    return hashes


@functools.cache
def hasher() -> ThreadPoolExecutor:
    """Threads that hash (or fsync) pieces side by side (xxhash lets go of the GIL while
    it hashes)."""
    return ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                              thread_name_prefix="durable-hash")


def check_size(sizes: dict[str, int], statement: int, limit: int) -> None:
    """Refuse a checkpoint over a fixed ``--max-checkpoint-mb`` limit (0: none)."""
    total = sum(sizes.values())
    if not limit or total <= limit:
        return
    largest = sorted(sizes.items(), key=lambda p: -p[1])[:3]
    listing = ", ".join(f"'{n}' {fmt_size(b)}" for n, b in largest)
    raise PayloadTooLarge(
        f"the checkpoint after statement {statement} is {fmt_size(total)}, over the "
        f"limit of {fmt_size(limit)}; largest variables: {listing}. Delete what you no "
        "longer need (del name), keep large data in files, or raise the limit with "
        "`--max-checkpoint-mb`.")


def room_problem_for(need: int, statement: int, blob_dir: str, limit: int) -> str | None:
    """Why ``need`` new bytes cannot be written without filling the disk, if so."""
    if not need:
        return None
    try:
        free = free_bytes(os.path.dirname(blob_dir) or ".")
    except OSError:
        return None  # cannot tell: the write itself reports a full disk
    return room_problem(statement, need, free, limit)


def check_room(snap: Snapshot, statement: int, blob_dir: str, limit: int) -> None:
    """Refuse, before writing anything, new pieces that would fill the disk."""
    problem = room_problem_for(snap.new_bytes(), statement, blob_dir, limit)
    if problem:
        raise PayloadTooLarge(problem)
