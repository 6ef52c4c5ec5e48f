"""Queues: a name shared by tasks, with a concurrency limit and a rate limit (``Rate``).

The limits declared on a ``Queue`` travel with each task's options and are applied again
at each trigger; ``Queue.set_limit`` changes them at once through the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.durations import parse_duration
from .client import get_client


@dataclass(frozen=True)
class Rate:
    """At most ``limit`` attempt starts in any window of length ``per`` (a duration such
    as ``"1m"``, or seconds): a sliding window, never a burst past it."""

    limit: int
    per: Any = "1m"

    def __post_init__(self) -> None:
        seconds = parse_duration(self.per)
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"Rate limit must be a positive whole number, not {self.limit!r}")
        if seconds is None or seconds <= 0:
            raise ValueError(f"Rate per must be a duration above 0, not {self.per!r}")

    def to_dict(self) -> dict:
        return {"limit": self.limit, "per": parse_duration(self.per)}


_UNCHANGED: Any = object()


class Queue:
    """A named queue shared by tasks. ``concurrency_limit`` counts executing runs only;
    ``rate_limit`` (``dn.Rate(limit, per)``) bounds how many attempts start in any window
    of ``per``. Both apply per concurrency key, and the ones declared here are applied
    again at each trigger."""

    def __init__(self, name: str, concurrency_limit: int | None = None,
                 rate_limit: Rate | None = None):
        if concurrency_limit is not None and concurrency_limit < 1:
            raise ValueError("concurrency_limit must be a positive integer or None")
        if rate_limit is not None and not isinstance(rate_limit, Rate):
            raise TypeError("rate_limit must be a dn.Rate(limit, per=...) or None")
        self.name = name
        self.concurrency_limit = concurrency_limit
        self.rate_limit = rate_limit

    def __repr__(self) -> str:
        rate = f", rate_limit={self.rate_limit}" if self.rate_limit else ""
        return f"Queue({self.name!r}, concurrency_limit={self.concurrency_limit}{rate})"

    def set_limit(self, concurrency_limit: int | None,
                  rate_limit: Rate | None = _UNCHANGED) -> None:
        """Change the limits now; they apply at once to runs already queued (the rate
        limit only when given: None removes it)."""
        body: dict[str, Any] = {"concurrency_limit": concurrency_limit}
        if rate_limit is not _UNCHANGED:
            body["rate_limit"] = rate_limit.to_dict() if rate_limit else None
            self.rate_limit = rate_limit
        get_client().request("PUT", f"/queues/{self.name}", body)
        self.concurrency_limit = concurrency_limit

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "concurrency_limit": self.concurrency_limit}
        if self.rate_limit is not None:  # only when set: other tasks' hashes stay the same
            out["rate_limit"] = self.rate_limit.to_dict()
        return out
