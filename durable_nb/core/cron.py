"""When a schedule's ticks fall: a cron expression in a time zone (croniter) or a fixed
interval, and the options of a schedule, validated alike by the client and the engine.

A tick is an instant in epoch seconds. Interval ticks (``every``) fall on the multiples of
the interval since the epoch, so ``every="15m"`` ticks at :00, :15, :30 and :45 and
``every="1s"`` on each whole second, whatever the time zone. Cron ticks are computed on
time-zone-aware datetimes, which is where daylight saving matters:

- **Spring forward** (a wall time that does not exist that day, e.g. 02:30 in
  America/New_York on the second Sunday of March): the tick fires at the first instant
  after the gap (03:00), as croniter gives it; ticks of several missing wall times fire
  once, at that instant.
- **Fall back** (a wall time that happens twice, e.g. 01:30 on the first Sunday of
  November): a tick at a given hour fires once, at the first of the two instants. An
  expression whose hour field is ``*`` (every hour, every few minutes) keeps its pace in
  real time and fires in both passes of the repeated hour.

croniter is imported on first use, so an engine without cron schedules does not load it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .durations import parse_duration

OVERLAPS = ("skip", "queue", "allow")  # a tick while the schedule's previous run runs
CATCH_UPS = ("skip", "once", "all")  # ticks missed while the engine was down
MIN_EVERY = 1.0
MAX_EVERY = 366 * 86400.0
MAX_CATCH_UP = 1000  # "all" fires at most this many missed ticks (the latest ones)
MAX_CRON = 200

_ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
            "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
            "@hourly": "0 * * * *"}
_FIELDS = "minute hour day-of-month month day-of-week"


@dataclass(frozen=True)
class Timing:
    """When ticks fall: exactly one of ``cron`` (five fields) and ``every`` (seconds)."""

    cron: str | None
    every: float | None
    timezone: str = "UTC"

    def next_after(self, t: float) -> float:
        """The first tick strictly after ``t``."""
        if self.every is not None:
            return (math.floor(t / self.every) + 1) * self.every
        tz = ZoneInfo(self.timezone)
        while True:
            t = _cron_step(self._expr(), datetime.fromtimestamp(t, tz), forward=True)
            if self._fires(t, tz):
                return t

    def latest(self, after: float, until: float, n: int) -> list[float]:
        """At most the ``n`` latest ticks in (``after``, ``until``], oldest first."""
        out: list[float] = []
        if self.every is not None:
            k = math.floor(until / self.every)
            while len(out) < n and k * self.every > after:
                out.append(k * self.every)
                k -= 1
            return out[::-1]
        tz = ZoneInfo(self.timezone)
        t = math.floor(until) + 0.5  # cron ticks are whole seconds: until itself counts
        while len(out) < n:
            t = _cron_step(self._expr(), datetime.fromtimestamp(t, tz), forward=False)
            if t <= after:
                break
            if self._fires(t, tz):
                out.append(t)
        return out[::-1]

    def _expr(self) -> str:
        return _ALIASES.get(self.cron or "", self.cron or "")

    def _fires(self, t: float, tz: ZoneInfo) -> bool:
        """False for the second pass of a repeated wall time (fall back), unless the
        expression runs every hour (its hour field is ``*``)."""
        if not datetime.fromtimestamp(t, tz).fold:
            return True
        return self._expr().split()[1] == "*"


def _cron_step(expr: str, start: datetime, forward: bool) -> float:
    from croniter import croniter

    it = croniter(expr, start)
    d = it.get_next(datetime) if forward else it.get_prev(datetime)
    return float(d.timestamp())


def timing(cron: Any = None, every: Any = None, timezone: Any = "UTC") -> Timing:
    """A validated ``Timing``; ValueError saying what is wrong and what to give instead."""
    if (cron is None) == (every is None):
        raise ValueError("a schedule needs exactly one of cron (e.g. '0 9 * * 1-5') and "
                         f"every (e.g. '15m'), got {'both' if cron is not None else 'neither'}")
    tz = _timezone(timezone)
    if every is not None:
        try:
            seconds = parse_duration(every)
        except ValueError as exc:
            raise ValueError(f"every must be a duration such as '15m' or '1s': {exc}") from None
        if seconds is None or not MIN_EVERY <= seconds <= MAX_EVERY:
            raise ValueError(f"every must be at least {MIN_EVERY:g} s and at most 366 days, "
                             f"got {every!r:.50}")
        return Timing(None, seconds, tz)
    return Timing(_cron(cron, tz), None, tz)


def _timezone(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"timezone must be an IANA time zone name such as 'UTC' or "
                         f"'Europe/Paris', got {name!r:.50}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown timezone {name!r:.60}: use an IANA name such as 'UTC', "
                         "'America/New_York' or 'Europe/Paris'") from None
    return name


def _cron(expr: Any, tz: str) -> str:
    if not isinstance(expr, str) or not expr.strip() or len(expr) > MAX_CRON:
        raise ValueError(f"cron must be a cron expression such as '0 9 * * 1-5', got "
                         f"{expr!r:.60}")
    text = " ".join(expr.split())
    fields = _ALIASES.get(text.lower(), text).split()
    if len(fields) != 5:
        raise ValueError(f"bad cron expression {expr!r:.60}: it needs 5 fields ({_FIELDS}), "
                         f"or one of {', '.join(_ALIASES)}; it has {len(fields)}")
    text = _ALIASES.get(text.lower(), text)
    try:
        from croniter import croniter

        ok = croniter.is_valid(text)
    except Exception:  # croniter raises several types on odd input
        ok = False
    if not ok:
        raise ValueError(f"bad cron expression {expr!r:.60}: each of its fields ({_FIELDS}) "
                         "must be *, a number, a range a-b, a list a,b or a step */n")
    t = Timing(text, None, tz)
    try:
        t.next_after(0.0)
    except Exception:
        raise ValueError(f"the cron expression {expr!r:.60} never fires (no date matches "
                         "it)") from None
    return text


def policy(overlap: Any = "skip", catch_up: Any = "once") -> tuple[str, str]:
    """``(overlap, catch_up)`` checked; ValueError naming the allowed values."""
    if overlap not in OVERLAPS:
        raise ValueError(f"overlap must be one of {', '.join(OVERLAPS)} (what a tick does "
                         f"while the previous run still runs), got {overlap!r:.50}")
    if catch_up not in CATCH_UPS:
        raise ValueError(f"catch_up must be one of {', '.join(CATCH_UPS)} (ticks missed while "
                         f"the engine was down), got {catch_up!r:.50}")
    return overlap, catch_up
