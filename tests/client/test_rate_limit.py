"""``dn.Queue(..., rate_limit=dn.Rate(limit, per))`` against a real engine in real time:
no window of ``per`` seconds holds more than ``limit`` starts (measured from the recorded
attempts), a change through the API applies at once, and bad rates are refused."""

from __future__ import annotations

import pytest

import durable_nb as dn

paced = dn.Queue("paced", rate_limit=dn.Rate(3, per="2s"))


@dn.task(queue=paced)
def ping(i: int) -> int:
    return i


def test_no_window_holds_more_starts_than_the_rate(engine):
    handles = [ping.trigger(i) for i in range(8)]
    assert [h.result(timeout=60) for h in handles] == list(range(8))
    starts = sorted(h.attempts[0]["started_at"] for h in handles)
    assert all(later - first >= 2.0 for first, later in zip(starts, starts[3:], strict=False))
    (queue,) = [q for q in engine.client.request("GET", "/queues")["queues"]
                if q["name"] == "paced"]
    assert queue["rate_limit"] == {"limit": 3, "per": 2.0}


def test_rate_limits_are_checked_at_the_api(engine):
    for bad in ({"limit": 0, "per": 1}, {"limit": 1, "per": 0}, {"limit": 1},
                {"limit": 1, "per": 1, "burst": 5}):
        with pytest.raises(dn.ApiError, match="rate_limit"):
            engine.client.request("PUT", "/queues/paced",
                                  {"concurrency_limit": None, "rate_limit": bad})
    out = engine.client.request("PUT", "/queues/paced",
                                {"concurrency_limit": 2, "rate_limit": {"limit": 5, "per": 60}})
    assert out == {"name": "paced", "concurrency_limit": 2,
                   "rate_limit": {"limit": 5, "per": 60.0}}
    with pytest.raises(ValueError):
        dn.Rate(0, per="1m")
    with pytest.raises(ValueError):
        dn.Rate(1, per="0s")
