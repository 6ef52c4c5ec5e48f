"""The order in which a run's wait resolutions were first delivered to an attempt.

A resolution of an approval, an event or a sleep gets the next number of its run
(``seq``, kept in the resolution, so in ``waits.result``) when an attempt can first hear
of it: when it resolves while no attempt executes (or the one executing is suspending),
else when it is sent to the worker that registered it, or given in the next attempt's
``run`` message. The number is journaled before the attempt hears of it, so every later
replay hands the awaitable waits over in the order the code first saw them, and
``asyncio.wait(..., FIRST_COMPLETED)`` picks the same winner after a crash or an engine
restart.
"""

from __future__ import annotations

from ..core import serial as _serial
from ..store.records import Record, Update
from .model import Run, Wait

ORDERED_KINDS = ("approval", "event", "sleep")  # the kinds an awaitable wait can be


def next_seq(run: Run) -> int:
    """The number the run's next delivered resolution gets."""
    return 1 + max((int((w.resolution or {}).get("seq") or 0) for w in run.waits.values()),
                   default=0)


def number(run: Run, wait: Wait) -> bool:
    """Number ``wait``'s resolution if it has no number yet; whether it got one now."""
    res = wait.resolution
    if res is None or res.get("seq") or wait.kind not in ORDERED_KINDS:
        return False
    res["seq"] = next_seq(run)
    return True


def stamp(run: Run, wait: Wait) -> list[Record]:
    """``number``, and the record that journals it."""
    return [_update(run, wait)] if number(run, wait) else []


def stamp_all(run: Run) -> list[Record]:
    """Number every resolution not numbered yet, in the order they resolved (before an
    attempt's ``run`` message gives them)."""
    fresh = [w for w in run.waits.values() if w.resolution is not None
             and not w.resolution.get("seq") and w.kind in ORDERED_KINDS]
    if not fresh:
        return []
    n = next_seq(run)
    fresh.sort(key=lambda w: (float((w.resolution or {}).get("at") or 0.0), w.key))
    for i, w in enumerate(fresh):
        (w.resolution or {})["seq"] = n + i
    return [_update(run, w) for w in fresh]


def _update(run: Run, wait: Wait) -> Record:
    return Update("waits", {"run_id": run.id, "wait_key": wait.key},
                  {"result": _serial.dumps(wait.resolution, "resolution")})
