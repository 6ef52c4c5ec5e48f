"""``dn.metadata`` and ``dn.progress``: what a run tells about itself while it executes,
read as ``RunHandle.metadata`` and ``RunHandle.progress`` and shown live in the run
widget, the JupyterLab panel and ``durable-nb show``.

Both work inside a task run or a ``%%durable`` cell (they go through the worker's run
context, ``worker.run_info``); elsewhere they raise a ``DurableError`` that says so.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import DurableError
from ..worker import context as _context


def _context_for(what: str) -> _context.RunContext:
    ctx = _context.current()
    if ctx is None:
        raise DurableError(
            f"{what} reports on the run it is called in, so it only works inside a task run "
            "or a %%durable cell: call it from a function decorated with @dn.task (and "
            "trigger that task) or in a %%durable cell")
    return ctx


class RunMetadata:
    """The current run's metadata: a JSON object of at most 256 KB. Each change is durable
    when the call returns, and is applied once even if the code around it re-executes
    (after a wait, a retry or a crash); a change the run cannot take raises (TypeError,
    ValueError, PayloadTooLarge) and leaves the metadata as it was."""

    def set(self, key: str, value: Any) -> None:
        """``metadata[key] = value`` (JSON: str, number, bool, None, lists, dicts)."""
        _context_for("dn.metadata.set").reports.change("set", key, value)

    def increment(self, key: str, n: int | float = 1) -> None:
        """``metadata[key] += n`` (a missing key counts from 0)."""
        _context_for("dn.metadata.increment").reports.change("increment", key, n)

    def append(self, key: str, value: Any) -> None:
        """``metadata[key].append(value)`` (a missing key starts an empty list)."""
        _context_for("dn.metadata.append").reports.change("append", key, value)

    def __repr__(self) -> str:
        return ("<dn.metadata: set(key, value), increment(key, n=1), append(key, value) "
                "inside a run; read it with RunHandle.metadata>")


metadata = RunMetadata()


def progress(done: int | float, total: int | float | None = None,
             text: str | None = None) -> None:
    """Report the current run's progress: ``done`` of ``total`` (None when unknown: an
    indeterminate bar) with an optional ``text``. Shown as a bar in the run widget, the
    JupyterLab panel and ``durable-nb show``; read with ``RunHandle.progress``. Cheap:
    sent at most about ten times a second, without waiting (the last value always
    arrives). A tqdm bar in a run reports by itself."""
    _context_for("dn.progress").reports.progress(done, total, text)
