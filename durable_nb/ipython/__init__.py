"""Runs in the IPython kernel: the %%durable and %durable magics, cell triggering, the
following of a run's output into the cell, and the waiting of later cells for the pending
%%durable runs whose variables they read. Imports ``client``, ``widgets`` and ``core``.
"""
