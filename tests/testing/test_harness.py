"""durable_nb.testing.EngineHarness: an engine on a manual clock, driven step by step."""

from __future__ import annotations

import asyncio

import pytest

from durable_nb.testing import EngineHarness, ManualClock


def test_a_restart_keeps_the_database_and_the_clock(tmp_path):
    async def main() -> None:
        clock = ManualClock(start=1000.0)
        async with EngineHarness(tmp_path, clock=clock) as h:
            run = await h.trigger(h.task("t"), delay=3600)
            await h.advance("30m")
            await h.restart()
            assert h.clock is clock and clock.now() == 1000.0 + 1800
            assert h.status(run) == "DELAYED"
            await h.advance("30m")
            assert h.status(run) == "EXECUTING"
            with pytest.raises(KeyError):
                h.status("run_unknown")

    asyncio.run(main())


def test_the_harness_refuses_use_before_start(tmp_path):
    h = EngineHarness(tmp_path)
    with pytest.raises(RuntimeError, match="not started"):
        h.task("t")
