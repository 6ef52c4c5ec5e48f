"""Runs in the engine's host process: the REST routes and their OpenAPI schema, the
standalone ``durable-nb serve`` server and the Unix socket for local clients. Imports
``engine`` and ``core``.
"""
