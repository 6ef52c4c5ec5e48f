"""The engine's pool of worker subprocesses, each connected by a socket pair."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from typing import Any

from ..core.protocol import encode, read_message
from .pool import PoolEvents


class WorkerProc:
    """One worker subprocess and the engine's end of its channel."""

    def __init__(self, proc: subprocess.Popen, reader, writer):
        self.proc = proc
        self.pid = proc.pid
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
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
        reader, writer = await asyncio.open_connection(sock=parent, limit=2**26)
        w = WorkerProc(proc, reader, writer)
        self.spawning -= 1
        self.workers.append(w)
        self._track(self._read_loop(w))

    async def _read_loop(self, w: WorkerProc) -> None:
        try:
            while True:
                msg = await read_message(w.reader)
                if msg.get("op") == "hello":
                    w.ready = True
                    self._on_ready(w)
                else:
                    self._on_message(w, msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            w.writer.close()
            if w in self.workers:
                self.workers.remove(w)
            await asyncio.get_running_loop().run_in_executor(None, w.proc.wait)
            self._on_exit(w)

    async def close(self) -> None:
        self.closed = True
        for w in list(self.workers):
            w.closing = True
            w.kill()
        for _ in range(100):
            if not self.workers and not self._tasks:
                break
            await asyncio.sleep(0.02)
