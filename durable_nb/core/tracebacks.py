"""A worker's traceback as its user wants to read it: the user's frames, not durable_nb's.

A task or cell that fails in a worker reports the whole traceback, durable_nb's own
frames (the worker loop, the cell runner) included. Kernels show it without them, with
the lines of a ``%%durable`` cell (``<durable cell>``, which has no file) filled in.
"""

from __future__ import annotations

import os
import re

CELL_FILE = "<durable cell>"  # the file name a %%durable cell's code is compiled under
# durable_nb's own folder, as imported and with links resolved
_PKG_DIRS = tuple({os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
                   os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep})
# a frame ('File "x.py", line 3, in f') or a syntax error's location ('File "x.py", line 3')
_FRAME = re.compile(r'^\s*File "(.*)", line (\d+)(, in )?')
_OUR_TYPE = re.compile(r"^durable_nb(?:\.\w+)+?\.(?=[A-Z])")


def clean_traceback(tb: str | None, source: str | None = None) -> list[str]:
    """The lines of ``tb`` without durable_nb's frames (each with its source lines), the
    cell's source line under each of its frames (``source``: the cell's code), and
    durable_nb's exception types without their module (``NotPicklable``, not
    ``durable_nb.core.errors.NotPicklable``); [] when no frame of the user's code is left."""
    cell = source.splitlines() if source else []
    out: list[str] = []
    skipping = False
    user_frames = 0
    for line in (tb or "").rstrip("\n").splitlines():
        m = _FRAME.match(line)
        if m:
            skipping = m.group(1).startswith(_PKG_DIRS)
            if not skipping:
                user_frames += 1
                out.append(line)
                lineno = int(m.group(2))
                if m.group(3) and m.group(1) == CELL_FILE and 0 < lineno <= len(cell):
                    out.append("    " + cell[lineno - 1].strip())
            continue
        if skipping and line.startswith("    "):
            continue  # a source line (or caret) of one of our frames
        skipping = False
        out.append(_OUR_TYPE.sub("", line))
    return out if user_frames else []


def user_traceback(tb: str | None) -> str | None:
    """``tb`` as text without durable_nb's frames; ``tb`` unchanged (None and '' too) when
    none of the user's frames is in it, so that nothing is hidden."""
    lines = clean_traceback(tb)
    if not lines:
        return tb
    return "\n".join(lines) + ("\n" if tb and tb.endswith("\n") else "")
