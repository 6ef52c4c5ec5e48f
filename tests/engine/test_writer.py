"""engine.writer: group commit (one sync per loop turn) and writes refused while the
journal cannot write."""

from __future__ import annotations

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
