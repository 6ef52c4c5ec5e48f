"""The engine's pool of worker subprocesses, each connected by a socket pair.

The engine's end of a channel is an ``asyncio.Protocol``: each chunk the socket gives is
cut into messages on the spot and each is handled at once, with no task, future or
coroutine per message (a step costs one socket read and one reply write on the loop)."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import subprocess
import sys
from typing import Any

from ..core.protocol import FRAME_HEADER, encode, read_message
from .pool import PoolEvents


class WorkerProc:
    """One worker subprocess and the engine's end of its channel."""

    def __init__(self, proc: subprocess.Popen, reader, writer):
        """``writer``: the channel's transport (or a ``StreamWriter`` with ``reader``)."""
        self.proc = proc
        self.pid = proc.pid
        self.reader: asyncio.StreamReader | None = reader
        self.writer: asyncio.WriteTransport | asyncio.StreamWriter = writer
        self.run: Any = None  # the engine's Run being executed, if any
        self.ready = False
        self.closing = False

    def send(self, msg: dict) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(msg))

    @property
    def exit_code(self) -> int | None:
        return self.proc.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class ProcessPool:
    """Spawns worker subprocesses on demand up to ``max_workers`` and keeps ``min_idle``
    warm (a ``pool.WorkerPool``)."""

    def __init__(self, max_workers: int, min_idle: int, env: dict[str, str],
                 events: PoolEvents):
        self.max_workers = max_workers
        self.min_idle = min_idle
        self.env = env
        self.workers: list[WorkerProc] = []
        self.spawning = 0
        self._on_message = events.on_message
        self._on_exit = events.on_exit
        self._on_ready = events.on_ready
        self._tasks: set[asyncio.Task] = set()
        self.closed = False

    def idle(self) -> list[WorkerProc]:
        return [w for w in self.workers if w.ready and w.run is None and not w.closing]

    def ensure(self, wanted_idle: int) -> None:
        """Start workers so that idle + starting covers ``wanted_idle`` (within the max)."""
        if self.closed:
            return
        starting = sum(1 for w in self.workers if not w.ready and not w.closing)
        have = len(self.idle()) + self.spawning + starting
        room = self.max_workers - len(self.workers) - self.spawning
        for _ in range(max(0, min(max(wanted_idle, self.min_idle) - have, room))):
            self.spawning += 1
            self._track(self._spawn())

    def _track(self, coro: Any) -> None:
        """Run ``coro`` as a task the pool waits for when it closes."""
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _spawn(self) -> None:
        parent, child = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "durable_nb.worker.main", str(child.fileno())],
                pass_fds=[child.fileno()], env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=None, close_fds=True,
            )
        except Exception:
            self.spawning -= 1
            parent.close()
            raise
        finally:
            child.close()
        w = WorkerProc(proc, None, None)  # its transport comes with the connection
        self.spawning -= 1
        self.workers.append(w)  # before its hello can arrive
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: _Channel(self, w), sock=parent)
        except Exception:
            self.workers.remove(w)
            w.kill()
            parent.close()
            raise

    def _received(self, w: WorkerProc, msg: dict) -> None:
        if msg.get("op") == "hello":
            w.ready = True
            self._on_ready(w)
        else:
            self._on_message(w, msg)

    def _closed(self, w: WorkerProc) -> None:
        """The channel of ``w`` closed: the worker is gone once its process has exited."""
        w.writer.close()
        if w in self.workers:
            self.workers.remove(w)
        self._track(self._exited(w))

    async def _exited(self, w: WorkerProc) -> None:
        await asyncio.get_running_loop().run_in_executor(None, w.proc.wait)
        self._on_exit(w)

    async def _read_loop(self, w: WorkerProc) -> None:
        """Read a channel given as a ``StreamReader`` (the threads of ``testing.pools``)."""
        assert w.reader is not None
        try:
            while True:
                self._received(w, await read_message(w.reader))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._closed(w)

    async def close(self) -> None:
        self.closed = True
        for w in list(self.workers):
            w.closing = True
            w.kill()
        for _ in range(100):
            if not self.workers and not self._tasks:
                break
            await asyncio.sleep(0.02)


class _Channel(asyncio.Protocol):
    """The engine's end of a worker's socket: frames (``core.protocol``) cut from the bytes
    as they arrive, each message handed to the pool as soon as it is whole."""

    def __init__(self, pool: ProcessPool, worker: WorkerProc):
        self.pool, self.worker = pool, worker
        self.buf = bytearray()  # the start of a frame not whole yet
        self.need = 0  # how many bytes that frame (or at least its header) takes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.worker.writer = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        if buf:
            buf += data
            if len(buf) < self.need:
                return  # a large frame comes in many chunks: join them once, when whole
            data = bytes(buf)
            buf.clear()
        view, end, pos = memoryview(data), len(data), 0
        head, size = FRAME_HEADER.unpack_from, FRAME_HEADER.size
        while end - pos >= size:
            stop = pos + size + head(data, pos)[0]
            if stop > end:
                break
            msg = pickle.loads(view[pos + size:stop])
            pos = stop
            self.pool._received(self.worker, msg)
        if pos < end:
            buf += view[pos:]
            self.need = size + head(buf)[0] if end - pos >= size else size

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool._closed(self.worker)
