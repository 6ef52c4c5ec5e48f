"""Where attempts running on Dask connect back to the engine.

A TCP server (TLS when the engine has a certificate) on ``executor_bind``, loopback unless
told otherwise. A connection must first prove itself: its first frame is a small JSON
hello naming its slot and that slot's token (compared in constant time); nothing from an
unauthenticated peer is unpickled, a hello larger than ``MAX_HELLO`` or later than
``HELLO_TIMEOUT`` closes the connection, and a token works for one connection only. After
the hello the channel carries the frames of ``core.protocol``, as a local worker's socket
pair does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.auth import same_token
from ..core.config import EngineConfig
from ..core.protocol import FRAME_HEADER, encode, keepalive
from .processes import _Channel

if TYPE_CHECKING:
    from .dask_pool import DaskPool, DaskSlot

MAX_HELLO = 4096
HELLO_TIMEOUT = 10.0


class AttemptListener:
    """Accepts the connections of Dask attempts and hands each to its slot."""

    def __init__(self, pool: DaskPool, config: EngineConfig):
        self.pool = pool
        self.config = config
        self.expected: dict[str, DaskSlot] = {}  # slot id -> slot whose task may connect
        self.address: tuple[str, int] | None = None  # what the tasks connect to
        self.cert: str | None = None  # the PEM the tasks trust, when TLS is on
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        host, port = self.config.executor_bind
        tls = None
        if self.config.executor_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.config.executor_cert, self.config.executor_key or None)
            self.cert = Path(self.config.executor_cert).read_text()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Incoming(self), host, port, ssl=tls)
        bound = self._server.sockets[0].getsockname()
        public = host if host not in ("", "0.0.0.0", "::") else \
            route_address(self.config.dask_scheduler)
        self.address = (public, int(bound[1]))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def expect(self, slot: DaskSlot) -> None:
        self.expected[slot.id] = slot

    def forget(self, slot: DaskSlot) -> None:
        if self.expected.get(slot.id) is slot:
            del self.expected[slot.id]

    def admit(self, hello: Any) -> tuple[DaskSlot | None, str]:
        """The slot a hello proves itself for, or None and why it is refused."""
        if not isinstance(hello, dict) or hello.get("op") != "hello":
            return None, "the first message must be a hello"
        slot = self.expected.get(str(hello.get("slot")))
        token = hello.get("token")
        if slot is None or not isinstance(token, str) or not same_token(token, slot.token):
            return None, "unknown attempt or wrong token"
        if slot.transport is not None:  # Dask runs the task again: its worker was lost
            self.pool.lose(slot, 1, f"Dask started the attempt's task again on "
                                    f"{hello.get('worker')}, because the worker it ran on was "
                                    "lost (its heartbeat or connection to the scheduler)")
            return None, "this attempt already ran elsewhere"
        return slot, ""

    # what _Channel calls once the connection is a slot's
    def _received(self, slot: DaskSlot, msg: dict) -> None:
        self.pool.received(slot, msg)

    def _closed(self, slot: DaskSlot) -> None:
        running = slot.run is not None
        self.pool.lose(slot, 1 if running else 0, "the channel to its Dask task closed while "
                       "the attempt ran (the Dask worker died or lost the network)"
                       if running else "")


class _Incoming(_Channel):
    """One connection: a JSON hello first, then the frames of ``core.protocol``."""

    def __init__(self, listener: AttemptListener):
        super().__init__(listener, None)  # type: ignore[arg-type]
        self.listener = listener
        self.transport: asyncio.WriteTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            keepalive(sock)
        self._timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        if self.worker is not None:
            super().data_received(data)
            return
        self.buf += data
        size = FRAME_HEADER.size
        if len(self.buf) < size:
            return
        n = FRAME_HEADER.unpack_from(self.buf)[0]
        if n > MAX_HELLO:
            self._refuse("hello too large")
            return
        if len(self.buf) < size + n:
            return
        try:
            hello = json.loads(bytes(self.buf[size:size + n]))
        except ValueError:
            hello = None
        rest = bytes(self.buf[size + n:])
        self.buf.clear()
        slot, why = self.listener.admit(hello)
        if slot is None:
            self._refuse(why)
            return
        if self._timer is not None:
            self._timer.cancel()
        self.worker = slot
        assert self.transport is not None
        self.listener.forget(slot)
        self.listener.pool.connected(slot, self.transport, hello)
        if rest:
            super().data_received(rest)

    def _refuse(self, why: str) -> None:
        if self.transport is not None:
            self.transport.write(encode({"op": "refused", "why": why}))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.worker is not None:
            self.listener._closed(self.worker)  # type: ignore[arg-type]


def route_address(scheduler: str) -> str:
    """The address Dask workers reach this engine at when it listens on every interface:
    the one this machine uses towards the scheduler."""
    target = scheduler.split("://")[-1].rsplit(":", 1)[0].strip("[]") or "127.0.0.1"
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((target, 9))
        return str(s.getsockname()[0])
    return socket.gethostname()
