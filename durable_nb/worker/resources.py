"""Resources: values made by a factory once per attempt and never checkpointed.

``dn.resource(name, factory)`` inside a run returns ``factory()``'s value, made on its
first call in the attempt; every later call with the same name in that attempt returns the
same object, even with another factory (the first one made it). A new attempt (a retry, a
resume after a crash or a wait) makes it anew, so a sqlite3 connection or an HTTP client
survives a killed worker without reconnect code. At the end of an attempt each resource
that has a ``close()`` method is closed (unless made with ``close=False``), newest first.

In a ``%%durable`` cell a variable that holds a resource is left out of the checkpoints
(which could not pickle it); the checkpoint keeps instead which variable held which
resource and its factory (pickled by value, with what it reads), under ``BINDINGS``, and a
resume calls the factories again to bind those variables before the next statement runs.
``%%durable --resource db="sqlite3.connect(path)"`` evaluates the expression in the
cell's namespace at the start of every attempt and binds ``db`` to it. A resource is not
brought back to the kernel with the cell's variables.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core import codepickle
from ..core import serial as _serial
from ..core.checkpoints import RESOURCE_BINDINGS
from ..core.errors import NotPicklable

BINDINGS = RESOURCE_BINDINGS  # the checkpoint's: {var: (name, pickled factory, close)}
MAX_NAME = 200
_SHARED = (type(None), bool, int, float, str, bytes)


@dataclass
class _Made:
    value: Any
    factory: Callable[[], Any] | None  # None: declared by --resource (re-made from its text)
    close: bool
    pickled: bytes | None = field(default=None, repr=False)  # the factory, once pickled


class Resources:
    """The resources of one attempt."""

    def __init__(self) -> None:
        self._made: dict[str, _Made] = {}
        self._lock = threading.RLock()

    @staticmethod
    def check(name: Any, factory: Any) -> None:
        """``dn.resource``'s arguments, checked where it is called (also outside a run)."""
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise ValueError(f"a resource's name must be a non-empty string of at most "
                             f"{MAX_NAME} characters, got {name!r}")
        if not callable(factory):
            raise TypeError(f"dn.resource({name!r}, factory): factory must be callable (it "
                            f"makes the resource, e.g. lambda: sqlite3.connect(path)), got "
                            f"{type(factory).__name__}")

    def get(self, name: str, factory: Callable[[], Any], close: bool = True) -> Any:
        """The resource ``name`` of this attempt, made by ``factory`` on its first call."""
        self.check(name, factory)
        with self._lock:
            made = self._made.get(name)
            if made is None:
                made = _Made(factory(), factory, bool(close))
                self._made[name] = made
            return made.value

    def declare(self, var: str, expression: str, ns: dict) -> None:
        """``--resource var=expression``: evaluated in the cell's namespace, bound to ``var``."""
        with self._lock:
            if var not in self._made:
                code = compile(expression, f"<--resource {var}>", "eval")
                self._made[var] = _Made(eval(code, ns), None, True)
            ns[var] = self._made[var].value

    def bind_cell(self, ns: dict, declared: Mapping[str, str]) -> None:
        """At the start of a cell's attempt: make the ``--resource`` ones, then bind the
        variables a restored checkpoint names (``BINDINGS``) to their resources anew."""
        for var, expression in declared.items():
            self.declare(var, expression, ns)
        self.restore(ns)

    def bound(self, variables: Mapping[str, Any]) -> dict[str, str]:
        """Variable -> resource name, for the variables that hold a resource."""
        ids = {id(m.value): n for n, m in self._made.items()
               if not isinstance(m.value, _SHARED)}  # None, 1, "x": the same object anywhere
        return {var: ids[id(v)] for var, v in variables.items() if id(v) in ids}

    def checkpointed(self, variables: dict[str, Any], statement: int) -> dict[str, Any]:
        """``variables`` as a checkpoint keeps them: without those holding a resource,
        with ``BINDINGS`` naming each one's resource and factory."""
        bound = self.bound(variables)
        if not bound:
            return variables
        out = {k: v for k, v in variables.items() if k not in bound}
        out[BINDINGS] = {var: (name, self._pickled(name, var, statement),
                               self._made[name].close)
                         for var, name in sorted(bound.items())}
        return out

    def restore(self, ns: dict) -> None:
        """After a checkpoint was restored into ``ns``: bind its resource variables anew."""
        bindings = ns.pop(BINDINGS, None) or {}
        for var, (name, data, close) in bindings.items():
            made = self._made.get(name)
            if made is None and data is not None:
                self.get(name, _serial.loads(data), close)
                made = self._made[name]
            if made is not None:
                ns[var] = made.value

    def close(self) -> None:
        """The attempt ends: close what has ``close()``, newest first; never raises."""
        with self._lock:
            made, self._made = list(self._made.items()), {}
        for name, m in reversed(made):
            closer = getattr(m.value, "close", None)
            if not m.close or not callable(closer):
                continue
            try:
                closer()
            except Exception as exc:  # the attempt's outcome stands; say what happened
                print(f"[durable] resource '{name}' did not close: {type(exc).__name__}: "
                      f"{exc}", file=sys.stderr)

    def _pickled(self, name: str, var: str, statement: int) -> bytes | None:
        made = self._made[name]
        if made.factory is None:
            return None  # --resource: made again from the cell's options
        if made.pickled is None:
            try:
                made.pickled = codepickle.dumps(made.factory)
            except Exception as exc:  # pickling raises many types
                raise NotPicklable(
                    f"cannot checkpoint after statement {statement}: variable '{var}' holds "
                    f"resource '{name}', whose factory cannot be pickled ({type(exc).__name__}"
                    f": {exc}), so a resume could not make it again. Pass a function or a "
                    "lambda of values that pickle, e.g. dn.resource('db', lambda: "
                    "sqlite3.connect(path)).") from None
        return made.pickled


def cell_variables(ns: Mapping[str, Any], resources: Resources) -> list[str]:
    """The names a completed cell lists as its variables: not its resources."""
    bound = resources.bound(ns)
    return sorted(k for k in ns if k not in bound and k != BINDINGS)
