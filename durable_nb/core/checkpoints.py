"""The manifest of a cell's checkpoint, and how a variable is put back together from it.

A manifest is the JSON of a ``checkpoints`` row: ``{"vars": {name: entry}, "counts": ...,
"seq": ..., "total": ...}``. An entry is either the hash of one blob holding the whole
pickled value (databases of schema 3 and 4), or a dict for a value pickled with protocol 5
and out-of-band buffers (``worker.snapshot``)::

    {"p": [hashes of the pickle's pieces], "s": pickle size,
     "b": [[hashes of a buffer's pieces], ...], "n": [buffer sizes]}

A piece is at most ``PIECE`` bytes and named by the xxh3-128 hash of its bytes, so an
unchanged piece of a large array or DataFrame is stored once however many checkpoints
refer to it. Pieces of at least ``EXTERNAL_BLOB_BYTES`` are files in ``<db>.blobs/``,
written by the worker (durable before the checkpoint's rows are journaled); smaller ones
are rows of the ``blobs`` table.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import xxhash

PIECE = 4 << 20  # bytes: one changed column of a DataFrame rewrites about its own size
# the variable in which a cell's checkpoint keeps which variables held which resources
# (``worker.resources``): a resume makes them again; never listed nor brought back
RESOURCE_BINDINGS = "__durable_resources__"
EXTERNAL_BLOB_BYTES = 1 << 20  # pieces this large are files, not rows of the journal
# free disk space a checkpoint may not take: the store's reserve and room for its journal
DISK_MARGIN = 64 * 1024 * 1024


class CorruptCheckpoint(Exception):
    """A stored piece of a checkpoint is missing or does not hold what was written."""


def piece_hash(data: Any) -> str:
    """The name of a piece: the xxh3-128 hash of its bytes (32 hex digits)."""
    return xxhash.xxh3_128_hexdigest(data)


def normal(entry: Any) -> dict:
    """An entry in the dict form (an old entry is one piece holding the whole pickle)."""
    if isinstance(entry, str):
        return {"p": [entry], "s": None, "b": [], "n": []}
    return entry


def entry_blobs(entry: Any) -> list[str]:
    """The blob hashes one variable's entry refers to."""
    e = normal(entry)
    out = list(e["p"])
    for pieces in e.get("b", ()):
        out.extend(pieces)
    return out


def manifest_blobs(variables: Mapping[str, Any]) -> set[str]:
    """The blob hashes a manifest's ``vars`` refer to."""
    out: set[str] = set()
    for entry in variables.values():
        out.update(entry_blobs(entry))
    return out


def referenced_blobs(manifests: Iterable[str]) -> set[str]:
    """The blob hashes referred to by checkpoint rows' ``manifest`` JSON texts."""
    out: set[str] = set()
    for text in manifests:
        out |= manifest_blobs(json.loads(text).get("vars", {}))
    return out


# A reader fills ``into`` (exactly its length) with the bytes of the piece named ``h``.
Reader = Callable[[str, memoryview], None]


def load(name: str, entry: Any, read: Reader, sizes: Mapping[str, int],
         placed: list[tuple[bytearray, int]] | None = None) -> Any:
    """The value of variable ``name`` from its entry: each buffer is filled in place from
    its pieces (no copy beyond the read) and handed to ``pickle.loads`` out of band.
    ``sizes`` gives each piece's size (the ``blobs`` rows); ``placed`` collects each
    buffer with the phase it had when it was taken (see ``worker.snapshot``)."""
    e = normal(entry)
    small = _gather(name, e["p"], read, sizes)
    phases = e.get("o") or [0] * len(e.get("b", ()))
    buffers = [_gather(name, pieces, read, sizes) for pieces in e.get("b", ())]
    if placed is not None:
        placed.extend(zip(buffers, phases, strict=True))
    return pickle.loads(small, buffers=buffers)


def _gather(name: str, pieces: list[str], read: Reader, sizes: Mapping[str, int]) -> bytearray:
    try:
        total = sum(sizes[h] for h in pieces)
    except KeyError as exc:
        raise CorruptCheckpoint(f"variable '{name}': stored piece {exc.args[0]} is missing "
                                "from the database") from None
    out = bytearray(total)
    view = memoryview(out)
    starts = [0]
    for h in pieces[:-1]:
        starts.append(starts[-1] + sizes[h])

    def fill(h: str, at: int) -> None:
        part = view[at:at + sizes[h]]
        read(h, part)
        if len(h) == 32 and piece_hash(part) != h:
            raise CorruptCheckpoint(
                f"variable '{name}': stored piece {h} does not hold what was written (the "
                "file or row was changed or damaged on disk)")

    if len(pieces) > 2:  # reads and hashes let go of the GIL: side by side
        list(_pool().map(fill, pieces, starts))
    else:
        for h, at in zip(pieces, starts, strict=True):
            fill(h, at)
    return out


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                              thread_name_prefix="durable-read")


def file_reader(blob_dir: str | os.PathLike, inline: Mapping[str, bytes]) -> Reader:
    """A reader taking small pieces from ``inline`` and the others from their files."""
    def read(h: str, into: memoryview) -> None:
        data = inline.get(h)
        if data is not None:
            into[:] = data
            return
        path = os.path.join(blob_dir, h)
        try:
            with open(path, "rb", buffering=0) as f:
                got = 0
                while got < len(into):
                    n = f.readinto(into[got:])
                    if not n:
                        break
                    got += n
        except FileNotFoundError:
            raise CorruptCheckpoint(f"the file of stored piece {h} is missing from "
                                    f"{blob_dir}") from None
        if got != len(into):
            raise CorruptCheckpoint(f"the file of stored piece {h} is shorter than written "
                                    f"({got} of {len(into)} bytes)")
    return read


def free_bytes(folder: str | os.PathLike) -> int:
    """Free space (for this user) on the disk that holds ``folder``."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def room_problem(statement: int, need: int, free: int, fixed_limit: int) -> str | None:
    """Why ``need`` new bytes of a checkpoint cannot be stored without filling the disk, if
    so: they may take the free space less a margin, and at most half of it when no fixed
    limit is set (``--max-checkpoint-mb 0``), leaving room for what comes next."""
    from .serial import fmt_size

    room = max(0, free - DISK_MARGIN)
    if not fixed_limit:
        room //= 2
    if need <= room:
        return None
    share = "half of " if not fixed_limit else ""
    return (f"the checkpoint after statement {statement} adds {fmt_size(need)} of new "
            f"values, more than {share}the free space on the disk that holds the database "
            f"({fmt_size(free)} free, {fmt_size(DISK_MARGIN)} of it kept for the store); "
            "nothing of it was stored, and earlier checkpoints are intact. Free disk space "
            "and resume the run, or delete what the cell no longer needs (del name) or mark "
            "large variables --transient.")
