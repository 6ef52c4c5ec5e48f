"""``trigger(priority=N)`` against a real engine with one worker process: the queued run of
higher priority starts first; a bad priority is refused at the API with the field named."""

from __future__ import annotations

import os
import time

import pytest
from _support import wait_for

import durable_nb as dn


@dn.task
def hold(gate: str) -> str:
    while not os.path.exists(gate):
        time.sleep(0.01)
    return gate


def test_the_higher_priority_starts_first(make_engine, tmp_path):
    make_engine("--workers", "1")
    gate = str(tmp_path / "gate")
    busy = hold.trigger(gate)
    wait_for(lambda: busy.status == "EXECUTING", 30, "the first run to start")
    low = hold.trigger(gate, priority=-1)
    plain = hold.trigger(gate)
    high = hold.trigger(gate, priority=10)
    open(gate, "w").close()
    for h in (busy, low, plain, high):
        h.result(timeout=60)
    started = sorted((h.attempts[0]["started_at"], name) for name, h in
                     (("low", low), ("plain", plain), ("high", high)))
    assert [name for _, name in started] == ["high", "plain", "low"]
    assert high.info()["priority"] == 10


def test_a_bad_priority_is_refused_with_its_field(engine):
    for bad in (5000, "high", 1.5):
        with pytest.raises(dn.ApiError, match="priority"):
            hold.trigger("x", priority=bad)
