"""Runs inside Dask worker processes: the Dask task of one attempt (``attempt``) and the
worker plugin that ships modules (``plugins``). Imports ``worker`` and ``core``; the engine
names these by their dotted path (``core.remote``) and never loads them itself.
"""
