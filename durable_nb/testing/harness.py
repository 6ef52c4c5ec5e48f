"""An engine on a manual clock and scripted workers, driven step by step (async).

    async with EngineHarness(tmp_path) as h:
        t = h.task("report", retry=Retry(max_attempts=2, min_timeout=5, randomize=False))
        run_id = await h.trigger(t)
        w = h.worker_of(run_id)
        w.fail("flaky")                    # the first attempt fails
        await h.settle()
        assert h.status(run_id) == "DELAYED"
        await h.advance(5)                 # five seconds pass in no time
        h.worker_of(run_id).done(42)
        await h.settle()
        assert h.status(run_id) == "COMPLETED"

Everything the engine does is real (its journal, DuckDB file, recovery); only time and
the workers are played by the test, so races are replayed in a chosen order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ..core import serial as _serial
from ..core.config import EngineConfig
from ..core.retry import Retry
from ..engine.engine import Engine
from ..engine.model import Run
from .clock import ManualClock
from .pools import FakePool, FakeWorker

SETTLE_TURNS = 10_000  # loop turns settle() allows before it gives up


def _noop() -> None:
    """The code of tasks whose workers the test plays."""


class EngineHarness:
    """An ``Engine`` on ``db`` (a folder or a ``.duckdb`` path) with a ``ManualClock``
    and a ``FakePool``; ``restart()`` starts a new engine on the same database and clock."""

    def __init__(self, db: str | Path, *, clock: ManualClock | None = None,
                 max_workers: int = 4, wait_grace: float = 1.0, **settings: Any):
        path = Path(db)
        self.db = path / "durable.duckdb" if path.suffix != ".duckdb" else path
        self.clock = clock or ManualClock()
        self.max_workers = max_workers
        self.settings = {"wait_grace": wait_grace, **settings}
        self.engine: Engine | None = None
        self.pool: FakePool | None = None

    async def __aenter__(self) -> EngineHarness:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def start(self) -> Engine:
        def make_pool(events: Any) -> FakePool:
            self.pool = FakePool(events, self.max_workers, clock=self.clock)
            return self.pool

        config = EngineConfig(db_path=self.db, max_workers=self.max_workers,
                              **self.settings)
        self.engine = Engine(config, clock=self.clock, pool=make_pool)
        await self.engine.start()
        await self.settle()
        return self.engine

    async def stop(self) -> None:
        """Stop the engine as a clean shutdown does (attempts in flight resume later)."""
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None

    async def restart(self) -> Engine:
        """Stop and start again on the same database and clock: recovery runs."""
        await self.stop()
        return await self.start()

    # ------------------------------------------------------------------ driving

    async def settle(self) -> None:
        """Let the engine finish what it is doing: run the loop until no journal write is
        pending and no callback is left (journal syncs and blob reads run in threads)."""
        eng = self._engine
        quiet = 0
        for _ in range(SETTLE_TURNS):
            # a sync on the journal thread takes the disk's time, not loop turns
            await asyncio.sleep(0.001 if eng.writer.syncing else 0)
            busy = not eng.writer.idle or _ready_callbacks()
            quiet = 0 if busy else quiet + 1
            if quiet >= 3:
                await asyncio.sleep(0.001)  # threads (blob reads) hand their results back
                if eng.writer.idle and not _ready_callbacks():
                    return
                quiet = 0
        raise AssertionError("the engine did not settle")

    async def advance(self, seconds: float | str) -> None:
        """Skip ``seconds`` of time: each timer falling due fires at its instant, and the
        engine settles after each one."""
        await self.clock.skip(seconds, self.settle)

    # ------------------------------------------------------------------ tasks and runs

    def task(self, task_id: str, *, retry: Retry | None = None, queue: str | None = None,
             concurrency_limit: int | None = None, rate_limit: tuple[int, float] | None = None,
             **options: Any) -> str:
        """Register a task whose workers the test plays; returns its hash. ``rate_limit``
        is (starts, per seconds) of its queue."""
        code = _serial.dumps(_noop, "task code")
        if retry is not None:
            options["retry"] = retry.to_dict()
        if queue is not None:
            options["queue"] = {"name": queue, "concurrency_limit": concurrency_limit}
            if rate_limit is not None:
                options["queue"]["rate_limit"] = {"limit": rate_limit[0], "per": rate_limit[1]}
        h = _serial.task_hash(code, task_id, options)
        self._engine.register_task({"hash": h, "task_id": task_id, "code": code,
                                    "options": options, "sys_path": []})
        return h

    async def trigger(self, task_hash: str, *args: Any, **options: Any) -> str:
        """Trigger a run (``Engine.trigger`` options); returns its id once settled."""
        payload = _serial.dumps((args, {}), "payload")
        run_id, _ = await self._engine.trigger(task_hash, payload, **options)
        await self.settle()
        return run_id

    def run(self, run_id: str) -> Run:
        """The engine's in-memory run (unfinished runs only)."""
        return self._engine.state.runs[run_id]

    def status(self, run_id: str) -> str:
        s = self._engine.state
        if run_id in s.runs:
            return s.runs[run_id].status
        if run_id in s.finished:
            return str(s.finished[run_id]["status"])
        raise KeyError(f"run {run_id} is neither active nor recently finished")

    def worker_of(self, run_id: str) -> FakeWorker:
        assert self.pool is not None
        return self.pool.worker_of(run_id)

    async def rows(self, sql: str, *params: Any) -> list[dict]:
        """Rows of the store (all journaled records are applied first)."""
        await self.settle()
        return await self._engine.queries.query(sql, list(params))

    @property
    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("the harness's engine is not started")
        return self.engine


def _ready_callbacks() -> bool:
    """True while the running loop has callbacks ready to run."""
    loop = asyncio.get_running_loop()
    return bool(getattr(loop, "_ready", ()))
