"""Retry policy with the Trigger.dev backoff formula."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class Retry:
    """How often and how soon a failed task attempt or step is tried again.

    ``max_attempts`` counts the first attempt. The delay after failed attempt N is
    ``min(max_timeout, r * min_timeout * factor**(N-1))`` seconds, with ``r`` uniform
    in [1, 2) when ``randomize`` is true, else 1.
    """

    max_attempts: int = 3
    factor: float = 2.0
    min_timeout: float = 1.0
    max_timeout: float = 60.0
    randomize: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"Retry.max_attempts must be at least 1, got {self.max_attempts}")
        if self.min_timeout < 0 or self.max_timeout < 0 or self.factor <= 0:
            raise ValueError("Retry timeouts must be >= 0 and factor > 0")

    def delay(self, attempt: int, r: float | None = None) -> float | None:
        """Seconds to wait before retrying after failed attempt ``attempt`` (1-based).

        None means no retry is left. ``r`` fixes the random factor (for tests).
        """
        if attempt >= self.max_attempts:
            return None
        if r is None:
            r = random.uniform(1.0, 2.0) if self.randomize else 1.0
        try:
            growth = float(self.factor) ** (attempt - 1)
        except OverflowError:  # many attempts of a large factor: the cap applies anyway
            growth = math.inf
        raw = 0.0 if self.min_timeout == 0 else min(self.max_timeout,
                                                     r * self.min_timeout * growth)
        return float(Decimal(repr(raw)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Retry | None:
        return cls(**d) if d else None

