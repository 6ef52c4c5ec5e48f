"""The interface between the engine and whatever executes attempts.

The engine asks a pool for idle workers, hands each an attempt (``send({"op": "run",
...})``), and hears back through three callbacks: a worker is ready, a worker sent a
message, a worker exited. ``processes.ProcessPool`` runs one subprocess per worker (what
users run); ``durable_nb.testing`` has in-process pools for deterministic tests. Messages
are the dicts of ``core.protocol``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Worker(Protocol):
    """One worker as the engine sees it."""

    pid: int
    run: Any  # the engine's Run it executes, or None when idle
    ready: bool

    def send(self, msg: dict) -> None: ...

    def kill(self) -> None: ...

    @property
    def exit_code(self) -> int | None:
        """The exit status once the worker ended (None while it lives)."""


class WorkerPool(Protocol):
    """Starts and stops workers; ``ensure`` is a hint of how many idle ones are wanted."""

    @property
    def workers(self) -> list[Any]: ...

    def idle(self) -> list[Any]: ...

    def ensure(self, wanted_idle: int) -> None: ...

    async def close(self) -> None: ...


@dataclass
class PoolEvents:
    """The engine's callbacks, given to a pool when the engine starts it."""

    on_ready: Callable[[Any], None]
    on_message: Callable[[Any, dict], None]
    on_exit: Callable[[Any], None]
    # an attempt's worker became known after it started (a Dask task connected back)
    on_placed: Callable[[Any], None] = lambda worker: None


# How an engine gets its pool: called once at start with the engine's callbacks.
PoolFactory = Callable[[PoolEvents], WorkerPool]
