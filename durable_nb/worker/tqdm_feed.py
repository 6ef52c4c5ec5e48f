"""tqdm bars of a run feed its progress (``dn.progress``): the outermost open bar of the
run reports its count, total and description as it redraws, and its last value when it
closes.

tqdm is never imported here. ``install`` patches ``tqdm.std.tqdm`` when tqdm is already
loaded, and otherwise adds an import hook that patches it as soon as the run (or anything)
imports it; ``tqdm.auto``, ``tqdm.notebook`` and ``tqdm.asyncio`` bars are subclasses and
call the patched methods. The patch is for the whole worker process and consults the run
context of the calling thread: outside a run, or for a bar opened before the run, it does
nothing.
"""

from __future__ import annotations

import functools
import importlib.abc
import math
import sys
import weakref
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from . import context as _context

_MARK = "_durable_nb_progress"
_hook: _Finder | None = None


def install() -> None:
    """Make tqdm bars report progress in this process, now or once tqdm is imported."""
    global _hook
    std = sys.modules.get("tqdm.std")
    if std is not None:
        patch(std)
        return
    if _hook is None:
        _hook = _Finder()
        sys.meta_path.insert(0, _hook)


def patch(std: ModuleType) -> None:
    """Wrap ``tqdm.std.tqdm``'s ``__init__``, ``refresh`` and ``close`` (once)."""
    cls = getattr(std, "tqdm", None)
    if cls is None or getattr(cls, _MARK, False):
        return
    init, refresh, close = cls.__init__, cls.refresh, cls.close

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        ctx = _context.current()
        if ctx is not None:  # before tqdm's own __init__, which draws the bar once
            _register(ctx, self)
        init(self, *args, **kwargs)
        _report(self)

    @functools.wraps(refresh)
    def refresh_(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = refresh(self, *args, **kwargs)
        _report(self)
        return out

    @functools.wraps(close)
    def close_(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = _is_outermost(self)
        out = close(self, *args, **kwargs)
        if outer:
            _report(self, final=True)
        return out

    cls.__init__, cls.refresh, cls.close = __init__, refresh_, close_
    setattr(cls, _MARK, True)


def _closed(bar: Any) -> bool:
    return bar is None or getattr(bar, "disable", False) is True  # tqdm sets it on close


def _outermost(ctx: _context.RunContext) -> Any:
    """The run's oldest bar still open or being built (closed and collected bars are
    dropped)."""
    bars = ctx.reports.bars
    while bars:
        bar = bars[0]()
        if not _closed(bar):
            return bar
        bars.pop(0)
    return None


def _register(ctx: _context.RunContext, bar: Any) -> None:
    bars = ctx.reports.bars
    if len(bars) >= 64:  # inner bars of a long outer loop: keep the open ones only
        bars[:] = [ref for ref in bars if not _closed(ref())]
    bars.append(weakref.ref(bar))


def _is_outermost(bar: Any) -> bool:
    ctx = _context.current()
    return ctx is not None and _outermost(ctx) is bar


def _report(bar: Any, final: bool = False) -> None:
    """Report ``bar`` as the run's progress if it is the run's outermost bar. Never
    raises: a progress report must not break the user's loop."""
    try:
        ctx = _context.current()
        if ctx is None or (not final and _outermost(ctx) is not bar):
            return
        done = bar.n if isinstance(bar.n, (int, float)) and math.isfinite(bar.n) else 0
        total = bar.total
        if not (isinstance(total, (int, float)) and math.isfinite(total) and total > 0):
            total = None
        text = bar.desc if isinstance(bar.desc, str) and bar.desc else None
        ctx.reports.progress(max(done, 0), total, text, final=final)
    except Exception:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    """Patches ``tqdm.std`` right after it is first imported."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> Any:
        if name != "tqdm.std":
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    """The real loader of ``tqdm.std``, then ``patch``; the module keeps the real loader."""

    def __init__(self, loader: Any):
        self.loader = loader

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        patch(module)
