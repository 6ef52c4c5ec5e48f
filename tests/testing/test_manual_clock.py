"""durable_nb.testing.ManualClock: time moves only when told, timers fire in order."""

from __future__ import annotations

import asyncio

from durable_nb.testing import ManualClock


def test_timers_fire_in_time_order_each_at_its_instant():
    clock = ManualClock(start=100.0)
    seen: list[tuple[str, float]] = []
    clock.call_at(130.0, lambda: seen.append(("b", clock.now())))
    clock.call_at(110.0, lambda: seen.append(("a", clock.now())))
    cancelled = clock.call_at(120.0, lambda: seen.append(("x", clock.now())))
    cancelled.cancel()
    clock.advance(20)
    assert seen == [("a", 110.0)] and clock.now() == 120.0
    clock.advance("1m")
    assert seen == [("a", 110.0), ("b", 130.0)] and clock.now() == 180.0
    assert clock.next_deadline() is None and clock.pending() == 0


def test_a_timer_armed_by_a_timer_fires_within_the_same_skip():
    clock = ManualClock(start=0.0)
    seen: list[float] = []

    def first() -> None:
        seen.append(clock.now())
        clock.call_at(clock.now() + 5, lambda: seen.append(clock.now()))

    clock.call_at(10.0, first)
    clock.advance(15)
    assert seen == [10.0, 15.0]


def test_a_timer_at_a_past_time_fires_on_the_next_loop_turn():
    async def main() -> list[str]:
        clock = ManualClock(start=50.0)
        seen: list[str] = []
        clock.call_at(10.0, lambda: seen.append("late"))
        assert seen == []
        await asyncio.sleep(0)
        return seen

    assert asyncio.run(main()) == ["late"]
