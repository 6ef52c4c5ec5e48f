"""A checkpoint's large pieces as private files beside the database, durable before the
engine journals the rows that refer to them.

Each piece is written from the value's own memory to ``<hash>.<pid>.tmp`` (mode 0600 from
its first byte), then the pieces are fsynced side by side, renamed to their hash, and the
folder fsynced once: the disk takes them as one stream instead of one fsync after another.
``Writer`` does this while the namespace is still being hashed, so writing a changed
column overlaps with hashing the rest; ``write_files`` does it after the fact.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import queue
import threading
from collections.abc import Iterable
from typing import Any

from ..core.checkpoints import EXTERNAL_BLOB_BYTES
from ..core.private import fsync_dir
from .snapshot import Snapshot, hasher

BATCH = 64  # pieces open at once (256 MB): far below the limit on open files


def large(snap: Snapshot) -> dict[str, int]:
    """{hash: size} of the new pieces that are files (the others are database rows)."""
    return {h: len(v) for h, v in snap.new.items() if len(v) >= EXTERNAL_BLOB_BYTES}


def write_files(snap: Snapshot, blob_dir: str, again: Iterable[str] = ()) -> dict[str, int]:
    """Write the new large pieces, durable on return (those in ``again`` even if a file of
    theirs seems to be there). Returns {hash: size} of the files."""
    files = large(snap)
    if not files:
        return files
    folder = Folder(blob_dir)
    again = set(again)
    todo = [h for h in files if h in again or not folder.present(h, files[h])]
    for at in range(0, len(todo), BATCH):
        folder.write_batch([(h, snap.new[h]) for h in todo[at:at + BATCH]])
    if todo:
        fsync_dir(blob_dir)
    return files


class Writer:
    """Writes large pieces in a thread as they are found (``add``); ``finish`` makes them
    durable and raises what went wrong, if anything."""

    def __init__(self, blob_dir: str):
        self.folder = Folder(blob_dir)
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._wrote = False
        self._thread = threading.Thread(target=self._run, name="durable-pieces", daemon=True)
        self._thread.start()

    def add(self, h: str, piece: memoryview) -> None:
        if len(piece) >= EXTERNAL_BLOB_BYTES:
            self._todo.put((h, piece))

    def finish(self) -> None:
        self._todo.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._wrote:
            fsync_dir(self.folder.path)

    def _run(self) -> None:
        """Write each piece as it comes (into the page cache); fsync in batches."""
        batch = Batch(self.folder)
        while True:
            item = self._todo.get()
            try:
                if item is not None and self._error is None and \
                        not self.folder.present(item[0], len(item[1])):
                    batch.write(*item)
                    self._wrote = True
                if batch.opened and (item is None or len(batch.opened) >= BATCH):
                    batch.commit()
            except BaseException as exc:  # handed to ``finish``
                self._error = exc
                batch.abandon()
            if item is None:
                return


class Folder:
    """The folder of piece files, created private (and made durable) when first needed."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.isdir(path):
            os.makedirs(path, mode=0o700, exist_ok=True)
            fsync_dir(os.path.dirname(path) or ".")

    def present(self, h: str, size: int) -> bool:
        """Whether a piece was written before (by this run or another)."""
        try:
            return os.stat(os.path.join(self.path, h)).st_size == size
        except FileNotFoundError:
            return False

    def write_batch(self, pieces: list[tuple[str, memoryview]]) -> None:
        """Write, fsync side by side, then rename each piece to its hash."""
        batch = Batch(self)
        try:
            for h, data in pieces:
                batch.write(h, data)
            batch.commit()
        except BaseException:
            batch.abandon()
            raise


class Batch:
    """Pieces written to temporary files, made durable and named together (``commit``)."""

    def __init__(self, folder: Folder):
        self.folder = folder
        self.opened: list[tuple[int, str, str]] = []  # (fd, tmp path, final path)

    def write(self, h: str, data: memoryview) -> None:
        path = os.path.join(self.folder.path, h)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.opened.append((fd, tmp, path))
        view = data
        while view:
            view = view[os.write(fd, view):]
        start_writeback(fd)

    def commit(self) -> None:
        list(hasher().map(os.fsync, [fd for fd, _, _ in self.opened]))
        for fd, tmp, path in self.opened:
            os.replace(tmp, path)
            os.close(fd)
        self.opened = []

    def abandon(self) -> None:
        for fd, tmp, _ in self.opened:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.opened = []


@functools.cache
def _sync_file_range() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


def start_writeback(fd: int) -> None:
    """Start writing a piece to the disk now (Linux ``sync_file_range``), so the fsync at
    the end of the batch has little left to wait for; a no-op where it is missing."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE: start writeback, do not wait
