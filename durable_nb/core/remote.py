"""A function named by its dotted path, called where it runs.

The engine submits Dask tasks whose code lives in ``durable_nb.cluster`` (what a Dask
worker runs). Naming it by text keeps the engine process from loading worker code, and
Dask pickles ``call`` by reference: the Dask workers need durable_nb installed.
"""

from __future__ import annotations

import importlib
from typing import Any


def call(entry: str, *args: Any) -> Any:
    """Call ``entry`` ("package.module:function") with ``args``."""
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)(*args)
