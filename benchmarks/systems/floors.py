"""Floors: the cheapest possible versions of what a durable engine must do.

Run in the current interpreter, on the same disk as the systems, so the
table can say how far each system is from the hardware and the storage
libraries it could be built on.
"""

from __future__ import annotations

import os
import sqlite3
import time
import timeit
from typing import Any

import _common as c


def _noop(i: int) -> int:
    return i


def floor_call(n: int, work: str, params: dict[str, Any]) -> c.Result:
    """Plain Python function call, in ns (best of 5 timeit rounds)."""
    loops = 200_000
    times = timeit.repeat("f(1)", globals={"f": _noop}, number=loops, repeat=5)
    per = [t / loops * 1e9 for t in times]
    return c.result(min(per), "ns", median_ns=c.median(per))


def _per_op(fn: Any, n: int) -> list[float]:
    """Time ``fn(i)`` n times (after 5 warm-up calls); list of ms."""
    for i in range(5):
        fn(-1 - i)
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def _summary(ms: list[float]) -> c.Result:
    return c.result(c.median(ms), "ms", n=len(ms), metrics={"p99": c.metric(c.percentile(ms, 99), "ms")})


def floor_fdatasync(n: int, work: str, params: dict[str, Any]) -> c.Result:
    """os.write of 200 bytes followed by os.fdatasync, per operation."""
    fd = os.open(os.path.join(work, "fsync.bin"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    payload = b"x" * 200
    sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync

    def op(i: int) -> None:
        os.write(fd, payload)
        sync(fd)

    try:
        return _summary(_per_op(op, n))
    finally:
        os.close(fd)


def floor_duckdb(n: int, work: str, params: dict[str, Any]) -> c.Result:
    """DuckDB autocommit INSERT of a small row into a file database."""
    import duckdb

    con = duckdb.connect(os.path.join(work, "floor.duckdb"))
    con.execute("create table t (i integer, s varchar, ts double)")

    def op(i: int) -> None:
        con.execute("insert into t values (?, ?, ?)", [i, "small-row-payload", time.time()])

    try:
        res = _summary(_per_op(op, n))
        res["extra"]["duckdb"] = duckdb.__version__
        return res
    finally:
        con.close()


def floor_sqlite(n: int, work: str, params: dict[str, Any]) -> c.Result:
    """SQLite autocommit INSERT, journal_mode=WAL, synchronous=FULL."""
    con = sqlite3.connect(os.path.join(work, "floor.sqlite"), isolation_level=None)
    mode = con.execute("pragma journal_mode=wal").fetchone()[0]
    con.execute("pragma synchronous=full")
    con.execute("create table t (i integer, s text, ts real)")

    def op(i: int) -> None:
        con.execute("insert into t values (?, ?, ?)", (i, "small-row-payload", time.time()))

    try:
        res = _summary(_per_op(op, n))
        res["extra"].update(journal_mode=mode, sqlite=sqlite3.sqlite_version)
        return res
    finally:
        con.close()


if __name__ == "__main__":
    c.run_main(
        {
            "floor_call": floor_call,
            "floor_fdatasync": floor_fdatasync,
            "floor_duckdb": floor_duckdb,
            "floor_sqlite": floor_sqlite,
        }
    )
