"""An alias kept for stored runs: task code pickled by release 0.1.0 names
``durable_nb._tasks``, which is now ``durable_nb.client.tasks``. This name is that module."""

import sys

from .client import tasks as _module

sys.modules[__name__] = _module
