"""Runs in the user's process (a kernel, a script, a task inside a worker): the transport
to the engine, engine discovery and the Python API (tasks, runs, steps, waits). Imports
``core`` and, for calls made inside a run, ``worker.context``.
"""
