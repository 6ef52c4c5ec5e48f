"""Runs in the engine process: scheduling, queues, timers, waits, recovery and the
supervision of worker processes. Imports ``store`` and ``core``; the HTTP layer
(``server``) drives it.
"""
