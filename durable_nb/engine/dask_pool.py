"""Attempts on a Dask cluster: each attempt is one Dask task, which connects back.

The engine stays the only coordinator: it admits runs (queues, concurrency keys), journals
every step and owns the store; Dask only executes. To the scheduler a Dask attempt looks
like a worker (``pool.Worker``): a ``DaskSlot``. When the engine gives a slot its attempt,
the pool submits ``durable_nb.cluster.attempt:run`` to Dask (retries off; the attempt's
resources as Dask worker resources) with the address of ``listener.AttemptListener``, the
slot's id and a token made for this attempt only. The task connects, proves itself with
the token, receives the attempt on the channel (the code and payload never pass through
Dask) and speaks the protocol of a local worker.

Failures are the engine's to retry, not Dask's: a slot ends (``lose``) when its channel
closes before the attempt ended, when Dask reports its task failed or cancelled
(KilledWorker: its workers kept dying), or when Dask starts the task a second time
because the worker it ran on was lost (a heartbeat gone); the engine then records the
attempt CRASHED and resumes the run by its policy. A second copy of a task finds its token
spent and returns doing nothing.

How many attempts may be on Dask at once is the cluster's thread count, read from the
scheduler every second, so a run is EXECUTING only when a Dask thread can take it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import tempfile
import threading
from typing import Any

from ..core.config import EngineConfig
from ..core.errors import DurableError
from ..core.protocol import encode
from ..core.remote import call as _call
from .listener import AttemptListener
from .pool import PoolEvents

log = logging.getLogger("durable_nb.engine")

ENTRY = "durable_nb.cluster.attempt:run"
CONNECT_RETRY = 2.0  # seconds between attempts to reach an unreachable scheduler
CAPACITY_POLL = 1.0


class DaskSlot:
    """One attempt on Dask, as the engine sees a worker."""

    kind = "dask"

    def __init__(self, pool: DaskPool, number: int):
        self.pool = pool
        self.id = f"s{number}"
        self.token = secrets.token_urlsafe(32)
        self.pid = 0  # the Dask worker process's, once the task connected
        self.address: str | None = None  # the Dask worker's, once the task connected
        self._run: Any = None
        self.used = False  # a slot carries one attempt, once
        self.ready = True
        self.future: Any = None
        self.transport: asyncio.WriteTransport | None = None
        self.pending: list[bytes] = []  # what the engine sent before the task connected
        self.ended = False
        self.running = False  # its Dask task has not finished
        self.why = ""  # why the slot ended, when it ended before its attempt did
        self._exit_code: int | None = None

    @property
    def run(self) -> Any:
        return self._run

    @run.setter
    def run(self, run: Any) -> None:
        """The scheduler gives the slot its attempt (and takes it back when it ends)."""
        self._run = run
        if run is not None and not self.used:
            self.used = True
            self.pool.taken(self)

    def send(self, msg: dict) -> None:
        if self.ended:
            return
        if self.future is None:  # the first message a slot is sent is its attempt
            self.pool.submit(self, msg)
        data = encode(msg)
        if self.transport is None:
            self.pending.append(data)
        elif not self.transport.is_closing():
            self.transport.write(data)

    def kill(self) -> None:
        """Stop the attempt: its channel closes, which stops the task (``cluster.attempt``)."""
        self.pool.lose(self, -9, "")

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    def describe(self) -> str:
        where = f"Dask worker {self.address} (pid {self.pid})" if self.address else \
            "its Dask task (not connected yet)"
        return f"{where}: {self.why}" if self.why else where


class DaskPool:
    """Attempts as Dask tasks on the cluster at ``config.dask_scheduler``, or on a
    LocalCluster started here when no address is set (a ``pool.WorkerPool``)."""

    def __init__(self, config: EngineConfig, events: PoolEvents):
        self.config = config
        self.events = events
        self.workers: list[DaskSlot] = []
        self._spare: list[DaskSlot] = []
        self._numbers = itertools.count(1)
        self.client: Any = None
        self.cluster: Any = None
        self.threads = 0
        self.n_workers = 0
        self.problem: str | None = None
        self.dashboard: str | None = None  # the scheduler's dashboard, when it serves one
        self.closed = False
        self.listener = AttemptListener(self, config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ starting and stopping

    async def start(self) -> None:
        """Listen for attempts; connect to Dask in the background (the engine serves, and
        runs its local tasks, while the scheduler is unreachable)."""
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise DurableError("the Dask executor needs Dask's distributed package on the "
                               "engine's machine and on every Dask worker: pip install "
                               "'durable_nb[dask]'") from None
        self._loop = asyncio.get_running_loop()
        await self.listener.start()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="durable-dask")
        self._thread.start()

    def _watch(self) -> None:
        """Connect (again, while unreachable), then read the cluster's size every second."""
        while not self._stop.is_set():
            if self.client is None:
                try:
                    self._connect()
                except Exception as exc:  # unreachable, refused, a bad address
                    self._report(0, 0, f"cannot reach the Dask scheduler "
                                       f"{self.config.dask_scheduler or '(LocalCluster)'}: {exc}")
                    self._stop.wait(CONNECT_RETRY)
                    continue
            try:
                info = self.client.scheduler_info(n_workers=0)
                self.dashboard = (self.client.dashboard_link
                                  if "dashboard" in (info.get("services") or {}) else None)
                self._report(int(info.get("total_threads") or 0),
                             int(info.get("n_workers") or 0), None)
            except Exception as exc:
                if not self._stop.is_set():
                    self._report(0, 0, f"lost the Dask scheduler: {exc}")
                if getattr(self.client, "status", "") in ("closed", "failed"):
                    self._drop_client()  # it gave up reconnecting: connect afresh
            self._stop.wait(CAPACITY_POLL)

    def _connect(self) -> None:
        from distributed import Client, LocalCluster

        if self.config.dask_scheduler:
            self.client = Client(self.config.dask_scheduler, timeout="10s",
                                 set_as_default=False)
        else:
            if self.cluster is None:
                self.cluster = LocalCluster(processes=True, dashboard_address="127.0.0.1:0",
                                            silence_logs=logging.WARNING)
            self.client = Client(self.cluster, set_as_default=False)

    def _drop_client(self) -> None:
        client, self.client = self.client, None
        with contextlib.suppress(Exception):
            client.close()

    def _report(self, threads: int, n_workers: int, problem: str | None) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._resized, threads, n_workers, problem)

    def _resized(self, threads: int, n_workers: int, problem: str | None) -> None:
        if problem and problem != self.problem:
            log.warning("durable_nb: %s", problem)
        self.threads, self.n_workers, self.problem = threads, n_workers, problem
        if not self.closed and threads > len(self.workers):
            self.events.on_ready(None)  # threads are free (again): start what waits

    async def close(self) -> None:
        self.closed = True
        self._stop.set()
        for slot in list(self.workers):
            self.lose(slot, -9, "the engine stopped")
        await self.listener.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._close_client)

    def _close_client(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5)
        for thing in (self.client, self.cluster):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()

    # ------------------------------------------------------------------ slots

    def idle(self) -> list[DaskSlot]:
        """Slots for as many attempts as the cluster has free threads."""
        client = self.client
        if self.closed or client is None or getattr(client, "status", "running") != "running":
            return []  # while reconnecting, a task submitted now could be lost unnoticed
        self.workers = [w for w in self.workers if w.run is not None or w.running]
        free = self.threads - len(self.workers)
        while len(self._spare) < free:
            self._spare.append(DaskSlot(self, next(self._numbers)))
        del self._spare[max(free, 0):]
        return list(self._spare)

    def taken(self, slot: DaskSlot) -> None:
        """``slot`` was given an attempt: it counts against the cluster's threads now."""
        if slot in self._spare:
            self._spare.remove(slot)
        self.workers.append(slot)

    def ensure(self, wanted_idle: int) -> None:
        """Dask sizes the cluster; nothing to start here."""

    def submit(self, slot: DaskSlot, msg: dict) -> None:
        """Hand the attempt of ``slot`` to Dask as one task (Dask's retries off)."""
        options = slot.run.task.options if slot.run is not None else {}
        resources = options.get("resources") or None
        slot.running = True
        try:
            slot.future = self.client.submit(
                _call, ENTRY, self.listener.address, slot.id, slot.token, self.listener.cert,
                key=f"durable-{msg['run_id']}-{msg['attempt']}-{slot.id}", pure=False,
                retries=0, resources=resources)
        except Exception as exc:
            slot.running = False
            self.lose(slot, 1, f"Dask refused the task: {exc}")
            return
        self.listener.expect(slot)
        loop = self._loop
        assert loop is not None
        slot.future.add_done_callback(
            lambda fut: loop.call_soon_threadsafe(self._task_done, slot, fut))

    def _task_done(self, slot: DaskSlot, fut: Any) -> None:
        """Dask says the slot's task finished: its thread is free; if the attempt had not
        ended, Dask lost it (KilledWorker, cancelled) or it never connected."""
        slot.running = False
        status = fut.status
        if status == "finished" and slot.transport is not None:
            pass  # it ended its attempt and closed its channel: the channel says how it ended
        elif not slot.ended and slot.run is not None:
            if status == "error":
                exc = fut.exception()
                why = f"Dask gave up on the attempt's task: {type(exc).__name__}: {exc}"
            elif status == "cancelled":
                why = "Dask cancelled the attempt's task (its scheduler or client went away)"
            else:
                why = f"the attempt's task ended without connecting ({fut.result()})"
            self.lose(slot, 1, why)
        if not self.closed:
            self.events.on_ready(None)

    def connected(self, slot: DaskSlot, transport: asyncio.WriteTransport, hello: dict) -> None:
        """The task of ``slot`` proved itself: send what waited for it, record where it runs."""
        slot.transport = transport
        slot.pid = int(hello.get("pid") or 0)
        slot.address = str(hello.get("worker") or "")[:200] or None
        for data in slot.pending:
            transport.write(data)
        slot.pending.clear()
        if slot.run is not None:
            self.events.on_placed(slot)

    def received(self, slot: DaskSlot, msg: dict) -> None:
        if not slot.ended:
            self.events.on_message(slot, msg)

    def lose(self, slot: DaskSlot, code: int, why: str) -> None:
        """End ``slot`` (once): close its channel, cancel its task, tell the engine."""
        if slot.ended:
            return
        slot.ended = True
        slot.why = why
        slot._exit_code = code
        self.listener.forget(slot)
        if slot.transport is not None:
            slot.transport.close()
        fut = slot.future
        if code != 0 and fut is not None and slot.running and self._loop is not None:
            self._loop.run_in_executor(None, _cancel, fut)
        self.events.on_exit(slot)

    async def upload(self, filename: str, data: bytes) -> dict:
        """Ship a module (``name.py``, or a package as ``name.zip``) to every Dask worker,
        now and as workers join (Dask's ``UploadFile`` worker plugin, registered under one
        name per module, so a new upload replaces the old)."""
        if self.client is None:
            raise ConnectionError(self.problem or "not connected to the Dask scheduler yet")
        return await asyncio.get_running_loop().run_in_executor(
            None, self._upload, filename, data)

    def _upload(self, filename: str, data: bytes) -> dict:
        from distributed.diagnostics.plugin import UploadFile

        with tempfile.TemporaryDirectory(prefix="durable-nb-upload-") as folder:  # mode 0700
            path = os.path.join(folder, filename)
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(data)
            plugin = UploadFile(path, load=True)  # reads the file now
        results = self.client.register_plugin(plugin, name=f"durable-nb-upload-{filename}")
        failed = {w: str(r.get("exception") or r) for w, r in (results or {}).items()
                  if isinstance(r, dict) and r.get("status") == "error"}
        return {"filename": filename, "bytes": len(data), "workers": len(results or {}),
                "failed": failed}

    def describe(self) -> dict:
        """The executor as /health shows it."""
        dashboard = self.dashboard if self.client is not None else None
        scheduler = self.config.dask_scheduler or (
            self.cluster.scheduler_address if self.cluster is not None else None)
        return {"kind": "dask", "scheduler": scheduler, "dashboard": dashboard,
                "workers": self.n_workers, "threads": self.threads,
                "attempts": len([w for w in self.workers if w.run is not None]),
                "listen": ("{}:{}".format(*self.listener.address)
                           if self.listener.address else None),
                "tls": bool(self.listener.cert), "problem": self._problem()}

    def _problem(self) -> str | None:
        status = getattr(self.client, "status", "running")
        if self.client is not None and status != "running":
            return (f"the Dask scheduler is unreachable; the client is {status} (runs wait in "
                    "their queues meanwhile)")
        return self.problem


def _cancel(fut: Any) -> None:
    with contextlib.suppress(Exception):
        fut.cancel()
