"""engine.clock.SystemClock: wall time and the loop's timers."""

from __future__ import annotations

import asyncio
import time

from durable_nb.engine.clock import SystemClock


def test_the_system_clock_fires_due_and_past_timers_in_order():
    async def main() -> list[str]:
        clock = SystemClock()
        done = asyncio.get_running_loop().create_future()
        seen: list[str] = []
        clock.call_at(clock.now() + 0.05, lambda: (seen.append("later"), done.set_result(1)))
        clock.call_at(clock.now() - 60, lambda: seen.append("past"))
        cancelled = clock.call_at(clock.now() + 0.01, lambda: seen.append("cancelled"))
        cancelled.cancel()
        await asyncio.wait_for(done, 10)
        return seen

    assert asyncio.run(main()) == ["past", "later"]
    assert abs(SystemClock().now() - time.time()) < 1
