"""Framing of the engine <-> worker channel: length-prefixed pickles of plain dicts.

Worker to engine: ``hello``, ``step``, ``step_failed``, ``wait``, ``waits_idle``,
``trigger``, ``send_event``, ``log``, ``checkpoint`` and the attempt's end: ``done``,
``failed``, ``suspended``. Engine to worker: ``run``, replies ``{"ok": ...}``, and for a
wait ``resolved`` or ``suspend``. ``core.messages`` has a TypedDict for each, with its
fields. Values inside are already cloudpickled bytes, so the engine never unpickles
user objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import select
import socket
import struct
from collections.abc import Mapping
from typing import Any

from .messages import EngineMessage, WorkerMessage

_LEN = FRAME_HEADER = struct.Struct("<Q")  # a frame: body length, then the body
KEEPALIVE = (10, 5, 3)  # idle seconds, probe interval, probes: a silent peer is gone in ~25 s


def encode(msg: Mapping[str, Any]) -> bytes:
    """One framed message (a TypedDict of ``core.messages`` is a plain dict: the bytes do
    not depend on the type)."""
    body = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


class ChannelLost(BaseException):
    """The engine's end of the channel is gone (the engine died, or it stopped this
    attempt): the attempt must stop at once. A BaseException, so that user code catching
    ``Exception`` does not go on executing steps for a run that is no longer its own."""


class SyncChannel:
    """The worker's end: blocking send and receive on a socket. A receive reads what the
    socket has (up to ``CHUNK``), so a small message costs one system call; bytes past the
    message are kept for the next one."""

    CHUNK = 64 * 1024

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._rest = b""  # received bytes past the last message

    def send(self, msg: WorkerMessage) -> None:
        self.sock.sendall(encode(msg))

    def check(self) -> None:
        """Raise ChannelLost if the engine is known to be gone (called before each step).
        A worker process dies with its engine, so only a remote channel has work here."""

    def ready(self) -> bool:
        """Whether a message, or its start, can be read now without waiting (bytes kept
        from an earlier read, decrypted TLS bytes, or the socket readable)."""
        if self._rest:
            return True
        pending = getattr(self.sock, "pending", None)  # an SSL socket's decrypted bytes
        if pending is not None and pending():
            return True
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def _more(self) -> bytes:
        chunk = self.sock.recv(self.CHUNK)
        if not chunk:
            raise EOFError("the engine closed the channel")
        return chunk

    def recv(self) -> EngineMessage:
        """The engine's next message (as the engine sent it: its op says which)."""
        buf: bytes | bytearray = self._rest
        size = _LEN.size
        while len(buf) < size:
            buf += self._more()
        end = size + _LEN.unpack_from(buf)[0]
        if len(buf) < end:  # the rest of a large message goes straight into its buffer
            whole = bytearray(end)
            whole[:len(buf)] = buf
            view, got = memoryview(whole), len(buf)
            while got < end:
                n = self.sock.recv_into(view[got:])
                if not n:
                    raise EOFError("the engine closed the channel")
                got += n
            buf = whole
        msg: EngineMessage = pickle.loads(memoryview(buf)[size:end])
        self._rest = bytes(buf[end:])
        return msg


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The engine's end: read one message (a ``core.messages.WorkerMessage``, which the
    engine checks as it handles it); raises IncompleteReadError at EOF."""
    head = await reader.readexactly(_LEN.size)
    (n,) = _LEN.unpack(head)
    msg: dict[str, Any] = pickle.loads(await reader.readexactly(n))
    return msg


def keepalive(sock: socket.socket) -> None:
    """TCP keepalive probes, so that a peer whose machine vanished is noticed."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle, interval, count = KEEPALIVE
        for opt, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                           ("TCP_KEEPCNT", count)):
            if hasattr(socket, opt):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
