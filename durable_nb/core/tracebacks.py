"""A worker's traceback as its user wants to read it: the user's frames, not durable_nb's.

A task or cell that fails in a worker has durable_nb's own frames (the worker loop, the
step wrapper, the cell runner) in its traceback. The worker stores it without them, with
the frames of notebook cells named as IPython names them (``Cell In[5]``, see
``codepickle``), and keeps the whole text beside it; kernels fill in the lines of a
``%%durable`` cell (``<durable cell>``, which has no file).
"""

from __future__ import annotations

import os
import re
import sysconfig

from .codepickle import cell_label

CELL_FILE = "<durable cell>"  # the file name a %%durable cell's code is compiled under
# durable_nb's own folder, as imported and with links resolved
_PKG_DIRS = tuple({os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
                   os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep})
# Python's own modules (asyncio's runner, threading): left out before the user's first frame
_STDLIB = tuple({os.path.join(sysconfig.get_paths()["stdlib"], ""),
                 os.path.join(os.path.realpath(sysconfig.get_paths()["stdlib"]), "")})
# a frame ('File "x.py", line 3, in f') or a syntax error's location ('File "x.py", line 3')
_FRAME = re.compile(r'^\s*File "(.*)", line (\d+)')
_OUR_TYPE = re.compile(r"^durable_nb(?:\.\w+)+?\.(?=[A-Z])")


def _internal(filename: str, leading: bool) -> bool:
    """A frame of durable_nb, or of Python's library before the user's first frame."""
    if filename.startswith(_PKG_DIRS):
        return True
    return leading and filename.startswith(_STDLIB) and "-packages" + os.sep not in filename


def clean_traceback(tb: str | None, source: str | None = None) -> list[str]:
    """The lines of ``tb`` without durable_nb's frames (each with its source lines), notebook
    cells named by their label (``File "Cell In[5]", line 6``), the source line under each
    frame of the %%durable cell (``source``: the cell's code) that has none, and
    durable_nb's exception types without their module (``NotPicklable``, not
    ``durable_nb.core.errors.NotPicklable``); [] when no frame of the user's code is left.
    Cleaning a cleaned traceback changes nothing."""
    cell = source.splitlines() if source else []
    lines = (tb or "").rstrip("\n").splitlines()
    out: list[str] = []
    skipping = False
    leading = True  # no frame of the user's yet in this part of the traceback
    user_frames = 0
    for i, line in enumerate(lines):
        m = _FRAME.match(line)
        if m:
            name = m.group(1)
            skipping = _internal(name, leading)
            if skipping:
                continue
            leading = False
            user_frames += 1
            label = cell_label(name)
            out.append(line if label is None else line.replace(f'"{name}"', f'"{label}"', 1))
            lineno = int(m.group(2))
            has_line = i + 1 < len(lines) and lines[i + 1].startswith("    ")
            if name == CELL_FILE and not has_line and 0 < lineno <= len(cell):
                out.append("    " + cell[lineno - 1].strip())
            continue
        if skipping and line.startswith("    "):
            continue  # a source line (or caret) of one of our frames
        skipping = False
        if line.startswith("Traceback (most recent call last):"):
            leading = True  # a chained exception's traceback begins
        out.append(_OUR_TYPE.sub("", line))
    return out if user_frames else []


def user_traceback(tb: str | None) -> str | None:
    """``tb`` as text without durable_nb's frames; ``tb`` unchanged (None and '' too) when
    none of the user's frames is in it, so that nothing is hidden."""
    lines = clean_traceback(tb)
    if not lines:
        return tb
    return "\n".join(lines) + ("\n" if tb and tb.endswith("\n") else "")
