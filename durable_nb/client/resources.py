"""``dn.resource``: a connection or client made again on every attempt, never checkpointed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..worker import context as _context

T = TypeVar("T")


def resource(name: str, factory: Callable[[], T], close: bool = True) -> T:
    """``factory()``'s value, made once per attempt of the run and made again on every new
    attempt or resume instead of being checkpointed.

    Inside a task or a ``%%durable`` cell, the first call with ``name`` in an attempt calls
    ``factory``; every later call with that name in the attempt returns the same object
    (also with another factory: the first one made it). A retry, a resume after a killed
    worker or a wait makes it anew, so a ``sqlite3`` connection or an HTTP client survives
    a crash with no reconnect code::

        db = dn.resource("db", lambda: sqlite3.connect(path))

    In a cell, a variable holding a resource is left out of the checkpoints; a resume calls
    the factory again (pickled by value with what it reads) to bind that variable. It is
    not brought back to the kernel. At the end of each attempt a resource with a
    ``close()`` method is closed, unless ``close=False``.

    Outside a run it is a plain call: ``factory()``, made anew at each call.
    """
    ctx = _context.current()
    if ctx is None:
        _context.Resources.check(name, factory)  # the same checks as inside a run
        return factory()
    value: Any = ctx.resources.get(name, factory, close)
    return value
