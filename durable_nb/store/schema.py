"""The DuckDB schema as it is now: every table and view, spelled out, and its version.

A new database is created from ``DDL``; one written by an earlier release is brought here
by the numbered steps in ``migrations`` (``MIGRATIONS``, ``migrate``). A change of the schema is made in both places and raises ``SCHEMA_VERSION``.

Times are epoch seconds (DOUBLE) so that durations are plain subtraction in SQL;
``to_timestamp(created_at)`` gives a timestamp. JSON is stored as VARCHAR.
"""

from __future__ import annotations

__all__ = ["DDL", "SCHEMA_VERSION"]

SCHEMA_VERSION = 8

DDL = """
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);

-- task code by content hash: cloudpickled function and the options it was declared with;
-- source: the function's (or cell's) source text, for diffs between versions
CREATE TABLE tasks (
    hash VARCHAR PRIMARY KEY, task_id VARCHAR, code BLOB, sys_path VARCHAR,
    options VARCHAR, created_at DOUBLE, source VARCHAR);

-- a queue's limits: runs executing at once, and at most rate_limit attempt starts in any
-- rate_per seconds (both per concurrency key)
CREATE TABLE queues (name VARCHAR PRIMARY KEY, concurrency_limit INTEGER, updated_at DOUBLE,
                     rate_limit INTEGER, rate_per DOUBLE);

-- one invocation of a task (kind 'task') or of a %%durable cell (kind 'cell');
-- origin: JSON {notebook, cell_id, execution_count} of the cell that started it, if any;
-- metadata: JSON object set with dn.metadata (at most 256 KB); progress: JSON {done, total,
-- text, at} from dn.progress or tqdm; metadata_calls: JSON {scope: n}, the metadata calls
-- applied (a call made again after a crash is not applied twice); schedule_id, schedule_tick: the schedule and the tick
-- (epoch seconds) that fired it; hook_of, hook_kind: the run a lifecycle hook run is for
-- and which hook (on_success, on_failure, on_cancel); debounce_key, debounce_until: the
-- key whose triggers collapse into this run until then; traceparent: the W3C trace
-- context it continues; fork_of, fork_step: the run this one was forked from and the step
-- key from which it runs anew (a cell: N, the statement whose checkpoint it restores)
CREATE TABLE runs (
    id VARCHAR PRIMARY KEY, kind VARCHAR, task_id VARCHAR, task_hash VARCHAR,
    status VARCHAR, queue VARCHAR, concurrency_key VARCHAR, idempotency_key VARCHAR,
    tags VARCHAR[], payload BLOB, parent_run_id VARCHAR, parent_wait_key VARCHAR,
    replay_of VARCHAR, created_at DOUBLE, started_at DOUBLE, finished_at DOUBLE,
    delay_until DOUBLE, ttl DOUBLE, attempts INTEGER, output BLOB, error VARCHAR,
    duration_warning BOOLEAN, generation INTEGER DEFAULT 0, updated_at DOUBLE,
    origin VARCHAR, priority INTEGER DEFAULT 0, metadata VARCHAR, metadata_calls VARCHAR,
    progress VARCHAR,
    schedule_id VARCHAR, schedule_tick DOUBLE, hook_of VARCHAR, hook_kind VARCHAR,
    debounce_key VARCHAR, debounce_until DOUBLE, traceparent VARCHAR, fork_of VARCHAR,
    fork_step VARCHAR);

-- recurring runs of a task (or of a %%durable cell's captured source and inputs): by cron
-- in a timezone, or every N seconds; last_tick is the newest tick fired (each fires once),
-- pending the JSON list of ticks owed while overlap="queue" holds them back
CREATE TABLE schedules (
    id VARCHAR PRIMARY KEY, task_id VARCHAR, task_hash VARCHAR, cron VARCHAR,
    every DOUBLE, timezone VARCHAR, overlap VARCHAR, catch_up VARCHAR, payload BLOB,
    tags VARCHAR[], paused BOOLEAN DEFAULT false, created_at DOUBLE, updated_at DOUBLE,
    last_tick DOUBLE, pending VARCHAR, origin VARCHAR);

-- every status change of a run
CREATE TABLE transitions (
    run_id VARCHAR, created_at DOUBLE, from_status VARCHAR, to_status VARCHAR, reason VARCHAR);

-- one try of a run: outcome COMPLETED, FAILED, CRASHED, SUSPENDED, INTERRUPTED,
-- CANCELED or TIMED_OUT; worker is the Dask worker's address (tcp://HOST:PORT) when the
-- attempt ran on a Dask cluster, NULL on a local worker process
CREATE TABLE attempts (
    run_id VARCHAR, number INTEGER, worker_pid INTEGER, started_at DOUBLE,
    ended_at DOUBLE, outcome VARCHAR, error_type VARCHAR, error_message VARCHAR,
    traceback VARCHAR, worker VARCHAR);

-- journaled step calls, keyed by run and step key (name#occurrence); one row per
-- try of the step; the COMPLETED row holds the output that is never recomputed;
-- FAILED = a try that will be retried, ERRORED = the failure raised into the task;
-- generation counts task-level retries (failed tries of an older generation are reset);
-- run_attempt is the run's attempt the try ran in, retry_delay the wait before the next try;
-- args is the pickled call (args, kwargs); args_preview and output_preview are safe JSON
-- previews made in the worker (truncated repr, DataFrame head, image thumbnail); args_hash
-- a hash of the call, checked when the step is replayed (replay divergence)
CREATE TABLE steps (
    run_id VARCHAR, step_key VARCHAR, name VARCHAR, attempt INTEGER, generation INTEGER,
    status VARCHAR, started_at DOUBLE, ended_at DOUBLE, output BLOB, error_type VARCHAR,
    error_message VARCHAR, traceback VARCHAR, run_attempt INTEGER, retry_delay DOUBLE,
    args BLOB, args_preview VARCHAR, output_preview VARCHAR, args_hash VARCHAR);

-- approvals, events, sleeps, retry delays and child runs a run suspends on; form: the JSON
-- schema of an approval's typed form, if it has one
CREATE TABLE waits (
    run_id VARCHAR, wait_key VARCHAR, kind VARCHAR, name VARCHAR, data BLOB,
    preview VARCHAR, target VARCHAR, created_at DOUBLE, deadline DOUBLE,
    resolved_at DOUBLE, outcome VARCHAR, result BLOB, comment VARCHAR,
    resolved_by VARCHAR, form VARCHAR);

-- events sent with send_event, each key resolves once
CREATE TABLE events (key VARCHAR PRIMARY KEY, data BLOB, sent_at DOUBLE);

-- %%durable cells: the namespace after each statement, as a manifest of blobs; a value of
-- 1 MB or more is a file named by its hash beside the database (external), since DuckDB
-- would copy a large value in a table of small appends again at each of its checkpoints
CREATE TABLE checkpoints (
    run_id VARCHAR, seq INTEGER, statement INTEGER, created_at DOUBLE,
    manifest VARCHAR, size BIGINT);
CREATE TABLE blobs (
    hash VARCHAR PRIMARY KEY, data BLOB, size BIGINT, created_at DOUBLE,
    external BOOLEAN DEFAULT false);

-- trace spans that have no table of their own: waits, retry delays, checkpoints, warnings
CREATE TABLE span_records (
    span_id VARCHAR, run_id VARCHAR, parent_id VARCHAR, kind VARCHAR, name VARCHAR,
    start_at DOUBLE, end_at DOUBLE, status VARCHAR, attributes VARCHAR);

CREATE TABLE logs (run_id VARCHAR, seq BIGINT, created_at DOUBLE, stream VARCHAR, line VARCHAR);

-- all spans: those of runs, attempts and steps come from their own tables
CREATE VIEW spans AS
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
"""
