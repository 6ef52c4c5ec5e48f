"""An alias kept for stored runs: task code pickled by release 0.1.0 names
``durable_nb._retry``, which is now ``durable_nb.core.retry``. This name is that module."""

import sys

from .core import retry as _module

sys.modules[__name__] = _module
