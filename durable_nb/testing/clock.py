"""A clock that moves only when told to: time skipping for the engine's timers."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable

from ..core.durations import parse_duration
from ..engine.clock import Timer


class ManualTimer:
    """A call scheduled on a ``ManualClock``."""

    def __init__(self, at: float, fn: Callable[[], None]):
        self.at = at
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """An ``engine.clock.Clock`` whose time is set by the test.

    ``advance`` fires the timers that fall due, in order of their time (ties in the order
    they were armed), each at its own instant: a timer armed by a callback fires too if it
    falls within the skipped span. Used on the engine's loop only."""

    def __init__(self, start: float = 1_800_000_000.0):
        self._now = float(start)
        self._timers: list[tuple[float, int, ManualTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, at: float, fn: Callable[[], None]) -> Timer:
        """Call ``fn`` when time reaches ``at``; at once (next loop turn) if it has."""
        if at <= self._now:
            return asyncio.get_running_loop().call_soon(fn)
        timer = ManualTimer(float(at), fn)
        heapq.heappush(self._timers, (timer.at, next(self._order), timer))
        return timer

    def next_deadline(self) -> float | None:
        """When the next live timer fires (None when none is armed)."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def pending(self) -> int:
        """How many live timers are armed."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def fire_next(self, until: float) -> bool:
        """Fire the earliest timer due at or before ``until`` (time moves to it); False
        when there is none."""
        at = self.next_deadline()
        if at is None or at > until:
            return False
        _, _, timer = heapq.heappop(self._timers)
        self._now = max(self._now, timer.at)
        timer.cancelled = True
        timer.fn()
        return True

    def advance(self, seconds: float | str) -> None:
        """Move time forward by ``seconds`` (or a duration such as ``"1h"``), firing every
        timer that falls due on the way."""
        until = self._now + (parse_duration(seconds) or 0.0)
        while self.fire_next(until):
            pass
        self._now = max(self._now, until)

    async def skip(self, seconds: float | str,
                   settle: Callable[[], Awaitable[None]]) -> None:
        """``advance``, letting the system react to each timer before the next: ``settle``
        runs before, after each timer, and at the end."""
        until = self._now + (parse_duration(seconds) or 0.0)
        await settle()
        while self.fire_next(until):
            await settle()
        self._now = max(self._now, until)
        await settle()
