"""``checkpoint_frame('<run>', '<name>')`` in ``dn.sql``: a DataFrame or Arrow table from a
cell run's latest checkpoint, queried with DuckDB.

Such a query runs here, in the caller's process, not in the engine: a checkpoint keeps a
frame as its own memory (pickle protocol 5 pieces, ``core.checkpoints``), which only a
process with pandas or pyarrow can turn back into a frame, and the engine never unpickles
user data. The frame is read from its files at the disk's speed and DuckDB scans it
without a copy. The same query cannot also read the store's tables (runs, steps, ...):
query those with a separate ``dn.sql``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

FRAME_CALL = re.compile(
    r"checkpoint_frame\s*\(\s*'((?:[^']|'')*)'\s*,\s*'((?:[^']|'')*)'\s*\)", re.IGNORECASE)


def uses_frames(query: str) -> bool:
    return FRAME_CALL.search(query) is not None


def query_frames(query: str, limit: int, get_run: Callable[[str], Any]
                 ) -> tuple[list[str], list[tuple]]:
    """(columns, rows) of ``query`` with each ``checkpoint_frame(run, name)`` a table."""
    import duckdb

    from .cells import fetch_variables

    tables: dict[tuple[str, str], str] = {}

    def table(m: re.Match) -> str:
        key = (m.group(1).replace("''", "'"), m.group(2).replace("''", "'"))
        tables.setdefault(key, f"__checkpoint_frame_{len(tables)}")
        return f'"{tables[key]}"'

    rewritten = FRAME_CALL.sub(table, query)
    con = duckdb.connect(":memory:")
    try:
        for (run_id, name), alias in tables.items():
            value = fetch_variables(get_run(run_id), [name])[name]
            con.register(alias, _as_table(run_id, name, value))
        try:
            cur = con.execute(rewritten)
        except duckdb.CatalogException as exc:
            raise ValueError(
                f"{exc}. A query with checkpoint_frame(...) runs in this process over the "
                "frames it names; it cannot read the store's tables (runs, steps, ...): "
                "query those with a separate dn.sql") from None
        columns = [d[0] for d in cur.description or ()]
        return columns, cur.fetchmany(limit)
    finally:
        con.close()


def _as_table(run_id: str, name: str, value: Any) -> Any:
    """``value`` if DuckDB can scan it as a table (pandas, Arrow, polars), else an error."""
    kind = f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
    if kind in ("pandas.DataFrame", "pyarrow.Table", "pyarrow.RecordBatch",
                "polars.DataFrame"):
        return value
    if kind == "pandas.Series":
        return value.to_frame()
    raise TypeError(f"checkpoint_frame('{run_id}', '{name}'): the variable is a {kind}, not "
                    "a DataFrame or an Arrow table")
