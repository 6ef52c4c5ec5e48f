"""engine.writer: group commit (one sync per loop turn; while other attempts execute,
one sync on the journal thread for everything that arrived during the previous one), no
reply before its records are durable, and writes refused while the journal cannot write."""

from __future__ import annotations

import asyncio
import errno
import threading

import pytest
from inprocess import run_async

from durable_nb.core.errors import StoreUnavailable
from durable_nb.store.records import Insert
from durable_nb.testing import EngineHarness


@run_async
async def test_records_of_one_loop_turn_go_out_in_one_sync(tmp_path):
    async with EngineHarness(tmp_path) as h:
        store, writer = h._engine.store, h._engine.writer
        batches: list[int] = []
        write_batch = store.write_batch

        def counting(batch, data=None):  # a spy on the real write
            batches.append(len(batch))
            return write_batch(batch, data)

        store.write_batch = counting  # type: ignore[method-assign]
        done: list[int] = []
        for i in range(3):
            writer.write([Insert("events", {"key": f"k{i}", "data": None, "sent_at": 0.0})],
                         lambda i=i: done.append(i))
        assert done == [], "nothing is acknowledged before it is durable"
        await writer.write_durable([])
        assert batches == [3] and done == [0, 1, 2]
        rows = await h.rows("SELECT key FROM events ORDER BY key")
        assert [r["key"] for r in rows] == ["k0", "k1", "k2"]


@run_async
async def test_a_write_request_is_refused_at_once_while_the_journal_cannot_write(tmp_path):
    async with EngineHarness(tmp_path) as h:
        store = h._engine.store
        store.write_problem = "the disk is full"  # what the store sets on ENOSPC
        with pytest.raises(StoreUnavailable, match="refuses writes for now: the disk is full"):
            h._engine.writer.check_writable()
        store.write_problem = None
        h._engine.writer.check_writable()


def _event(i: int) -> Insert:
    return Insert("events", {"key": f"k{i}", "data": None, "sent_at": 0.0})


class _Gate:
    """A spy on the store's real ``write_batch``: records each batch's size and thread,
    and holds the first write until ``open`` (a sync that takes its time)."""

    def __init__(self, store, hold_first: bool = True, fail_first: OSError | None = None):
        self.store, self.real = store, store.write_batch
        self.batches: list[int] = []
        self.threads: list[int] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail_first = fail_first
        if not hold_first:
            self.gate.set()
        store.write_batch = self  # type: ignore[method-assign]

    def __call__(self, batch, data=None):
        first = not self.batches
        self.batches.append(len(batch))
        self.threads.append(threading.get_ident())
        if first:
            self.entered.set()
            self.gate.wait(10)
            if self.fail_first is not None:
                raise self.fail_first
        return self.real(batch, data)


async def _until(pred, what: str) -> None:
    for _ in range(2000):
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out: {what}")


@run_async
async def test_steps_arriving_during_a_sync_share_the_next_sync(tmp_path):
    async with EngineHarness(tmp_path) as h:
        store, writer = h._engine.store, h._engine.writer
        writer.concurrent = lambda: True  # other attempts execute: syncs are pipelined
        spy = _Gate(store)
        journal = store._journal
        acked: list[tuple[int, int]] = []  # (seq of the record, durable seq at the reply)

        def write(i: int) -> None:
            seq = journal.seq + 1
            writer.write([_event(i)], lambda: acked.append((seq, journal.durable_seq)))

        write(0)
        await _until(spy.entered.is_set, "the first sync started")
        for i in range(1, 6):  # five steps, each in its own loop turn, while it syncs
            write(i)
            await asyncio.sleep(0)
        assert acked == [] and spy.batches == [1], "the loop went on; nothing is durable yet"
        spy.gate.set()
        await writer.write_durable([])
        assert spy.batches == [1, 5], "one fdatasync for everything that arrived meanwhile"
        assert len(acked) == 6 and all(seq <= durable for seq, durable in acked)
        assert threading.get_ident() not in spy.threads, "the syncs ran on the journal thread"
        assert writer.stats()["journal_syncs"] >= 2
        rows = await h.rows("SELECT key FROM events ORDER BY key")
        assert [r["key"] for r in rows] == [f"k{i}" for i in range(6)]


@run_async
async def test_alone_a_small_batch_syncs_on_the_loop(tmp_path):
    async with EngineHarness(tmp_path) as h:
        store, writer = h._engine.store, h._engine.writer
        assert not writer.concurrent(), "no attempt executes"
        spy = _Gate(store, hold_first=False)
        await writer.write_durable([_event(1)])
        assert spy.threads == [threading.get_ident()]


@run_async
async def test_a_sync_that_fails_on_the_journal_thread_acknowledges_nothing(tmp_path):
    async with EngineHarness(tmp_path) as h:
        store, writer = h._engine.store, h._engine.writer
        writer.concurrent = lambda: True
        spy = _Gate(store, fail_first=OSError(errno.EIO, "Input/output error"))
        acked: list[int] = []
        writer.write([_event(0)], lambda: acked.append(0))
        await _until(spy.entered.is_set, "the first sync started")
        waiter = asyncio.ensure_future(writer.write_durable([_event(1)]))
        await asyncio.sleep(0)
        spy.gate.set()
        with pytest.raises(StoreUnavailable):
            await waiter
        assert acked == [] and store.write_problem is not None
        # the writer tries the held batch again, first, WRITE_RETRY later (settle() would
        # wait for the writer, which holds records until then)
        await h.clock.skip(1, lambda: asyncio.sleep(0))
        await _until(lambda: acked == [0], "the held batch written and acknowledged")
        assert spy.batches[-1] == 2, "the held record and the one after it, in one sync"
        rows = await h.rows("SELECT key FROM events ORDER BY key")
        assert [r["key"] for r in rows] == ["k0", "k1"]
