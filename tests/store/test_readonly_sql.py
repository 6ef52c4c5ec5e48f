"""User SQL is read-only by construction: no statement reaching `_readonly_sql.run` can
write to the store, change a setting, checkpoint, or reach outside the store, and the
queries users write (SELECTs, CTEs, window functions, the spans view) keep working.

The queries run on a real DuckDB file with the store's schema, opened as the store opens
it, and every side-effecting function is taken from DuckDB's own catalog, so a DuckDB
upgrade that adds one is refused or shows up here.
"""

from __future__ import annotations

import time

import duckdb
import pytest

from durable_nb.store import readonly_sql as ro
from durable_nb.store.migrations import migrate
from durable_nb.store.store import Store

SETTINGS = ("select name, value from duckdb_settings() where name in ('threads', "
            "'memory_limit', 'preserve_insertion_order', 'checkpoint_threshold', "
            "'enable_logging', 'enable_profiling', 'access_mode') order by name")


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    """A DuckDB file with the store's schema and a few rows, opened as the store does
    (shared by the module: every test checks that it leaves it unchanged)."""
    path = tmp_path_factory.mktemp("readonly") / "s.duckdb"
    c = duckdb.connect(str(path), config={"enable_external_access": False})
    migrate(c)
    now = time.time()
    c.execute("INSERT INTO runs (id, kind, task_id, status, tags, created_at, started_at, "
              "finished_at, attempts) VALUES ('run_a', 'task', 't', 'COMPLETED', ['x', 'y'], "
              "?, ?, ?, 1), ('run_b', 'task', 't', 'FAILED', [], ?, ?, ?, 2)",
              [now, now, now + 1, now, now, now + 3])
    c.execute("INSERT INTO steps (run_id, step_key, name, attempt, status, started_at, "
              "ended_at, run_attempt) VALUES ('run_a', 'f#1', 'f', 1, 'COMPLETED', ?, ?, 1), "
              "('run_a', 'f#2', 'f', 1, 'COMPLETED', ?, ?, 1)", [now, now + 0.5, now, now + 2])
    c.execute("CREATE SEQUENCE probe")  # the store has none; one here shows nextval is refused
    c.execute("CHECKPOINT")
    yield c
    c.close()


def state(c: duckdb.DuckDBPyConnection) -> tuple:
    """What a write or a setting change would alter."""
    return (c.execute(SETTINGS).fetchall(),
            c.execute("select count(*) from runs").fetchone(),
            c.execute("select * from runs order by id").fetchall(),
            c.execute("select database_size, wal_size from pragma_database_size()").fetchall(),
            c.execute("select count(*) from duckdb_tables()").fetchone())


def refuse(c, sql: str, says: str = "") -> str:
    before = state(c)
    with pytest.raises(ValueError) as err:
        ro.run(c, sql, 10)
    assert state(c) == before, f"{sql!r} changed the store or its settings"
    assert says.lower() in str(err.value).lower(), str(err.value)
    return str(err.value)


@pytest.mark.parametrize("sql", [
    "EXPLAIN ANALYZE SET GLOBAL threads=1",
    "EXPLAIN ANALYZE SET GLOBAL preserve_insertion_order=false",
    "EXPLAIN ANALYZE SET checkpoint_threshold='1GB'",
    "EXPLAIN ANALYZE CHECKPOINT", "EXPLAIN ANALYZE FORCE CHECKPOINT",
    "EXPLAIN ANALYZE INSERT INTO runs (id) VALUES ('x')", "EXPLAIN ANALYZE DELETE FROM runs",
    "EXPLAIN ANALYZE UPDATE runs SET status = 'X'", "explain analyze drop table runs",
    "EXPLAIN (FORMAT json) SELECT 1", "/* x */ EXPLAIN ANALYZE SET GLOBAL threads=1",
    "SET GLOBAL threads=1", "SET memory_limit='1MB'", "RESET threads", "SET VARIABLE v = 1",
    "PRAGMA threads=1", "PRAGMA enable_profiling", "CALL checkpoint()", "CHECKPOINT",
    "ATTACH ':memory:' AS m", "DETACH s", "USE memory",
    "COPY runs TO 'runs.csv'", "EXPORT DATABASE 'out'", "IMPORT DATABASE 'out'",
    "INSTALL spatial", "LOAD spatial", "VACUUM", "ANALYZE",
    "INSERT INTO runs (id) VALUES ('x')", "UPDATE runs SET status = 'X'", "DELETE FROM runs",
    "CREATE TABLE t (a INT)", "CREATE TEMP TABLE t AS SELECT 1", "CREATE MACRO m() AS 1",
    "DROP VIEW spans", "ALTER TABLE runs ADD COLUMN z INT", "BEGIN", "COMMIT", "ROLLBACK",
    "PREPARE p AS SELECT 1", "EXECUTE p", "PIVOT runs ON status USING count(*)",
    "SELECT 1; SELECT 2", "SELECT 1; CHECKPOINT", "", "   ", "-- only a comment",
])
def test_statements_that_are_not_one_select_are_refused(conn, sql):
    refuse(conn, sql)


@pytest.mark.parametrize("sql", [
    "select * from checkpoint()", "select * from force_checkpoint()",
    "select * from system.main.checkpoint()", "select (select count(*) from checkpoint())",
    "select 1 where exists (from force_checkpoint())", "select checkpoint()",
    "select nextval('probe')", "select main.nextval('probe')", "select setval('probe', 9)",
    "select setseed(0.5)", "select write_log('x')", "select sleep_ms(1)", "select pg_sleep(0)",
    "select list_transform([1], lambda x: nextval('probe'))",
    "with a as (select nextval('probe') as n) select * from a",
    "select * from enable_logging()", "select * from disable_logging()",
    "select * from enable_profiling()", "select * from truncate_duckdb_logs()",
    "select * from query('select 1')", "select * from query_table('runs')",
    "select * from json_execute_serialized_sql(json_serialize_sql('select 1'))",
    "select * from read_text('/etc/hostname')", "select * from read_csv('x.csv')",
    "select * from glob('*')", "select * from read_duckdb('other.duckdb')",
    "select * from 'runs.csv'", "select * from histogram(runs, status)",
])
def test_functions_with_side_effects_or_outside_reach_are_refused(conn, sql):
    refuse(conn, sql, "not allowed" if "from 'runs.csv'" not in sql else "")
    with pytest.raises(duckdb.Error):  # the sequence was never advanced
        conn.execute("select currval('probe')")


def test_every_side_effecting_function_in_duckdbs_catalog_is_refused(conn):
    """Scalar functions DuckDB marks VOLATILE (bar random and uuid) and table functions
    outside the read-only list, as DuckDB's own catalog lists them."""
    rows = conn.execute("SELECT DISTINCT function_name, function_type, stability "
                        "FROM duckdb_functions()").fetchall()
    volatile = sorted({n for n, t, s in rows if t == "scalar" and s == "VOLATILE"}
                      - ro._HARMLESS_VOLATILE)
    tables = sorted({n for n, t, _ in rows if t in ("table", "table_macro")}
                    - ro._READ_TABLE_FUNCTIONS)
    assert {"nextval", "setval", "setseed", "write_log", "sleep_ms"} <= set(volatile)
    assert {"checkpoint", "force_checkpoint", "query", "enable_logging"} <= set(tables)
    for name in volatile:
        assert "not allowed" in refuse(conn, f'select "{name}"()'), name
    for name in tables:
        assert "not allowed" in refuse(conn, f'select * from "{name}"()'), name


def test_the_read_only_table_functions_exist_and_only_read(conn):
    names = {n for (n,) in conn.execute(
        "select distinct function_name from duckdb_functions() "
        "where function_type = 'table'").fetchall()}
    assert ro._READ_TABLE_FUNCTIONS <= names, ro._READ_TABLE_FUNCTIONS - names
    before = state(conn)
    for name in ("duckdb_settings", "duckdb_tables", "duckdb_functions", "pragma_database_size",
                 "pragma_version", "duckdb_memory", "duckdb_columns"):
        ro.run(conn, f"select * from {name}()", 5)
    assert state(conn) == before


@pytest.mark.parametrize("sql, expected", [
    ("select name, quantile_cont(end_at - start_at, 0.95) from spans where kind = 'step' "
     "group by name", None),
    ("with x as (select * from runs) select id, row_number() over (order by attempts desc) "
     "from x order by 2", [("run_b", 1), ("run_a", 2)]),
    ("select id, unnest(tags) from runs order by 2", [("run_a", "x"), ("run_a", "y")]),
    ("select status, count(*) filter (where attempts > 1) from runs group by all order by 1",
     [("COMPLETED", 0), ("FAILED", 1)]),
    ("PIVOT runs ON status IN ('COMPLETED', 'FAILED') USING count(*) GROUP BY task_id",
     [("t", 1, 1)]),
    ("from runs select id where id like 'run_a%'", [("run_a",)]),
    ("select to_timestamp(created_at)::date = current_date, random() < 1, uuid() is not null "
     "from runs limit 1", [(True, True, True)]),
    ("select json_extract_string(attributes, '$.key') from spans where kind = 'step' "
     "order by 1", [("f#1",), ("f#2",)]),
    ("  -- a comment first\n  select count(*) from runs;", [(2,)]),
])
def test_queries_users_write_keep_working(conn, sql, expected):
    cols, rows = ro.run(conn, sql, 100)
    assert cols and rows
    if expected is not None:
        assert rows == expected
    else:
        assert rows[0][0] == "f" and rows[0][1] == pytest.approx(1.925)


@pytest.mark.parametrize("sql, column", [
    ("EXPLAIN select * from spans", "explain_key"),
    ("explain analyze select count(*) from runs", "explain_key"),
    ("/* why slow */ EXPLAIN select * from runs", "explain_key"),
    ("DESCRIBE runs", "column_name"), ("SUMMARIZE runs", "column_name"),
    ("SHOW TABLES", "name"), ("select * from duckdb_settings()", "name"),
])
def test_explain_describe_and_metadata_are_allowed(conn, sql, column):
    before = state(conn)
    cols, rows = ro.run(conn, sql, 1000)
    assert column in cols and rows
    assert state(conn) == before


def test_run_limits_rows_and_refuses_a_bad_limit(conn):
    assert len(ro.run(conn, "select * from range(500)", 7)[1]) == 7
    for bad in (0, -1, ro.MAX_ROWS + 1, 10**30, 1.5, True, "5"):
        with pytest.raises(ValueError, match="limit"):
            ro.run(conn, "select 1", bad)


def test_errors_name_the_problem(conn):
    assert "not EXPLAIN" in refuse(conn, "EXPLAIN ANALYZE SET GLOBAL threads=1")
    assert "checkpoint()" in refuse(conn, "select * from checkpoint()")
    assert "nextval()" in refuse(conn, "select nextval('probe')")
    assert "exactly one statement" in refuse(conn, "select 1; select 2")
    assert "IN (...)" in refuse(conn, "PIVOT runs ON status USING count(*)")
    assert "depth" in refuse(conn, "select " + "(" * 5000 + "1" + ")" * 5000).lower()
    assert "does not exist" in refuse(conn, "select * from no_such_table")


def test_the_recommended_connection_config_locks_settings_and_keeps_the_schema(tmp_path):
    c = duckdb.connect(str(tmp_path / "locked.duckdb"), config=ro.CONNECT_CONFIG)
    migrate(c)  # the store creates and migrates its schema under the locked config
    c.execute("INSERT INTO queues (name, concurrency_limit, updated_at) VALUES ('q', 2, 0)")
    with pytest.raises(duckdb.Error, match="locked"):
        c.execute("SET GLOBAL threads=1")
    with pytest.raises(duckdb.Error, match="locked"):
        c.execute("SET lock_configuration=false")
    assert ro.run(c, "select count(*) from queues", 1)[1] == [(1,)]
    c.execute("CHECKPOINT")
    c.close()


def test_the_store_runs_user_sql_through_these_checks(tmp_path):
    store = Store(tmp_path / "store.duckdb")
    store.open()
    try:
        threads = store.read_only("select current_setting('threads')")[1]
        with pytest.raises(ValueError, match="not EXPLAIN"):
            store.read_only("EXPLAIN ANALYZE SET GLOBAL threads=1")
        with pytest.raises(ValueError, match="checkpoint"):
            store.read_only("select * from checkpoint()")
        assert store.read_only("select current_setting('threads')")[1] == threads
        assert store.read_only("select count(*) from spans")[1] == [(0,)]
    finally:
        store.close()


def test_the_store_connection_locks_its_configuration(tmp_path):
    """Defence in depth: even a statement that got past the checks cannot change a
    setting of the engine's connection."""
    store = Store(tmp_path / "store.duckdb")
    store.open()
    try:
        settings = dict(store.read_only(
            "select name, value from duckdb_settings() where name in ('lock_configuration', "
            "'enable_external_access', 'python_enable_replacements', "
            "'autoload_known_extensions')")[1])
        assert settings == {"lock_configuration": "true", "enable_external_access": "false",
                            "python_enable_replacements": "false",
                            "autoload_known_extensions": "false"}, (
            "Store.open should open DuckDB with config=_readonly_sql.CONNECT_CONFIG")
    finally:
        store.close()
