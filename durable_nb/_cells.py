"""An alias kept for stored runs: task code pickled by release 0.1.0 names
``durable_nb._cells``, which is now ``durable_nb.worker.cells``. This name is that module."""

import sys

from .worker import cells as _module

sys.modules[__name__] = _module
