"""User SQL over the store (``dn.sql``, ``POST /sql``, ``durable-nb sql``): read-only.

Read-only by construction, with DuckDB's own machinery rather than a keyword filter:

1. DuckDB's parser must find exactly one statement of type SELECT (or ``EXPLAIN
   [ANALYZE]`` of one, which is executed as rebuilt from the checked SELECT), and
   ``json_serialize_sql`` must serialize it (it serializes SELECT statements only).
2. Every function the statement calls is looked up in DuckDB's catalog
   (``duckdb_functions()``): table functions must be ones that only read (range, unnest,
   the ``duckdb_*`` and ``pragma_*`` metadata); scalar functions that DuckDB marks
   VOLATILE are refused unless known harmless (random, uuid), since those are the ones
   with side effects (nextval, setval, setseed, write_log, sleep_ms); macros are judged by
   the functions their definition calls.
3. The query runs in a ``READ ONLY`` transaction that is rolled back, so DuckDB itself
   refuses any write to the database.

The store opens its connection with ``lock_configuration`` so that no statement can
change a setting, and with external access disabled (no files, no extensions).
"""

from __future__ import annotations

import json
import re
import threading

import duckdb

MAX_ROWS = 100_000  # the most rows one query returns (the API's limit too)


# How the store opens its DuckDB connection: no files or extensions outside the store, no
# Python objects as tables, and settings locked once open (no statement can change them).
CONNECT_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}

# table functions that only read the store or compute rows
_READ_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "json_each", "json_tree", "repeat", "repeat_row",
    "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies",
    "duckdb_functions", "duckdb_indexes", "duckdb_keywords", "duckdb_schemas",
    "duckdb_sequences", "duckdb_settings", "duckdb_tables", "duckdb_types", "duckdb_views",
    "duckdb_memory", "duckdb_temporary_files", "duckdb_optimizers", "duckdb_variables",
    "pragma_table_info", "pragma_storage_info", "pragma_database_size", "pragma_show",
    "pragma_version", "pragma_platform", "pragma_metadata_info", "pragma_collations",
    "pragma_user_agent", "icu_calendar_names", "pg_timezone_names",
})
# VOLATILE scalar functions without side effects
_HARMLESS_VOLATILE = frozenset({
    "random", "gen_random_uuid", "uuid", "uuidv4", "uuidv7", "error", "currval",
    "current_query", "current_query_id", "current_connection_id", "current_transaction_id",
    "vector_type", "stats",
})
_EXPLAIN = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*EXPLAIN\s+(ANALYZE\s+)?(.*)",
                      re.IGNORECASE | re.DOTALL)
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\"?\s*\(")

_lock = threading.Lock()
_scratch: duckdb.DuckDBPyConnection | None = None
_refused: dict[str, str] | None = None  # scalar-position function -> why it is refused
_table_only: frozenset[str] = frozenset()


def _catalog() -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    """A private in-memory DuckDB (to parse and serialize) and the refused functions."""
    global _scratch, _refused, _table_only
    if _scratch is not None and _refused is not None:
        return _scratch, _refused
    with _lock:
        if _scratch is not None and _refused is not None:
            return _scratch, _refused
        conn = duckdb.connect(":memory:", config=CONNECT_CONFIG)
        rows = conn.execute(
            "SELECT DISTINCT lower(function_name), function_type, stability, macro_definition "
            "FROM duckdb_functions()").fetchall()
        refused: dict[str, str] = {}
        kinds: dict[str, set[str]] = {}
        macros: dict[str, str] = {}
        for name, kind, stability, definition in rows:
            kinds.setdefault(name, set()).add(kind)
            if kind == "scalar" and stability == "VOLATILE" and name not in _HARMLESS_VOLATILE:
                refused[name] = "it has side effects"
            if kind == "macro" and definition:
                macros[name] = definition
        table_only = frozenset(n for n, k in kinds.items()
                               if k <= {"table", "table_macro", "pragma"})
        changed = True
        while changed:  # a macro that calls a refused function is refused too
            changed = False
            for name, definition in macros.items():
                calls = {m.lower() for m in _CALL.findall(definition)}
                if name not in refused and (calls & set(refused) or calls & (
                        table_only - _READ_TABLE_FUNCTIONS)):
                    refused[name] = "it calls a function with side effects"
                    changed = True
        _table_only = table_only
        _refused, _scratch = refused, conn
    return _scratch, _refused


def _functions(tree: object) -> list[tuple[str, bool]]:
    """(name, is a table function) of every function the serialized statement calls."""
    out: list[tuple[str, bool]] = []
    stack: list[tuple[object, bool]] = [(tree, False)]
    while stack:
        node, in_table_ref = stack.pop()
        if isinstance(node, dict):
            table_ref = node.get("type") == "TABLE_FUNCTION"
            name = node.get("function_name")
            if isinstance(name, str):
                out.append((name.lower(), in_table_ref))
            for key, value in node.items():
                stack.append((value, table_ref and key == "function"))
        elif isinstance(node, list):
            stack.extend((v, False) for v in node)
    return out


def _check_select(sql: str) -> None:
    conn, refused = _catalog()
    with _lock:
        cur = conn.cursor()
        try:
            row = cur.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
        except duckdb.Error as exc:
            raise ValueError(f"cannot read the query: {exc}") from None
        finally:
            cur.close()
    if row is None:  # DuckDB answers every SELECT of a value with one row
        raise ValueError("cannot read the query")
    text = row[0]
    try:
        tree = json.loads(text)
    except RecursionError:
        raise ValueError("the query is nested too deeply") from None
    if tree.get("error"):
        raise ValueError(f"only read-only queries (one SELECT) are allowed: "
                         f"{tree.get('error_message', 'the statement is not a SELECT')}")
    for name, is_table in _functions(tree.get("statements")):
        if is_table or name in _table_only:
            if name not in _READ_TABLE_FUNCTIONS:
                raise ValueError(f"the table function {name}() is not allowed in a read-only "
                                 "query (it may change the store or its settings, or read "
                                 "outside it); query the store's tables and views")
        elif name in refused:
            raise ValueError(f"the function {name}() is not allowed in a read-only query: "
                             f"{refused[name]}")


def check(sql: str) -> str:
    """Raise ValueError unless ``sql`` is one read-only query; returns the text to run."""
    if not isinstance(sql, str) or not sql.strip():
        raise ValueError("give one SELECT query")
    try:
        stmts = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ValueError(f"cannot parse the query: {exc}") from None
    if len(stmts) != 1:
        raise ValueError(f"give exactly one statement (got {len(stmts)})")
    kind = stmts[0].type.name
    if kind == "SELECT":
        _check_select(sql)
        return sql
    if kind == "EXPLAIN":
        m = _EXPLAIN.fullmatch(stmts[0].query)
        if m:
            inner = m.group(2)
            try:
                inner_stmts = duckdb.extract_statements(inner)
            except duckdb.Error:
                inner_stmts = []
            if len(inner_stmts) == 1 and inner_stmts[0].type.name == "SELECT":
                _check_select(inner)
                return ("EXPLAIN ANALYZE " if m.group(1) else "EXPLAIN ") + inner
    hint = " (PIVOT needs its values listed: ON col IN (...))" if kind == "MULTI" else ""
    raise ValueError(f"only read-only queries are allowed (one SELECT, or EXPLAIN of one), "
                     f"not {kind}{hint}")


def run(conn: duckdb.DuckDBPyConnection, sql: str, limit: int) -> tuple[list[str], list[tuple]]:
    """Run a read-only query on a cursor of ``conn`` in a READ ONLY transaction that is
    rolled back; at most ``limit`` rows."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_ROWS:
        raise ValueError(f"limit must be an integer from 1 to {MAX_ROWS}, not {limit!r}")
    text = check(sql)
    cur = conn.cursor()
    try:
        cur.execute("BEGIN TRANSACTION READ ONLY")
        try:
            res = cur.execute(text)
            cols = [d[0] for d in res.description] if res.description else []
            rows = res.fetchmany(limit)
        finally:
            cur.execute("ROLLBACK")
        return cols, rows
    except duckdb.Error as exc:
        raise ValueError(str(exc)) from None
    finally:
        cur.close()
