"""Runs in the ``durable-nb`` command's process: the commands, ``doctor`` and the demo.
Imports ``client``, ``server`` (for ``serve``) and ``core``."""

from .commands import main

__all__ = ["main"]
