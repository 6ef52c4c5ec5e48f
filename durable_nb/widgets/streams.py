"""The kernel's engine event streams, on a background thread, so views update while the
kernel runs another cell.

`HUB` is a daemon thread with an asyncio loop; it holds one events WebSocket per (client,
run) shared by its listeners and reconnects (following a moved engine) when it drops.
`Pump` coalesces the refreshes those events ask for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..client.client import Client
from ..core.runtime import events_url

log = logging.getLogger("durable_nb.widgets")


class EventStream:
    """One events WebSocket (one run, or all runs) shared by its listeners."""

    def __init__(self, client: Client, run_id: str | None):
        self.client = client
        self.run_id = run_id
        self.listeners: list[Callable[[dict], None]] = []
        self.task: asyncio.Task | None = None
        self.conn: Any = None
        self.closed = False

    def url(self) -> str:
        return events_url(self.client.url, self.run_id)

    def tell(self, event: dict) -> None:
        for fn in list(self.listeners):
            try:
                fn(event)
            except Exception:
                log.debug("durable_nb widget listener failed", exc_info=True)

    def poke(self) -> None:
        """A plain request, so a client whose engine moved follows it (rediscovery)."""
        try:
            self.client.request("GET", "/health", timeout=5)
        except Exception:
            pass

    async def run(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        delay = 0.2
        loop = asyncio.get_running_loop()
        while not self.closed:
            headers = {"Authorization": f"token {self.client.token}"} if self.client.token else {}
            try:
                self.conn = await websocket_connect(HTTPRequest(
                    self.url(), headers=headers, connect_timeout=5, request_timeout=10))
            except Exception as exc:
                if self.closed:
                    return
                self.tell({"type": "disconnected", "error": f"{type(exc).__name__}: {exc}"})
                await loop.run_in_executor(None, self.poke)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            while True:
                msg = await self.conn.read_message()
                if msg is None:
                    break
                try:
                    event = json.loads(msg)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.tell(event)
            self.conn = None
            if not self.closed:
                self.tell({"type": "disconnected", "error": "the event stream closed"})
                await asyncio.sleep(delay)

    def close(self) -> None:
        self.closed = True
        if self.conn is not None:
            self.conn.close()
        if self.task is not None:
            self.task.cancel()


class Hub:
    """A daemon thread with an asyncio loop that holds the kernel's event streams."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._streams: dict[tuple[int, str | None], EventStream] = {}

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                ready = threading.Event()

                def main() -> None:
                    loop = asyncio.new_event_loop()
                    asyncio.set_event_loop(loop)
                    self.loop = loop
                    ready.set()
                    loop.run_forever()

                self._streams.clear()
                self._thread = threading.Thread(target=main, name="durable-nb-events",
                                                daemon=True)
                self._thread.start()
                ready.wait()
            assert self.loop is not None
            return self.loop

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the hub's loop (from any thread)."""
        self._ensure().call_soon_threadsafe(fn)

    def subscribe(self, client: Client, run_id: str | None,
                  fn: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``fn(event)`` (on the hub thread) for the run's events (all runs: None)."""
        loop = self._ensure()
        key = (id(client), run_id)

        def add() -> None:
            stream = self._streams.get(key)
            if stream is None or stream.closed:
                stream = self._streams[key] = EventStream(client, run_id)
                stream.task = loop.create_task(stream.run())
            stream.listeners.append(fn)

        def remove() -> None:
            stream = self._streams.get(key)
            if stream is not None and fn in stream.listeners:
                stream.listeners.remove(fn)
                if not stream.listeners:
                    stream.close()
                    del self._streams[key]

        def unsubscribe() -> None:
            loop.call_soon_threadsafe(remove)

        loop.call_soon_threadsafe(add)
        return unsubscribe


HUB = Hub()


class Pump:
    """Coalesces requests to run ``work`` (blocking, in a worker thread): at most one at a
    time, at most one per ``interval`` seconds, and always once after the last request."""

    def __init__(self, work: Callable[[], None], interval: float = 0.05):
        self.work = work
        self.interval = interval
        self._dirty = False
        self._running = False

    def kick(self) -> None:
        """Ask for a run (call on the hub thread)."""
        self._dirty = True
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._dirty:
                self._dirty = False
                try:
                    await loop.run_in_executor(None, self.work)
                except Exception:
                    log.debug("durable_nb widget refresh failed", exc_info=True)
                await asyncio.sleep(self.interval)
        finally:
            self._running = False

