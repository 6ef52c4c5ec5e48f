"""Lifecycle hooks of a task (``@dn.task(on_success=f, on_failure=f, on_cancel=f)``).

Each hook is a task of its own, ``<task id>.<kind>``, whose code is a ``HookCall``: the
engine runs it as a durable run when a run of the task ends (retried by ``Retry()``,
listed with the runs, linked to its run by ``hook_of``), with the ended run's id as its
one argument, and ``HookCall`` calls ``f(RunHandle(run_id))``. The engine fires it also
when the run ends by a crash, a timeout, an expiry or while the engine recovers, since
the hook run is created with the run's terminal status, not by the caller.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from ..core.hooks import HOOK_KINDS
from .handles import RunHandle


class HookCall:
    """The code of a hook task: calls the user's function with the ended run's handle.
    (Slots, no ``__dict__``: ``Task`` copies its function's ``__dict__`` onto itself.)"""

    __slots__ = ("fn", "kind", "__name__", "__qualname__")

    def __init__(self, fn: Callable[[RunHandle], Any], kind: str):
        self.fn = fn
        self.kind = kind
        self.__name__ = getattr(fn, "__name__", kind)
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)

    def __call__(self, run_id: str) -> Any:
        """``f(run)``; its return value is the hook run's output (an async ``f`` is run
        to its end here)."""
        out = self.fn(RunHandle(run_id))
        return asyncio.run(out) if inspect.iscoroutine(out) else out

    def __repr__(self) -> str:
        return f"<{self.kind} hook {self.__qualname__}>"


def checked_hooks(**hooks: Any) -> dict[str, Callable[[RunHandle], Any]]:
    """The hooks given (not None), each checked to be callable; TypeError naming one
    that is not."""
    out: dict[str, Callable[[RunHandle], Any]] = {}
    for kind in HOOK_KINDS:
        fn = hooks.get(kind)
        if fn is None:
            continue
        if not callable(fn):
            raise TypeError(f"{kind} must be a function taking the run's RunHandle, not "
                            f"{fn!r:.100}")
        out[kind] = fn
    return out
