"""The engine <-> worker framing over a real socket pair: the worker's blocking end and the
engine's asyncio end read each other's length-prefixed messages."""

import asyncio
import socket
import threading

import pytest

from durable_nb.core.protocol import SyncChannel, encode, read_message


def test_messages_round_trip_between_two_sync_ends():
    a, b = socket.socketpair()
    with a, b:
        left, right = SyncChannel(a), SyncChannel(b)
        left.send({"op": "hello", "pid": 1})
        left.send({"op": "log", "lines": ["é", "x" * 10]})
        assert right.recv() == {"op": "hello", "pid": 1}
        assert right.recv() == {"op": "log", "lines": ["é", "x" * 10]}


def test_a_message_larger_than_the_socket_buffer_arrives_whole():
    a, b = socket.socketpair()
    big = {"op": "checkpoint", "blobs": {"h": bytes(range(256)) * 40_000}}  # ~10 MB
    with a, b:
        sender = threading.Thread(target=SyncChannel(a).send, args=(big,))
        sender.start()
        got = SyncChannel(b).recv()
        sender.join(10)
    assert got == big


def test_recv_raises_eof_when_the_other_end_closes_mid_message():
    a, b = socket.socketpair()
    with b:
        a.sendall(encode({"op": "done"})[:-3])  # a frame cut short
        a.close()
        with pytest.raises(EOFError, match="closed"):
            SyncChannel(b).recv()


def test_the_asyncio_end_reads_what_the_worker_end_sends():
    a, b = socket.socketpair()

    async def engine_side() -> list[dict]:
        reader, writer = await asyncio.open_connection(sock=b)
        got = [await read_message(reader), await read_message(reader)]
        writer.write(encode({"ok": True, "re": 1}))
        await writer.drain()
        with pytest.raises(asyncio.IncompleteReadError):
            await read_message(reader)  # the worker closed its end
        writer.close()
        return got

    worker = SyncChannel(a)
    worker.send({"op": "hello", "pid": 7})
    worker.send({"op": "step", "output": b"\x00\x01"})
    replies: list[dict] = []

    def worker_reads() -> None:
        replies.append(worker.recv())
        a.close()

    t = threading.Thread(target=worker_reads)
    t.start()
    got = asyncio.run(engine_side())
    t.join(10)
    assert got == [{"op": "hello", "pid": 7}, {"op": "step", "output": b"\x00\x01"}]
    assert replies == [{"ok": True, "re": 1}]
