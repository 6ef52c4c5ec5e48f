"""Framing of the engine <-> worker channel: length-prefixed pickles of plain dicts.

Worker to engine: ``hello``, ``step``, ``step_failed``, ``wait``, ``trigger``,
``send_event``, ``log``, ``checkpoint`` and the attempt's end: ``done``, ``failed``,
``suspended``. Engine to worker: ``run``, replies ``{"ok": ...}``, and during a wait
``resolved`` or ``suspend``. Values inside are already cloudpickled bytes, so the
engine never unpickles user objects.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct

_LEN = struct.Struct("<Q")


def encode(msg: dict) -> bytes:
    body = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


class SyncChannel:
    """The worker's end: blocking send and receive on a socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, msg: dict) -> None:
        self.sock.sendall(encode(msg))

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("the engine closed the channel")
            buf += chunk
        return bytes(buf)

    def recv(self) -> dict:
        (n,) = _LEN.unpack(self._recv_exact(_LEN.size))
        return pickle.loads(self._recv_exact(n))


async def read_message(reader: asyncio.StreamReader) -> dict:
    """The engine's end: read one message; raises IncompleteReadError at EOF."""
    head = await reader.readexactly(_LEN.size)
    (n,) = _LEN.unpack(head)
    return pickle.loads(await reader.readexactly(n))
