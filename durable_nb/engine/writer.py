"""Group commit: every state change of the engine is a journal record, durable before the
engine acts on it or acknowledges it.

Pipelined: at the end of a loop turn the buffered records go out in one write + fdatasync;
whatever arrives meanwhile is buffered and goes in the next sync, started as soon as this
one completes. While other attempts execute (they may send steps during a sync), the sync
runs on the journal thread, so the loop goes on reading and handling their messages
meanwhile and one fdatasync serves every step that arrived during the previous one; a
reply goes out only once its records are durable. With a single attempt executing, a small
batch syncs on the loop itself: nothing else would arrive meanwhile, and the hand-off to
the thread and back would only add latency. When the disk refuses (full), nothing in the
refused batch is acknowledged: it is held, written first when the disk takes it again, and
write requests are refused with ``StoreUnavailable`` meanwhile.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..core.errors import StoreUnavailable
from ..store.records import Record
from ..store.store import Store
from .clock import Clock

# Journal batches up to this size are written and synced on the event loop itself while no
# other attempt executes; larger ones (checkpoint blobs, big outputs) always go to the
# journal thread.
INLINE_SYNC_BYTES = 256 * 1024
# Seconds between tries to write a batch the journal refused (a full disk).
WRITE_RETRY = 0.5


def settle(fut: asyncio.Future) -> None:
    """Complete ``fut`` with None unless it already completed (or failed)."""
    if not fut.done():
        fut.set_result(None)


class JournalWriter:
    """Writes the engine's records to the store's journal, batched per loop turn."""

    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped = False
        self._commit_scheduled = False
        self._syncing = False
        self._retry_armed = False
        self._durable_waiters: set[asyncio.Future] = set()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="durable-writer")
        # whether attempts other than the one whose records are buffered may send records
        # during a sync (set by the engine's state): then syncs go to the journal thread
        self.concurrent: Callable[[], bool] = lambda: False
        self.syncs = 0  # batches written and fdatasync'd (one fdatasync each)
        self.records = 0  # records they made durable
        self._syncer = _SyncThread(store)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._syncer.start(loop, self._synced)
        if self.store.write_problem is not None:  # e.g. started on a nearly full disk
            self._arm_retry()

    def write(self, records: list[Record], then: Callable[[], None] | None = None) -> None:
        """Journal ``records``; ``then`` runs on the loop once they are durable."""
        self.store.write(records, then)
        if not self._commit_scheduled and not self._syncing:
            self._commit_scheduled = True
            self._loop().call_soon(self._commit)

    async def write_durable(self, records: list[Record]) -> None:
        """Journal ``records`` and return once they (and all before them) are durable."""
        fut = self._loop().create_future()
        self._durable_waiters.add(fut)
        try:
            self.write(records, lambda: settle(fut))
            await fut
        finally:
            self._durable_waiters.discard(fut)

    def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Run ``fn`` on a thread of the writer (not the journal's: a long task there would
        hold up every step's sync)."""
        return self._loop().run_in_executor(self._thread, fn, *args)

    def stats(self) -> dict:
        """Group commit since start: journal syncs and the records they made durable (for
        ``/health``; records per sync is how many steps one fdatasync served)."""
        return {"journal_syncs": self.syncs, "journal_records": self.records}

    @property
    def syncing(self) -> bool:
        """A batch is being written on the journal thread (the loop hears when it is done)."""
        return self._syncing

    @property
    def idle(self) -> bool:
        """Nothing is buffered and no sync is in flight."""
        return not self.store.pending and not self._syncing

    def check_writable(self) -> None:
        """Refuse a write request at once while the journal cannot write."""
        if self.store.write_problem is not None:
            raise StoreUnavailable(
                f"the engine refuses writes for now: {self.store.write_problem}. Nothing "
                "acknowledged is lost and reads still work. Free space on that disk; the "
                "engine resumes writing by itself within a second of it.")

    async def close(self) -> None:
        """Flush what is buffered (once the sync in flight is done) and stop the thread."""
        self.stopped = True
        while self._syncing:
            await asyncio.sleep(0.005)
        try:
            self.store.commit()
        except OSError as exc:  # nothing in it was acknowledged
            self.store.hold([], [], exc)
        self._syncer.stop()
        self._thread.shutdown()

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            raise RuntimeError("the journal writer is used before the engine started")
        return self.loop

    def _commit(self) -> None:
        self._commit_scheduled = False
        if self._syncing or not self.store.pending:
            return
        batch, done = self.store.take()
        data = self.store.encode_batch(batch)
        if len(data) <= INLINE_SYNC_BYTES and not self.concurrent():
            # Alone, a small batch syncs right here: handing it to a thread and back costs
            # two wake-ups, and no other attempt would send anything meanwhile.
            try:
                self.store.write_batch(batch, data)
            except OSError as exc:
                self._write_failed(batch, done, exc)
                return
            self._count(batch)
            self.store.committed(batch, done)
            return
        self._syncing = True
        self._syncer.submit(batch, data, done)

    def _synced(self, batch: list, data: bytes, done: list, exc: BaseException | None) -> None:
        """On the loop, once the journal thread wrote ``batch`` (or failed to)."""
        self._syncing = False
        if exc is not None:
            self._write_failed(batch, done, exc)
            return
        self._count(batch)
        self.store.committed(batch, done)
        if self.store.pending and not self._commit_scheduled:
            # at the end of this loop turn, so that the messages read in it join the batch
            self._commit_scheduled = True
            self._loop().call_soon(self._commit)

    def _count(self, batch: list) -> None:
        self.syncs += 1
        self.records += len(batch)

    def _write_failed(self, batch: list, done: list, exc: BaseException) -> None:
        """The journal could not write (a full disk): nothing in ``batch`` is acknowledged.
        It is held and written first when the disk takes it again, tried every
        ``WRITE_RETRY`` s; callers waiting on a write hear why at once."""
        if self.store.hold(batch, done, exc):  # the reserve was released: try again now
            self._loop().call_soon(self._retry_write)
            return
        err = self._unavailable()
        for fut in list(self._durable_waiters):
            if not fut.done():
                fut.set_exception(err)
        self._arm_retry()

    def _arm_retry(self) -> None:
        if not self.stopped and not self._retry_armed:
            self._retry_armed = True
            self.clock.call_at(self.clock.now() + WRITE_RETRY, self._retry_tick)

    def _retry_tick(self) -> None:
        self._retry_armed = False
        self._retry_write()

    def _retry_write(self) -> None:
        """Write what is held; once that works and the disk has room, accept writes."""
        if self.stopped:
            return
        if not self._syncing and self.store.pending:
            self._commit()
        if self.store.write_problem is not None and not self.store.try_restore():
            self._arm_retry()

    def _unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(
            f"{self.store.problem}. This request is not durable: if it changed something, "
            "the change is kept in memory and written when the disk takes it again (lost if "
            "the engine stops first). Nothing acknowledged earlier is lost and reads still "
            "work. Free space there; the engine resumes writing by itself.")


class _SyncThread:
    """The journal thread: writes and fdatasyncs one batch at a time, handed over by the
    loop, and hands each back to the loop's ``synced(batch, data, done, exc)``."""

    def __init__(self, store: Store):
        self.store = store
        self._queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop,
              synced: Callable[[list, bytes, list, BaseException | None], None]) -> None:
        self._loop, self._synced = loop, synced

    def submit(self, batch: list, data: bytes, done: list) -> None:
        if self._thread is None:  # started on first use
            self._thread = threading.Thread(target=self._run, name="durable-journal",
                                            daemon=True)
            self._thread.start()
        self._queue.put((batch, data, done))

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        write, get = self.store.write_batch, self._queue.get
        while (item := get()) is not None:
            batch, data, done = item
            exc: BaseException | None = None
            try:
                write(batch, data)
            except BaseException as e:  # handed to the loop, which holds the batch
                exc = e
            try:
                self._loop.call_soon_threadsafe(self._synced, batch, data, done, exc)
            except RuntimeError:  # the loop closed: the engine stopped without close()
                return
