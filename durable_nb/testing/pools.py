"""Worker pools for in-process tests (``engine.pool.WorkerPool``).

``FakePool`` has scripted workers: the test plays the worker's side of the protocol
(``worker.step(...)``, ``worker.wait(...)``, ``worker.done(...)``, ``worker.crash()``),
so scheduling, retries, waits and recovery are driven message by message. ``ThreadPool``
runs the real worker code (``worker.main.Worker``) in threads of the test process over
socket pairs, so users' own tasks run in-process.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
from typing import Any

from ..core import serial as _serial
from ..engine.pool import PoolEvents
from ..engine.processes import ProcessPool, WorkerProc
from ..worker import threadout
from ..worker.main import Worker

_OUTPUT = threadout.OUTPUT

# ---------------------------------------------------------------------- scripted workers


class FakeWorker:
    """A worker whose side of the protocol the test plays."""

    def __init__(self, pool: FakePool, pid: int):
        self.pool = pool
        self.pid = pid
        self.run: Any = None  # set by the engine
        self.ready = True
        self.inbox: list[dict] = []  # every message the engine sent, in order
        self.killed = False
        self._exit_code: int | None = None
        self._req = itertools.count(1)

    # the engine's side
    def send(self, msg: dict) -> None:
        if self._exit_code is None:
            self.inbox.append(msg)

    def kill(self) -> None:
        """Like SIGKILL: the worker exits (on the next loop turn, as a process would)."""
        if self._exit_code is None and not self.killed:
            self.killed = True
            self.pool.loop.call_soon(self.exit, -9)

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    # the test's side
    @property
    def attempt(self) -> dict:
        """The ``run`` message of the attempt this worker executes."""
        runs = self.received("run")
        if not runs:
            raise AssertionError(f"worker {self.pid} was given no attempt")
        return runs[-1]

    def received(self, op: str | None = None) -> list[dict]:
        """Messages the engine sent this worker (with ``op``; replies have no op)."""
        return [m for m in self.inbox if op is None or m.get("op") == op]

    def replies(self) -> list[dict]:
        return [m for m in self.inbox if "re" in m]

    def tell(self, op: str, request: bool = False, **fields: Any) -> dict:
        """Send the engine ``op`` for the current attempt; returns the message."""
        msg = {"op": op, "aid": self.attempt["aid"], **fields}
        if request:
            msg["req"] = next(self._req)
        self.pool.events.on_message(self, msg)
        return msg

    def step(self, key: str, value: Any = None, *, name: str | None = None,
             attempt: int = 1) -> dict:
        """Report a completed step."""
        now = self.pool.now()
        return self.tell("step", True, key=key, name=name or key.split("#")[0],
                         attempt=attempt, start=now, end=now,
                         output=_serial.dumps(value, "step output"))

    def wait(self, kind: str, name: str, *, key: str | None = None,
             timeout: float | None = None, target: list | None = None) -> dict:
        """Meet a wait (``approval``, ``event``, ``sleep``, ``child`` or ``retry``)."""
        return self.tell("wait", True, key=key or f"{kind}:{name}", kind=kind, name=name,
                         timeout=timeout, target=target, data=None, preview=None)

    def wait_async(self, kind: str, name: str, *, key: str | None = None,
                   timeout: float | None = None) -> dict:
        """Register an awaitable wait (``dn.approval_async`` and co): nothing blocks."""
        return self.tell("wait", key=key or f"{kind}:{name}", kind=kind, name=name,
                         timeout=timeout, target=None, data=None, preview=None, mode="async")

    def idle(self, *keys: str) -> dict:
        """Report that the attempt's loop has nothing to do but these awaitable waits."""
        return self.tell("waits_idle", keys=list(keys))

    def done(self, value: Any = None) -> dict:
        return self.tell("done", output=_serial.dumps(value, "return value"))

    def fail(self, message: str = "boom", type: str = "ValueError",
             abort: bool = False) -> dict:
        error: dict[str, Any] = {"type": type, "message": message, "traceback": None}
        if abort:
            error["abort"] = True
        return self.tell("failed", error=error)

    def suspended(self) -> dict:
        return self.tell("suspended")

    def crash(self, code: int = -9) -> None:
        """The worker dies now (a SIGKILL from outside)."""
        self.exit(code)

    def exit(self, code: int) -> None:
        if self._exit_code is not None:
            return
        self._exit_code = code
        if self in self.pool.workers:
            self.pool.workers.remove(self)
        self.pool.events.on_exit(self)


class FakePool:
    """Scripted workers, started on demand up to ``max_workers`` (ready a loop turn later,
    as a process would be)."""

    def __init__(self, events: PoolEvents, max_workers: int = 4, min_idle: int = 0,
                 clock: Any = None):
        self.events = events
        self.max_workers = max_workers
        self.min_idle = min_idle
        self.clock = clock
        self.workers: list[FakeWorker] = []
        self.started: list[FakeWorker] = []  # every worker ever started, in order
        self.loop = asyncio.get_running_loop()
        self._pids = itertools.count(1001)
        self.closed = False

    def now(self) -> float:
        return self.clock.now() if self.clock is not None else self.loop.time()

    def idle(self) -> list[FakeWorker]:
        return [w for w in self.workers if w.ready and w.run is None]

    def ensure(self, wanted_idle: int) -> None:
        if self.closed:
            return
        want = max(wanted_idle, self.min_idle) - len(self.idle())
        for _ in range(max(0, min(want, self.max_workers - len(self.workers)))):
            w = FakeWorker(self, next(self._pids))
            w.ready = False
            self.workers.append(w)
            self.started.append(w)
            self.loop.call_soon(self._ready, w)

    def _ready(self, w: FakeWorker) -> None:
        if w in self.workers and not self.closed:
            w.ready = True
            self.events.on_ready(w)

    def worker_of(self, run_id: str) -> FakeWorker:
        """The worker executing ``run_id`` now."""
        for w in self.workers:
            if w.run is not None and w.run.id == run_id:
                return w
        raise AssertionError(f"no worker executes run {run_id}")

    async def close(self) -> None:
        self.closed = True
        self.workers.clear()


# ---------------------------------------------------------------------- real workers, threads


class _ThreadProc:
    """What the process pool needs of a process, for a worker thread."""

    def __init__(self, thread: threading.Thread):
        self.thread = thread
        self.pid = os.getpid()
        self.returncode: int | None = None

    def wait(self) -> int:
        self.thread.join(timeout=5)
        if self.returncode is None:
            self.returncode = 0
        return self.returncode


class ThreadWorker(WorkerProc):
    """A real worker (``worker.main.Worker``) in a thread of this process."""

    def kill(self) -> None:
        """Threads cannot be killed: the channel closes, so the attempt ends at its next
        step or wait, as if its process had died; code between them runs on."""
        self.proc.returncode = -9
        self.writer.close()


class ThreadPool(ProcessPool):
    """``ProcessPool`` with worker threads instead of subprocesses."""

    def __init__(self, events: PoolEvents, max_workers: int = 4, min_idle: int = 0):
        super().__init__(max_workers, min_idle, {}, events)
        _OUTPUT.acquire()
        self._output = True

    async def close(self) -> None:
        await super().close()
        if self._output:
            self._output = False
            _OUTPUT.release()

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        thread = threading.Thread(target=_serve, args=(theirs,), daemon=True,
                                  name="durable-test-worker")
        thread.start()
        reader, writer = await asyncio.open_connection(sock=ours, limit=2**26)
        w = ThreadWorker(_ThreadProc(thread), reader, writer)  # type: ignore[arg-type]
        self.spawning -= 1
        self.workers.append(w)
        self._track(self._read_loop(w))


def _serve(sock: socket.socket) -> None:
    worker = Worker(sock, capture_output=False)
    _OUTPUT.route(worker.stdout, worker.stderr)
    try:
        worker.serve()
    except (OSError, EOFError):
        pass  # the engine closed the channel
    finally:
        _OUTPUT.route(None, None)
        sock.close()


