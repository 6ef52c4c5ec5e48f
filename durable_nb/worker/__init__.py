"""Runs in each worker process (``python -m durable_nb.worker.main FD``): executes
attempts of tasks and %%durable cells and reports every step to the engine. Imports only
``core``.
"""
