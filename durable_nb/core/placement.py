"""Where a task's attempts may run: its ``resources`` and ``executor`` options, checked
the same way by the client (at ``@dn.task``) and by the engine (when a task registers)."""

from __future__ import annotations

import math
from typing import Any

EXECUTORS = ("local", "dask")
MAX_RESOURCES = 32


def check_executor(value: Any) -> str | None:
    """``value`` if it names an executor (or is None: the engine's own); ValueError else."""
    if value is None or value in EXECUTORS:
        return value
    raise ValueError(f"executor must be one of {', '.join(EXECUTORS)} or None, not {value!r}")


def check_resources(value: Any) -> dict[str, float] | None:
    """``value`` as Dask worker resources ({name: amount > 0}); ValueError when not."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict) or len(value) > MAX_RESOURCES:
        raise ValueError(f"resources must be a dict of at most {MAX_RESOURCES} names to "
                         f"amounts, such as {{'GPU': 1}}, not {value!r:.100}")
    out: dict[str, float] = {}
    for name, amount in value.items():
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ValueError(f"a resource name must be a non-empty text of at most 100 "
                             f"characters, not {name!r:.100}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) \
                or not math.isfinite(amount) or amount <= 0:
            raise ValueError(f"resource {name!r} needs a positive number, not {amount!r:.100}")
        out[name] = amount
    return out
