"""User SQL over the store (``dn.sql``, ``POST /sql``, ``durable-nb sql``): read-only."""

from __future__ import annotations

import duckdb

_ALLOWED_SQL = {"SELECT", "EXPLAIN"}


def check(sql: str) -> None:
    """Raise ValueError unless ``sql`` is one read-only statement."""
    try:
        stmts = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ValueError(f"cannot parse the query: {exc}") from None
    if len(stmts) != 1:
        raise ValueError(f"give exactly one statement (got {len(stmts)})")
    kind = stmts[0].type.name
    if kind not in _ALLOWED_SQL:
        raise ValueError(f"only read-only queries are allowed (SELECT), not {kind}")


def run(conn: duckdb.DuckDBPyConnection, sql: str, limit: int) -> tuple[list[str], list[tuple]]:
    """Run a checked query on a cursor of ``conn``; at most ``limit`` rows."""
    cur = conn.cursor()
    try:
        cur.execute("BEGIN")
        res = cur.execute(sql)
        cols = [d[0] for d in res.description] if res.description else []
        rows = res.fetchmany(limit)
        cur.execute("ROLLBACK")
        return cols, rows
    except duckdb.Error as exc:
        raise ValueError(str(exc)) from None
    finally:
        cur.close()
