"""store.schema: the DDL creates every table and view the engine and the API read."""

from __future__ import annotations

import duckdb

from durable_nb.store.schema import DDL, SCHEMA_VERSION

TABLES = {"attempts", "blobs", "checkpoints", "events", "logs", "queues", "runs",
          "span_records", "steps", "tasks", "transitions", "waits"}


def test_the_ddl_creates_every_table_and_the_spans_view(tmp_path):
    conn = duckdb.connect(str(tmp_path / "s.duckdb"))
    try:
        conn.execute(DDL)
        tables = {t for (t,) in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
        views = {v for (v,) in conn.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    finally:
        conn.close()
    assert TABLES <= tables and "spans" in views
    assert isinstance(SCHEMA_VERSION, int) and SCHEMA_VERSION >= 3
