"""Migrations: a new database is created from the DDL, an old one gets the missing steps and
keeps its rows, a newer one is refused, a failing step changes nothing. The schema and its
migrations agree: a database migrated from any version has the same tables, columns,
defaults, keys and views as a new one."""

from __future__ import annotations

import json
import re

import duckdb
import pytest

from durable_nb.store.migrations import MIGRATIONS, migrate
from durable_nb.store.schema import SCHEMA_VERSION


def _catalog(conn: duckdb.DuckDBPyConnection) -> dict:
    """What a schema is made of, in a form two databases can be compared by."""
    columns = conn.execute(
        "SELECT table_name, column_index, column_name, data_type, column_default, is_nullable"
        " FROM duckdb_columns() WHERE schema_name = 'main' ORDER BY table_name, column_index"
    ).fetchall()
    constraints = conn.execute(
        "SELECT table_name, constraint_type, constraint_column_names FROM duckdb_constraints()"
        " WHERE schema_name = 'main' ORDER BY ALL"
    ).fetchall()
    views = conn.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY view_name"
    ).fetchall()
    tables = conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY ALL"
    ).fetchall()
    return {
        "tables": tables, "columns": columns, "constraints": constraints,
        "views": [(name, re.sub(r"\s+", " ", sql).strip()) for name, sql in views],
    }


def _versions(conn: duckdb.DuckDBPyConnection) -> list[int]:
    return [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()]


def test_there_is_one_migration_per_version():
    assert len(MIGRATIONS) == SCHEMA_VERSION


def test_a_new_database_is_created_from_the_ddl_at_the_current_version():
    conn = duckdb.connect()
    assert migrate(conn) == 0
    assert _versions(conn) == [SCHEMA_VERSION]
    assert migrate(conn) == SCHEMA_VERSION  # a second open changes nothing
    assert _versions(conn) == [SCHEMA_VERSION]


@pytest.mark.parametrize("start", range(1, SCHEMA_VERSION + 1))
def test_migrating_from_each_version_gives_the_schema_of_the_ddl(start):
    fresh = duckdb.connect()
    migrate(fresh)
    fresh.execute("DROP TABLE schema_version")
    fresh_catalog = _catalog(fresh)

    old = duckdb.connect()
    old.execute("CREATE TABLE schema_version (version INTEGER, applied_at DOUBLE)")
    for version in range(1, start + 1):  # a database an earlier release left at `start`
        old.execute(MIGRATIONS[version - 1])
        old.execute("INSERT INTO schema_version VALUES (?, 0)", [version])
    assert migrate(old) == start
    assert _versions(old) == list(range(1, SCHEMA_VERSION + 1))
    old.execute("DROP TABLE schema_version")
    assert _catalog(old) == fresh_catalog


def test_a_database_from_a_newer_release_is_refused():
    conn = duckdb.connect()
    migrate(conn)
    conn.execute("INSERT INTO schema_version VALUES (?, 0)", [SCHEMA_VERSION + 1])
    with pytest.raises(RuntimeError, match="newer than this durable_nb"):
        migrate(conn)


def test_an_old_database_keeps_its_rows():
    conn = duckdb.connect()
    conn.execute("CREATE TABLE schema_version (version INTEGER, applied_at DOUBLE)")
    conn.execute(MIGRATIONS[0])
    conn.execute("INSERT INTO schema_version VALUES (1, 0)")
    conn.execute("INSERT INTO blobs VALUES ('h', 'x'::BLOB, 1, 0)")
    assert migrate(conn) == 1
    assert conn.execute("SELECT hash, size, external FROM blobs").fetchall() == [("h", 1, False)]


def test_a_failing_migration_leaves_the_database_at_its_version(monkeypatch):
    conn = duckdb.connect()
    migrate(conn)
    monkeypatch.setattr("durable_nb.store.migrations.MIGRATIONS",
                        [*MIGRATIONS, "CREATE TABLE extra (x INTEGER); SELECT * FROM nowhere;"])
    monkeypatch.setattr("durable_nb.store.migrations.SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(duckdb.Error):
        migrate(conn)
    conn.execute("ROLLBACK")
    assert _versions(conn) == [SCHEMA_VERSION]
    tables = {t for (t,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "extra" not in tables



def test_version_4_attempts_gain_a_worker_that_their_spans_carry():
    """Step 5: old attempts have no Dask worker (NULL); one that has shows it in its span."""
    conn = duckdb.connect()
    conn.execute("CREATE TABLE schema_version (version INTEGER, applied_at DOUBLE)")
    for version in range(1, 5):
        conn.execute(MIGRATIONS[version - 1])
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", [version])
    conn.execute("INSERT INTO attempts (run_id, number, worker_pid, started_at, ended_at, "
                 "outcome) VALUES ('r', 1, 42, 1, 2, 'CRASHED'), ('r', 2, 0, 3, 4, 'COMPLETED')")
    assert migrate(conn) == 4
    conn.execute("UPDATE attempts SET worker = 'tcp://10.0.0.3:40123', worker_pid = 7 "
                 "WHERE number = 2")
    spans = conn.execute("SELECT name, attributes FROM spans WHERE kind = 'attempt' "
                         "ORDER BY name").fetchall()
    assert [(n, json.loads(a)) for n, a in spans] == [
        ("attempt 1", {"worker_pid": 42, "worker": None}),
        ("attempt 2", {"worker_pid": 7, "worker": "tcp://10.0.0.3:40123"})]
