"""Runs in the IPython kernel: the %%durable and %durable magics, cell triggering and the
following of a run's output into the cell. Imports ``client``, ``widgets`` and ``core``.
"""
