"""``dn.Debounce``: triggers of a task with the same key collapse into one run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.debounce import checked_debounce


@dataclass(frozen=True)
class Debounce:
    """Collapse the triggers of one task that carry the same ``key`` into one run.

    ``mode="trailing"`` (the default): the run starts ``delay`` after the latest trigger,
    with the latest trigger's payload (its other options stay those of the first); a
    trigger after its delay is over makes a new run.
    ``mode="leading"``: the first trigger's run starts at once, and the triggers within
    ``delay`` of the latest one return that run. ``delay`` is a duration ("5s", "10m", or
    seconds) above 0 and at most a day; ``key`` is text of at most 200 characters.

    ``task.trigger(x, debounce=dn.Debounce("user-42", delay="5s"))``
    """

    key: str
    delay: Any = "5s"
    mode: str = "trailing"

    def __post_init__(self) -> None:
        spec = checked_debounce(self.key, self.delay, self.mode)
        object.__setattr__(self, "delay", spec.delay)  # seconds from here on

    def to_dict(self) -> dict:
        """As ``POST /runs`` takes it: {"key", "delay" (seconds), "mode"}."""
        return {"key": self.key, "delay": self.delay, "mode": self.mode}


IN_A_RUN = ("debounce and traceparent are for triggers from outside a run: inside one, a "
            "child trigger is made once per occurrence already, and child runs join their "
            "parent's trace")


def debounce_fields(debounce: Any, idempotency_key: Any, delay: Any) -> dict:
    """The ``debounce`` field of a trigger's body ({} without one); ValueError for a
    value that is not a ``dn.Debounce`` or one combined with idempotency_key or delay."""
    if debounce is None:
        return {}
    if not isinstance(debounce, Debounce):
        raise ValueError(f"debounce must be a dn.Debounce(key, delay='5s', mode='trailing'), "
                         f"not {type(debounce).__name__}")
    if idempotency_key is not None or delay is not None:
        raise ValueError("debounce cannot be combined with idempotency_key or delay: the "
                         "debounce key already picks the run, and its delay sets the start")
    return {"debounce": debounce.to_dict()}
