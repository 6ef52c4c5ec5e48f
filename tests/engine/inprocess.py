"""Shared helpers of the in-process engine tests (``durable_nb.testing.EngineHarness``)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from durable_nb.core.retry import Retry

NO_RETRY = Retry(max_attempts=1)


def retry(n: int, delay: float) -> Retry:
    """``n`` attempts, ``delay`` seconds apart (no jitter, no growth)."""
    return Retry(max_attempts=n, min_timeout=delay, max_timeout=max(delay, 60.0), factor=1,
                 randomize=False)


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper
