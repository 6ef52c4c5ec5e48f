"""The whole of durable_nb inside a test's process, with skippable time.

    from durable_nb.testing import TestEnvironment

    def test_the_report_waits_a_day_then_retries():
        with TestEnvironment() as env:
            run = report.trigger("q3")          # the API talks to this environment
            assert run.result(timeout=10) == "sent"   # a day of dn.sleep takes no time

An engine on a temporary database serves its REST API on loopback and becomes the
process's default client; attempts run in worker threads (real worker code); time is a
``ManualClock``. While a caller waits on a run's result and nothing can happen before the
next timer, time jumps to that timer (as Temporal's time-skipping test server does), so
sleeps, retry back-offs, wait timeouts and ttls pass at once. ``skip`` moves time by hand.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..client.client import Client, use_client
from ..core.config import EngineConfig
from ..core.durations import parse_duration
from ..core.status import RunStatus
from ..engine.engine import Engine
from ..server.api import MAX_BODY
from ..server.standalone import make_app
from .clock import ManualClock
from .pools import ThreadPool

SKIP_POLL = 0.005  # seconds between the time skipper's looks at the engine
SETTLE_TIMEOUT = 60.0  # real seconds skip() waits for busy task code before it gives up


class TestEnvironment:
    """An in-process engine for tests (a context manager; see the module docstring).

    ``db``: a database file to use (default: one in a temporary folder, removed after).
    ``auto_skip``: skip time while a result is awaited and the engine is idle.
    ``wait_grace``: how long a worker is held at a wait before the run is WAITING
    (default 0: at once, so a test polling a run's status sees it wait)."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, db: str | Path | None = None, *, max_workers: int = 4,
                 wait_grace: float = 0.0, auto_skip: bool = True,
                 start: float = 1_800_000_000.0):
        self._tmp = None if db is not None else tempfile.mkdtemp(prefix="durable-test-")
        self.db = Path(db) if db is not None else Path(self._tmp or ".") / "durable.duckdb"
        self.clock = ManualClock(start)
        self.max_workers = max_workers
        self.wait_grace = wait_grace
        self.auto_skip = auto_skip
        self.engine: Engine | None = None
        self.client: Client | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="durable-test-engine")
        self._server: Any = None
        self._skipper: asyncio.Task | None = None
        self._previous: Client | None = None

    def __enter__(self) -> TestEnvironment:
        self._thread.start()
        try:
            url, token = self._call(self._start())
        except BaseException:
            self._shutdown()
            raise
        self.client = Client(url, token, None)
        self._previous = use_client(self.client)
        return self

    def __exit__(self, *exc: Any) -> None:
        use_client(self._previous)
        self._shutdown()

    @property
    def now(self) -> float:
        """The environment's time (seconds since the epoch)."""
        return self.clock.now()

    def skip(self, duration: float | str) -> None:
        """Move time forward by ``duration`` (seconds or ``"90m"``). Each timer falling due
        fires at its instant, after the runs have reacted to the one before (the call
        waits, in real time, until no task code is running)."""
        seconds = parse_duration(duration) or 0.0
        self._call(self._advance(seconds))

    # ------------------------------------------------------------------ on the loop

    async def _start(self) -> tuple[str, str]:
        token = secrets.token_urlsafe(32)
        config = EngineConfig(db_path=self.db, max_workers=self.max_workers,
                              min_idle_workers=0, wait_grace=self.wait_grace)
        self.engine = Engine(config, clock=self.clock,
                             pool=lambda events: ThreadPool(events, self.max_workers))
        await self.engine.start()
        self._server = make_app(self.engine, token).listen(
            0, address="127.0.0.1", max_body_size=MAX_BODY)
        port = next(iter(self._server._sockets.values())).getsockname()[1]
        if self.auto_skip:
            self._skipper = asyncio.ensure_future(self._skip_when_idle())
        return f"http://127.0.0.1:{port}/", token

    async def _advance(self, seconds: float) -> None:
        """Fire each timer due within ``seconds`` at its instant, letting the runs react
        (their worker threads included) before the next one."""
        await self.clock.skip(seconds, self._settle)

    async def _settle(self, limit: float = SETTLE_TIMEOUT) -> None:
        """Wait (real time) until no task code runs and nothing is about to start."""
        quiet, waited = 0, 0.0
        while quiet < 3:
            await asyncio.sleep(SKIP_POLL)
            waited += SKIP_POLL
            quiet = quiet + 1 if self._quiet() else 0
            if waited > limit:
                raise TimeoutError(f"the runs did not settle within {limit:g} s of real "
                                   "time: a task is busy (time skips only between steps)")

    async def _skip_when_idle(self) -> None:
        """Fire the next timer when a result is awaited and nothing else can happen."""
        quiet = 0
        while True:
            await asyncio.sleep(SKIP_POLL)
            quiet = quiet + 1 if self._idle() else 0
            if quiet >= 3 and self.clock.next_deadline() is not None:
                self.clock.fire_next(float("inf"))
                quiet = 0

    def _idle(self) -> bool:
        """A result is awaited and nothing can happen before the next timer."""
        eng = self.engine
        return eng is not None and any(eng.state.result_waiters.values()) and self._quiet()

    def _quiet(self) -> bool:
        """No task code runs, no journal write is pending and no run is about to start."""
        eng = self.engine
        if eng is None or not eng.writer.idle:
            return False
        pool = eng.state.pool
        free = bool(pool and (pool.idle() or len(pool.workers) < self.max_workers))
        for run in eng.state.runs.values():
            if run.worker is not None and (run.current_wait is None or run.suspending):
                return False  # the task's own code is running
            if run.status == RunStatus.QUEUED and free:
                return False  # about to start
        return True

    async def _stop(self) -> None:
        if self._skipper is not None:
            self._skipper.cancel()
        if self._server is not None:
            self._server.stop()
        if self.engine is not None:
            await self.engine.stop()

    # ------------------------------------------------------------------ plumbing

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _shutdown(self) -> None:
        if self._thread.is_alive():
            try:
                self._call(self._stop())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=30)
        self._loop.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
