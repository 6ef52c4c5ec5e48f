"""dill workloads 9 and 10, run inside the ``dill`` venv.

The statements run in a plain module namespace, as a notebook kernel's would; after
each one, ``dill.dump_module`` (``dump_session`` before dill 0.3.6) writes the whole
namespace to a new file, which is fsynced and renamed over the previous one (then
the folder is fsynced), so that the file on disk is always one complete session.
This is the plain way to make a namespace durable with no change detection: every
statement rewrites every byte.
"""

from __future__ import annotations

import os
import time
import types
from typing import Any

import _common as c
import _data as d
import dill


def _dump(module: types.ModuleType, path: str) -> int:
    """Write the module's namespace durably to ``path``; bytes written."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        if hasattr(dill, "dump_module"):
            dill.dump_module(f, module=module)
        else:  # dill < 0.3.6
            dill.dump_session(f, main=module)
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


def _run(kind: str, n: int, work: str, p: dict[str, Any]) -> c.Result:
    nrows = d.rows(p)
    floors = d.inline_floors(work, nrows)
    path = os.path.join(work, "session.pkl")
    ns = types.ModuleType("__main__")
    exec(d.IMPORTS, ns.__dict__)
    exec(compile(f"df = {d.build_expr(nrows)}", "<cell>", "exec"), ns.__dict__)
    t = time.perf_counter()
    first = _dump(ns, path)
    first_s = time.perf_counter() - t
    times, written = [], []
    for stmt in d.statements(kind, n):
        t = time.perf_counter()
        exec(compile(stmt, "<cell>", "exec"), ns.__dict__)
        written.append(_dump(ns, path))
        times.append(time.perf_counter() - t)
    check = dill.load_module(path) if hasattr(dill, "load_module") else None
    if check is not None and len(getattr(check, "df", ())) != nrows:
        raise RuntimeError("the last session file does not hold the frame")
    return d.figures(kind, times, written, nrows, floors, first_s, first_file_mb=first / 1e6,
                     dill=dill.__version__)



if __name__ == "__main__":
    c.run_main(d.workloads(_run))
