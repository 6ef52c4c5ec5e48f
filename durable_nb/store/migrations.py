"""Numbered migrations: how a database written by an earlier release reaches the current
schema (``schema.DDL``).

``MIGRATIONS[n - 1]`` takes a database from version ``n - 1`` to ``n``; the table
``schema_version`` records each one applied. A new database is created from ``schema.DDL``
at once and recorded at ``SCHEMA_VERSION``. Migrations are never edited once released: a
change of the schema is a new entry here and the same change in ``schema.DDL``
(``tests/store/test_migrations.py`` checks that both give the same tables and views).
"""

from __future__ import annotations

import time

import duckdb

from .schema import DDL, SCHEMA_VERSION

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);

    -- task code by content hash: cloudpickled function and the options it was declared with
    CREATE TABLE tasks (
        hash VARCHAR PRIMARY KEY, task_id VARCHAR, code BLOB, sys_path VARCHAR,
        options VARCHAR, created_at DOUBLE);

    CREATE TABLE queues (name VARCHAR PRIMARY KEY, concurrency_limit INTEGER, updated_at DOUBLE);

    -- one invocation of a task (kind 'task') or of a %%durable cell (kind 'cell')
    CREATE TABLE runs (
        id VARCHAR PRIMARY KEY, kind VARCHAR, task_id VARCHAR, task_hash VARCHAR,
        status VARCHAR, queue VARCHAR, concurrency_key VARCHAR, idempotency_key VARCHAR,
        tags VARCHAR[], payload BLOB, parent_run_id VARCHAR, parent_wait_key VARCHAR,
        replay_of VARCHAR, created_at DOUBLE, started_at DOUBLE, finished_at DOUBLE,
        delay_until DOUBLE, ttl DOUBLE, attempts INTEGER, output BLOB, error VARCHAR,
        duration_warning BOOLEAN, generation INTEGER DEFAULT 0, updated_at DOUBLE);

    -- every status change of a run
    CREATE TABLE transitions (
        run_id VARCHAR, created_at DOUBLE, from_status VARCHAR, to_status VARCHAR, reason VARCHAR);

    -- one try of a run: outcome COMPLETED, FAILED, CRASHED, SUSPENDED, INTERRUPTED,
    -- CANCELED or TIMED_OUT
    CREATE TABLE attempts (
        run_id VARCHAR, number INTEGER, worker_pid INTEGER, started_at DOUBLE,
        ended_at DOUBLE, outcome VARCHAR, error_type VARCHAR, error_message VARCHAR,
        traceback VARCHAR);

    -- journaled step calls, keyed by run and step key (name#occurrence); one row per
    -- try of the step; the COMPLETED row holds the output that is never recomputed;
    -- FAILED = a try that will be retried, ERRORED = the failure raised into the task;
    -- generation counts task-level retries (failed tries of an older generation are reset)
    CREATE TABLE steps (
        run_id VARCHAR, step_key VARCHAR, name VARCHAR, attempt INTEGER, generation INTEGER,
        status VARCHAR, started_at DOUBLE, ended_at DOUBLE, output BLOB, error_type VARCHAR,
        error_message VARCHAR, traceback VARCHAR);

    -- approvals, events, sleeps, retry delays and child runs a run suspends on
    CREATE TABLE waits (
        run_id VARCHAR, wait_key VARCHAR, kind VARCHAR, name VARCHAR, data BLOB,
        preview VARCHAR, target VARCHAR, created_at DOUBLE, deadline DOUBLE,
        resolved_at DOUBLE, outcome VARCHAR, result BLOB, comment VARCHAR,
        resolved_by VARCHAR);

    -- events sent with send_event, each key resolves once
    CREATE TABLE events (key VARCHAR PRIMARY KEY, data BLOB, sent_at DOUBLE);

    -- %%durable cells: the namespace after each statement, as a manifest of blobs
    CREATE TABLE checkpoints (
        run_id VARCHAR, seq INTEGER, statement INTEGER, created_at DOUBLE,
        manifest VARCHAR, size BIGINT);
    CREATE TABLE blobs (hash VARCHAR PRIMARY KEY, data BLOB, size BIGINT, created_at DOUBLE);

    -- trace spans: run, attempt, step, wait, retry_delay
    CREATE TABLE spans (
        span_id VARCHAR, run_id VARCHAR, parent_id VARCHAR, kind VARCHAR, name VARCHAR,
        start_at DOUBLE, end_at DOUBLE, status VARCHAR, attributes VARCHAR);

    CREATE TABLE logs (run_id VARCHAR, seq BIGINT, created_at DOUBLE, stream VARCHAR, line VARCHAR);
    """,
    # 2: spans of runs, attempts and steps are read from those tables instead of being
    # written twice (one journal record less per step); span_records keeps the others
    # (waits, retry delays, checkpoints, warnings); the view spans shows them all
    """
    ALTER TABLE steps ADD COLUMN run_attempt INTEGER;
    ALTER TABLE steps ADD COLUMN retry_delay DOUBLE;
    ALTER TABLE spans RENAME TO span_records;
    UPDATE steps SET
        run_attempt = TRY_CAST(regexp_extract(s.parent_id, '/a([0-9]+)$', 1) AS INTEGER),
        retry_delay = TRY_CAST(json_extract_string(s.attributes, '$.retry_delay') AS DOUBLE)
    FROM span_records AS s
    WHERE s.kind = 'step'
      AND s.span_id = steps.run_id || '/s/' || steps.step_key || '/' || steps.attempt;
    DELETE FROM span_records WHERE kind IN ('run', 'attempt', 'step');
    CREATE VIEW spans AS
    SELECT span_id, run_id, parent_id, kind, name, start_at, end_at, status, attributes
    FROM span_records
    UNION ALL
    SELECT id, id, parent_run_id, 'run', task_id, created_at, finished_at, status,
           json_object('attempts', attempts, 'queue', queue)::VARCHAR
    FROM runs WHERE finished_at IS NOT NULL
    UNION ALL
    SELECT run_id || '/a' || number, run_id, run_id, 'attempt', 'attempt ' || number,
           started_at, ended_at, outcome, json_object('worker_pid', worker_pid)::VARCHAR
    FROM attempts WHERE ended_at IS NOT NULL
    UNION ALL
    SELECT run_id || '/s/' || step_key || '/' || attempt, run_id, run_id || '/a' || run_attempt,
           'step', name, started_at, ended_at, status,
           CASE WHEN status = 'COMPLETED'
                THEN json_object('key', step_key, 'attempt', attempt)
                ELSE json_object('key', step_key, 'attempt', attempt, 'error', error_type,
                                 'retry_delay', retry_delay) END::VARCHAR
    FROM steps;
    """,
    # 3: checkpoint values of 1 MB or more live in files named by their hash beside the
    # database (DuckDB rewrites a row group whenever rows are appended to it, so a large
    # value in a table of small appends would be copied again at every DuckDB checkpoint)
    """
    ALTER TABLE blobs ADD COLUMN external BOOLEAN DEFAULT false;
    """,
    # 4: what a step was called with and safe previews of its arguments and output (shown
    # when a step is clicked), and where a run was started from (a notebook and its cell)
    """
    ALTER TABLE steps ADD COLUMN args BLOB;
    ALTER TABLE steps ADD COLUMN args_preview VARCHAR;
    ALTER TABLE steps ADD COLUMN output_preview VARCHAR;
    ALTER TABLE runs ADD COLUMN origin VARCHAR;
    """,
    # 5: the Dask worker an attempt ran on (its address, tcp://HOST:PORT; NULL for a local
    # worker process), also in the attributes of the attempt's span
    """
    ALTER TABLE attempts ADD COLUMN worker VARCHAR;
    CREATE OR REPLACE VIEW spans AS
    SELECT span_id, run_id, parent_id, kind, name, start_at, end_at, status, attributes
    FROM span_records
    UNION ALL
    SELECT id, id, parent_run_id, 'run', task_id, created_at, finished_at, status,
           json_object('attempts', attempts, 'queue', queue)::VARCHAR
    FROM runs WHERE finished_at IS NOT NULL
    UNION ALL
    SELECT run_id || '/a' || number, run_id, run_id, 'attempt', 'attempt ' || number,
           started_at, ended_at, outcome,
           json_object('worker_pid', worker_pid, 'worker', worker)::VARCHAR
    FROM attempts WHERE ended_at IS NOT NULL
    UNION ALL
    SELECT run_id || '/s/' || step_key || '/' || attempt, run_id, run_id || '/a' || run_attempt,
           'step', name, started_at, ended_at, status,
           CASE WHEN status = 'COMPLETED'
                THEN json_object('key', step_key, 'attempt', attempt)
                ELSE json_object('key', step_key, 'attempt', attempt, 'error', error_type,
                                 'retry_delay', retry_delay) END::VARCHAR
    FROM steps;
    """,
    # 6: a run's priority (higher starts first within its queue, with aging), and a
    # queue's rate limit (at most rate_limit attempt starts in any rate_per seconds)
    """
    ALTER TABLE runs ADD COLUMN priority INTEGER DEFAULT 0;
    ALTER TABLE queues ADD COLUMN rate_limit INTEGER;
    ALTER TABLE queues ADD COLUMN rate_per DOUBLE;
    """,
    # 7: operations: a run's metadata and progress (JSON), the schedule tick that fired
    # it, the run a lifecycle hook run is for, a debounce key and its window, the trace
    # context it continues; and the schedules themselves
    """
    ALTER TABLE runs ADD COLUMN metadata VARCHAR;
    ALTER TABLE runs ADD COLUMN metadata_calls VARCHAR;
    ALTER TABLE runs ADD COLUMN progress VARCHAR;
    ALTER TABLE runs ADD COLUMN schedule_id VARCHAR;
    ALTER TABLE runs ADD COLUMN schedule_tick DOUBLE;
    ALTER TABLE runs ADD COLUMN hook_of VARCHAR;
    ALTER TABLE runs ADD COLUMN hook_kind VARCHAR;
    ALTER TABLE runs ADD COLUMN debounce_key VARCHAR;
    ALTER TABLE runs ADD COLUMN debounce_until DOUBLE;
    ALTER TABLE runs ADD COLUMN traceparent VARCHAR;
    CREATE TABLE schedules (
        id VARCHAR PRIMARY KEY, task_id VARCHAR, task_hash VARCHAR, cron VARCHAR,
        every DOUBLE, timezone VARCHAR, overlap VARCHAR, catch_up VARCHAR, payload BLOB,
        tags VARCHAR[], paused BOOLEAN DEFAULT false, created_at DOUBLE, updated_at DOUBLE,
        last_tick DOUBLE, pending VARCHAR, origin VARCHAR);
    """,
    # 8: beyond checkpoints: the source of a task's code (diffs between versions), a hash
    # of each step's arguments (replay divergence), the run a fork comes from and where it
    # forked (a step key, or a cell's statement), and the form of an approval (JSON schema)
    """
    ALTER TABLE tasks ADD COLUMN source VARCHAR;
    ALTER TABLE steps ADD COLUMN args_hash VARCHAR;
    ALTER TABLE runs ADD COLUMN fork_of VARCHAR;
    ALTER TABLE runs ADD COLUMN fork_step VARCHAR;
    ALTER TABLE waits ADD COLUMN form VARCHAR;
    """,
]


def migrate(conn: duckdb.DuckDBPyConnection) -> int:
    """Bring the database to ``SCHEMA_VERSION``; returns the version it was at (0: new)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, applied_at DOUBLE)"
    )
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = (row[0] if row else None) or 0
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database has schema version {current}, newer than this durable_nb "
            f"({SCHEMA_VERSION}); upgrade durable_nb to open it"
        )
    if current == 0:  # a new database: the current schema in one step
        _apply(conn, DDL, SCHEMA_VERSION)
        return 0
    for version in range(current + 1, SCHEMA_VERSION + 1):
        _apply(conn, MIGRATIONS[version - 1], version)
    return current


def _apply(conn: duckdb.DuckDBPyConnection, ddl: str, version: int) -> None:
    """Run ``ddl`` and record ``version`` in one transaction."""
    conn.execute("BEGIN")
    conn.execute(ddl)
    conn.execute("INSERT INTO schema_version VALUES (?, ?)", [version, time.time()])
    conn.execute("COMMIT")
