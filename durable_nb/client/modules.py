"""A Python module as one file to ship to Dask workers (``Client.upload_module``).

A plain module travels as its source, ``NAME.py``; a package as ``NAME.zip`` holding the
package's folder (without compiled files), which Python imports from when the zip is on
``sys.path``. A submodule (``pkg.sub``) ships its whole top-level package.
"""

from __future__ import annotations

import importlib
import io
import os
import zipfile
from types import ModuleType

SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints"}


def module_file(module: ModuleType | str) -> tuple[str, bytes]:
    """(file name, bytes) to upload for ``module`` (a module or its importable name)."""
    name = module if isinstance(module, str) else module.__name__
    top = name.split(".")[0]
    mod = importlib.import_module(top)
    path = getattr(mod, "__file__", None)
    if not path:
        raise ValueError(f"module '{top}' has no source file to ship (a built-in or "
                         "namespace module); install it on the Dask workers instead")
    if hasattr(mod, "__path__"):  # a package: its folder, zipped
        return f"{top}.zip", _zip(os.path.dirname(path), top)
    if not path.endswith(".py"):
        raise ValueError(f"module '{top}' is compiled ({os.path.basename(path)}); install "
                         "it on the Dask workers instead")
    with open(path, "rb") as f:
        return f"{top}.py", f.read()


def _zip(folder: str, top: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for f in sorted(files):
                if f.endswith((".pyc", ".pyo")):
                    continue
                full = os.path.join(root, f)
                z.write(full, os.path.join(top, os.path.relpath(full, folder)))
    return buf.getvalue()
