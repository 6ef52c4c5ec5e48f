"""An alias kept for stored runs: task code pickled by release 0.1.0 names
``durable_nb._errors``, which is now ``durable_nb.core.errors``. This name is that module."""

import sys

from .core import errors as _module

sys.modules[__name__] = _module
