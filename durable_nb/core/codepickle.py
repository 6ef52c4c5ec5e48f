"""cloudpickle that keeps where the code it pickles comes from.

cloudpickle names every code object it pickles by value ``<dynamic-code>``, so a function
defined in a notebook fails in a worker with a frame that has neither a file nor a source
line. These pickles keep each code object's file name and, for code whose file is not on
disk (a notebook cell: IPython keeps its text in ``linecache``), carry the cell's text and
its label (``Cell In[5]``, as IPython names it). Unpickling registers both, so that the
worker's tracebacks show the lines, and ``cell_label`` gives the label that tracebacks show
in place of the kernel's temporary file name.
"""

from __future__ import annotations

import io
import linecache
import os
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

import cloudpickle

_DYNAMIC = "<dynamic-code>"  # the file name cloudpickle gives the code it pickles by value
_LABELS: dict[str, str] = {}  # a cell's file name -> its label, for cells unpickled here
_code_reduce: Callable[[types.CodeType], tuple] | None = getattr(
    getattr(cloudpickle, "cloudpickle", None), "_code_reduce", None)


def cell_label(filename: str) -> str | None:
    """``Cell In[5]`` for the file name a notebook cell was compiled under, else None."""
    label = _LABELS.get(filename)
    if label is not None:
        return label
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    fmt = getattr(getattr(shell, "compile", None), "format_code_name", None)
    try:
        named = fmt(filename) if fmt is not None else None
    except Exception:
        return None
    return " ".join(named) if named else None


def register_cell(filename: str, label: str | None, text: str | None) -> None:
    """Make ``text`` the source lines of ``filename`` for tracebacks (unless this process
    has them already: a kernel knows its own cells) and ``label`` its label."""
    if label:
        _LABELS[filename] = label
    entry = linecache.cache.get(filename)
    if text is not None and (entry is None or len(entry) == 1):  # absent, or lazy
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)


def _restore_code(filename: str, label: str | None, text: str | None,
                  make: Callable[..., types.CodeType], args: tuple) -> types.CodeType:
    """Unpickles a code object of a notebook cell and registers the cell's source."""
    register_cell(filename, label, text)
    return make(*args)


def _cell_source(filename: str) -> str | None:
    """The text of a file that only ``linecache`` has (a notebook cell), else None."""
    if filename.startswith("<") and filename.endswith(">") and not cell_label(filename):
        return None  # <string>, <durable cell>: no cell of this kernel
    lines = linecache.cache.get(filename)
    if lines is None or len(lines) == 1 or os.path.exists(filename):
        return None
    return "".join(lines[2])


class Pickler(cloudpickle.Pickler):
    """cloudpickle's pickler, with code objects that keep their file name and cell source."""

    def __init__(self, file: io.BytesIO, protocol: int = pickle.HIGHEST_PROTOCOL):
        super().__init__(file, protocol=protocol)
        self._cells: dict[str, tuple[str | None, str | None]] = {}

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType and _code_reduce is not None:
            reduced = self._reduce_code(obj)
            if reduced is not None:
                return reduced
        return super().reducer_override(obj)

    def _reduce_code(self, code: types.CodeType) -> tuple | None:
        assert _code_reduce is not None
        make, args = _code_reduce(code)
        at = [i for i, a in enumerate(args) if isinstance(a, str) and a == _DYNAMIC]
        if len(at) != 1:
            return None  # a cloudpickle whose code layout we do not know: its own reduction
        name = code.co_filename
        args = args[:at[0]] + (name,) + args[at[0] + 1:]
        if name not in self._cells:  # the same objects each time: pickled once, then memoized
            text = _cell_source(name)
            self._cells[name] = (cell_label(name) if text is not None else None, text)
        label, text = self._cells[name]
        if text is None:
            return make, args
        return _restore_code, (name, label, text, make, args)


def dumps(value: Any, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    """``cloudpickle.dumps(value)``, with the file names and cell sources of its code."""
    with io.BytesIO() as f:
        Pickler(f, protocol=protocol).dump(value)
        return f.getvalue()
