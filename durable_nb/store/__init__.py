"""Runs in the engine process: the DuckDB store, its write-ahead journal, the schema and
its migrations, and the read-only SQL sandbox. Imports only ``core``.

The storage contract is documented once, in ``store.store``'s module docstring.
"""
