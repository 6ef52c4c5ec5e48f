"""Parse human durations such as "10m", "1d", "1h30m", 45 or 2.5 (seconds)."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = 10 * 365.25 * 86400  # the longest delay, ttl or timeout we accept
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")


def parse_duration(value: str | float | int | None) -> float | None:
    """Seconds for ``value``; None stays None. Raises ValueError on malformed text."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0 or value > MAX_DURATION:
            raise ValueError(f"a duration must be a finite number of seconds from 0 to "
                             f"{MAX_DURATION:.0f} (10 years), got {value!r}")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    try:
        return parse_duration(float(text))
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"not a duration: {value!r} (use seconds, or text like '30s', '10m', '1h30m', '1d')"
        )
    return parse_duration(total)
