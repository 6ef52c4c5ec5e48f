"""Framing of the engine <-> worker channel: length-prefixed pickles of plain dicts.

Worker to engine: ``hello``, ``step``, ``step_failed``, ``wait``, ``trigger``,
``send_event``, ``log``, ``checkpoint`` and the attempt's end: ``done``, ``failed``,
``suspended``. Engine to worker: ``run``, replies ``{"ok": ...}``, and during a wait
``resolved`` or ``suspend``. ``core.messages`` has a TypedDict for each, with its
fields. Values inside are already cloudpickled bytes, so the engine never unpickles
user objects.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from collections.abc import Mapping
from typing import Any

from .messages import EngineMessage, WorkerMessage

_LEN = struct.Struct("<Q")


def encode(msg: Mapping[str, Any]) -> bytes:
    """One framed message (a TypedDict of ``core.messages`` is a plain dict: the bytes do
    not depend on the type)."""
    body = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


class SyncChannel:
    """The worker's end: blocking send and receive on a socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, msg: WorkerMessage) -> None:
        self.sock.sendall(encode(msg))

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("the engine closed the channel")
            buf += chunk
        return bytes(buf)

    def recv(self) -> EngineMessage:
        """The engine's next message (as the engine sent it: its op says which)."""
        (n,) = _LEN.unpack(self._recv_exact(_LEN.size))
        msg: EngineMessage = pickle.loads(self._recv_exact(n))
        return msg


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The engine's end: read one message (a ``core.messages.WorkerMessage``, which the
    engine checks as it handles it); raises IncompleteReadError at EOF."""
    head = await reader.readexactly(_LEN.size)
    (n,) = _LEN.unpack(head)
    msg: dict[str, Any] = pickle.loads(await reader.readexactly(n))
    return msg
