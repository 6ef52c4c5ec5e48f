"""An alias kept for stored runs: task code pickled by release 0.1.0 names
``durable_nb._context``, which is now ``durable_nb.worker.context``. This name is that module."""

import sys

from .worker import context as _module

sys.modules[__name__] = _module
