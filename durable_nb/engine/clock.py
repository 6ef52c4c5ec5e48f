"""The engine's sense of time, injected so that tests can drive it.

Every timestamp the engine records comes from ``Clock.now`` and every timer (delays, ttls,
wait deadlines, grace periods, attempt limits, write retries) from ``Clock.call_at``. The
``SystemClock`` uses wall time and the asyncio loop; ``durable_nb.testing.ManualClock``
moves only when told to, so a test skips an hour in a millisecond.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """A scheduled call that can be cancelled (asyncio.TimerHandle is one)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall time in seconds since the epoch, and calls scheduled at such a time."""

    def now(self) -> float: ...

    def call_at(self, at: float, fn: Callable[[], None]) -> Timer: ...


class SystemClock:
    """Real time: ``time.time`` and the running asyncio loop's timers."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        return time.time()

    def call_at(self, at: float, fn: Callable[[], None]) -> Timer:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.call_later(max(0.0, at - time.time()), fn)
