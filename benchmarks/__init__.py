"""Benchmark harness comparing durable_nb with DBOS, LangGraph and Prefect.

Run ``python -m benchmarks --help``; see ``benchmarks/README.md``.
"""
