"""Whether the JupyterLab panel is installed, said once when the server extension starts.

A source install without Node.js 20+ skips building the panel (see ``hatch_build.py``),
and pip hides that build output unless the build fails, so the server says it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

NAME = "durable_nb"
MISSING = (
    'durable_nb: the JupyterLab "Durable runs" panel is not installed (this copy was '
    "installed from source without Node.js 20+); runs, approvals, widgets and the API work "
    "without it. To get the panel, install Node.js 20+ with npm and reinstall durable_nb "
    "from source, or install its wheel."
)

_said = False


def labextension_dirs() -> list[str]:
    """The folders JupyterLab and Notebook 7 look in for prebuilt extensions."""
    from jupyter_core.paths import jupyter_path

    return jupyter_path("labextensions")


def panel_installed(dirs: Iterable[str] | None = None) -> bool:
    """True when a built panel (its package.json and static files) is in one of ``dirs``."""
    for d in labextension_dirs() if dirs is None else dirs:
        ext = Path(d) / NAME
        if (ext / "package.json").is_file() and (ext / "static").is_dir():
            return True
    return False


def warn_if_panel_missing(log: logging.Logger | logging.LoggerAdapter,
                          dirs: Iterable[str] | None = None) -> bool:
    """Log one line, once per process, when the panel is not installed; True if it is."""
    global _said
    if panel_installed(dirs):
        return True
    if not _said:
        _said = True
        log.warning(MISSING)
    return False
