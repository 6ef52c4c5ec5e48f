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
import _data as d


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


def _floor_size(params: dict[str, Any]) -> int:
    """Bytes of the bandwidth floors: 1 GB, or 200 MB in quick mode."""
    return int(params.get("bytes") or d.FLOOR_BYTES[1 if params.get("quick") else 0])


def floor_hash(n: int, work: str, params: dict[str, Any]) -> c.Result:
    """xxh3_128 over an in-memory buffer in one call, GB/s (best of 3); the same in 4 MiB
    chunks, sha256 and a plain memory copy as metrics."""
    size = _floor_size(params)
    buf = d.payload(size)
    xxh = d.hash_gbps(buf)
    if xxh is None:
        raise c.NotAvailable("the xxhash package is not installed in this interpreter")
    t = time.perf_counter()
    copy = bytearray(buf)  # new memory: each page is faulted in as it is first written
    fresh = size / (time.perf_counter() - t) / 1e9
    t = time.perf_counter()
    memoryview(copy)[:] = buf  # the same pages again: a plain memcpy
    touched = size / (time.perf_counter() - t) / 1e9
    del copy
    return c.result(xxh, "GB/s", bytes=size, metrics={
        "xxh3_128 in 4 MiB chunks": c.metric(d.hash_gbps(buf, chunk=4 << 20), "GB/s"),
        "xxh3_64": c.metric(d.hash_gbps(buf, "xxh3_64"), "GB/s"),
        "sha256": c.metric(d.hash_gbps(buf, "sha256", rounds=1), "GB/s"),
        "memory copy into touched memory": c.metric(touched, "GB/s"),
        "copy into new memory (page faults)": c.metric(fresh, "GB/s"),
    })


def floor_disk_write(n: int, work: str, params: dict[str, Any]) -> c.Result:
    """Write of a buffer to a new file in 16 MiB pieces, then fdatasync, GB/s (median of 3)."""
    size = _floor_size(params)
    buf = d.payload(size)
    path = os.path.join(work, "floor-disk.bin")
    runs = []
    for _ in range(3):
        runs.append(d.write_fsync(path, buf))
        os.unlink(path)
    runs.sort(key=lambda r: r["total_s"])
    mid = runs[1]
    return c.result(size / mid["total_s"] / 1e9, "GB/s", bytes=size, runs=runs, metrics={
        "into the page cache (before fdatasync)": c.metric(size / mid["write_s"] / 1e9, "GB/s"),
        "the fdatasync": c.metric(mid["sync_s"], "s"),
    })


def floor_disk_read(n: int, work: str, params: dict[str, Any]) -> c.Result:
    """Read back a file just written and fsynced, after posix_fadvise(DONTNEED) dropped it
    from the page cache (a cold read of this machine's disk, as far as the guest can
    tell), GB/s (median of 3); the read from the page cache as a metric."""
    size = _floor_size(params)
    path = os.path.join(work, "floor-disk.bin")
    d.write_fsync(path, d.payload(size))
    cold, dropped = [], True
    for _ in range(3):
        dropped = d.drop_cache(path) and dropped
        cold.append(d.read_seconds(path))
    warm = min(d.read_seconds(path) for _ in range(2))
    os.unlink(path)
    return c.result(size / c.median(cold) / 1e9, "GB/s", bytes=size, page_cache_dropped=dropped,
                    metrics={"from the page cache": c.metric(size / warm / 1e9, "GB/s")})


if __name__ == "__main__":
    c.run_main(
        {
            "floor_call": floor_call,
            "floor_fdatasync": floor_fdatasync,
            "floor_duckdb": floor_duckdb,
            "floor_sqlite": floor_sqlite,
            "floor_hash": floor_hash,
            "floor_disk_write": floor_disk_write,
            "floor_disk_read": floor_disk_read,
        }
    )
