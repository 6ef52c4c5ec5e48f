"""Debounce options, checked alike by the client (``dn.Debounce``) and the engine.

Triggers of one task with the same debounce key collapse into one run: "trailing" waits
until ``delay`` has passed since the latest trigger and runs with the last payload;
"leading" runs at once with the first payload and swallows the triggers that follow
within ``delay`` of the latest one (``engine.debounce``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .durations import parse_duration
from .serial import clean_text

MODES = ("trailing", "leading")
MAX_KEY = 200  # characters of a debounce key
MAX_DELAY = 86400.0  # a window of a day at most


class DebounceSpec(NamedTuple):
    """A checked debounce: its key, its delay in seconds and its mode."""

    key: str
    delay: float
    mode: str


def checked_debounce(key: Any, delay: Any, mode: Any = "trailing") -> DebounceSpec:
    """The debounce of ``key``, ``delay`` (a duration such as "5s", or seconds) and
    ``mode``; ValueError saying what is wrong and what is allowed."""
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
        raise ValueError(f"debounce key must be non-empty text of at most {MAX_KEY} "
                         f"characters, got {key!r:.80}")
    try:
        seconds = parse_duration(delay)
    except ValueError as exc:
        raise ValueError(f"debounce delay: {exc}") from None
    if seconds is None or not 0 < seconds <= MAX_DELAY:
        raise ValueError(f"debounce delay must be a duration above 0 and at most 1 day "
                         f"(e.g. '5s', '10m', or seconds), got {delay!r:.50}")
    if mode not in MODES:
        raise ValueError(f"debounce mode must be 'trailing' or 'leading', got {mode!r:.50}")
    return DebounceSpec(clean_text(key), float(seconds), str(mode))


def debounce_of(value: Any) -> DebounceSpec | None:
    """The checked debounce of a request's ``{"key", "delay", "mode"}`` (None stays None)."""
    if value is None:
        return None
    if isinstance(value, DebounceSpec):
        return value
    if not isinstance(value, dict) or set(value) - {"key", "delay", "mode"}:
        raise ValueError(f"debounce must be {{'key': text, 'delay': seconds, 'mode': "
                         f"'trailing' or 'leading'}}, got {value!r:.100}")
    return checked_debounce(value.get("key"), value.get("delay"),
                            value.get("mode", "trailing"))
