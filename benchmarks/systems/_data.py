"""Shared by workloads 9 and 10 (a DataFrame-sized namespace) and their floors.

The same statements run on every system: one builds a DataFrame of ``COLS`` float64
columns (1 GB in full mode, 200 MB in quick mode), then ``n`` statements that either
change nothing big (``x = i``) or replace one column (``df['c3'] = df['c3'] + 1``).
The physical limits the figures are compared with (hashing and disk bandwidth) are
measured here too, in the same process and on the same disk, so each workload's ratios
come from one run.  Standard library only; ``xxhash`` and numpy are used when present.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from typing import Any

COLS = 16
FULL_ROWS, QUICK_ROWS = 8_000_000, 1_600_000  # x 16 float64 columns: 1.02 GB / 205 MB
FLOOR_BYTES = (1_000_000_000, 200_000_000)  # full / quick size of the floors' buffer
CHUNK = 16 * 1024 * 1024  # write size for the disk floors
IMPORTS = "import time\nimport numpy as np\nimport pandas as pd\n"
HEAD = IMPORTS.count("\n") + 2  # statements before the n measured ones (imports, build, clock)
CHANGE = {"namespace": "x = {i}", "column": "df['c3'] = df['c3'] + 1"}


def rows(p: dict[str, Any]) -> int:
    """Rows of the frame for this run (``rows`` in the spec overrides)."""
    return int(p.get("rows") or (QUICK_ROWS if p.get("quick") else FULL_ROWS))


def build_expr(nrows: int) -> str:
    """A Python expression that builds the frame (numpy and pandas imported as np, pd)."""
    return (f"pd.DataFrame({{f'c{{j}}': np.random.default_rng(j).random({nrows}) "
            f"for j in range({COLS})}})")


def statements(kind: str, n: int) -> list[str]:
    """The n statements after the build: trivial ones or one column changed each."""
    return [CHANGE[kind].format(i=i) for i in range(n)]


def cell_source(kind: str, nrows: int, n: int) -> str:
    """The whole cell: imports, the build (with its clock reading), a statement that reads
    the clock once the build's checkpoint is durable, then the n statements."""
    return (IMPORTS + f"df, t_built = {build_expr(nrows)}, time.time()\n"
            "print('clock', t_built, time.time())\n" + "\n".join(statements(kind, n)) + "\n")


def frame_bytes(nrows: int) -> int:
    return nrows * COLS * 8


def column_bytes(nrows: int) -> int:
    return nrows * 8


def payload(nbytes: int) -> bytes:
    """Random bytes (incompressible), made fast (randbytes takes at most 2**28 bytes a call)."""
    rng = random.Random(0)
    return b"".join(rng.randbytes(min(CHUNK, nbytes - off)) for off in range(0, nbytes, CHUNK))


def hash_gbps(buf: bytes | memoryview, algo: str = "xxh3_128", chunk: int = 0,
              rounds: int = 3) -> float | None:
    """Best-of-``rounds`` hashing bandwidth over ``buf`` in GB/s (None: xxhash missing).
    ``chunk`` > 0 hashes it in pieces of that size, one digest each."""
    if algo == "sha256":
        new: Any = hashlib.sha256
    else:
        try:
            import xxhash
        except ImportError:
            return None
        new = getattr(xxhash, algo)
    view = memoryview(buf)
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        if chunk:
            for off in range(0, len(view), chunk):
                new(view[off:off + chunk]).digest()
        else:
            new(view).digest()
        best = min(best, time.perf_counter() - t)
    return len(view) / best / 1e9


def write_fsync(path: str, buf: bytes | memoryview) -> dict[str, float]:
    """Write ``buf`` to a new file in CHUNK pieces, then fdatasync; seconds of each part."""
    view = memoryview(buf)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.perf_counter()
        for off in range(0, len(view), CHUNK):
            os.write(fd, view[off:off + CHUNK])
        t1 = time.perf_counter()
        getattr(os, "fdatasync", os.fsync)(fd)
        t2 = time.perf_counter()
    finally:
        os.close(fd)
    return {"write_s": t1 - t0, "sync_s": t2 - t1, "total_s": t2 - t0}


def drop_cache(path: str) -> bool:
    """Ask the kernel to drop ``path`` from the page cache (POSIX_FADV_DONTNEED after an
    fsync); False where that call does not exist."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def read_seconds(path: str) -> float:
    """Seconds to read the whole file in CHUNK pieces."""
    fd = os.open(path, os.O_RDONLY)
    try:
        t = time.perf_counter()
        while os.read(fd, CHUNK):
            pass
        return time.perf_counter() - t
    finally:
        os.close(fd)


def write_gbps(work: str, nbytes: int, rounds: int = 3) -> float:
    """Median bandwidth (GB/s) of writing + fdatasync of ``nbytes`` to a new file in
    ``work``: the raw cost of making that many new bytes durable on this disk."""
    buf = payload(nbytes)
    path = os.path.join(work, "floor-write.bin")
    times = sorted(write_fsync(path, buf)["total_s"] for _ in range(rounds))
    os.unlink(path)
    return nbytes / times[len(times) // 2] / 1e9


def dir_bytes(path: str) -> int:
    """Bytes of all files under ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def figures(kind: str, per_stmt: list[float], new_bytes: list[float | None], nrows: int,
            floors: dict[str, float | None], first_s: float | None,
            checkpoint_s: list[float] | None = None, **extra: Any) -> dict:
    """The result of workload 9 or 10: seconds per statement (median) as the main figure,
    the first checkpoint, bytes written per statement and the ratios to the floors; with
    ``checkpoint_s`` (a system that times its checkpoints apart from the statement) also
    the checkpoint's own time and its ratio to the raw write."""
    import _common as c

    med = c.median(per_stmt)
    known = [b for b in new_bytes if b is not None]
    written = c.median(known) if known else None
    metrics: dict[str, Any] = {
        "first checkpoint (build -> durable)": c.metric(first_s, "s"),
        "max per statement": c.metric(max(per_stmt), "s"),
        "bytes written per statement (median)": c.metric(
            None if written is None else written / 1e6, "MB"),
    }
    hash_s = None
    if floors.get("hash_gbps"):
        hash_s = frame_bytes(nrows) / (floors["hash_gbps"] * 1e9)
        metrics["ratio to hashing the frame (xxh3 floor)"] = c.metric(med / hash_s, "x")
    if kind == "column":
        metrics["bytes written / column size"] = c.metric(
            None if written is None else written / column_bytes(nrows), "x")
        if written is not None and floors.get("write_gbps"):
            raw = written / (floors["write_gbps"] * 1e9)
            metrics["time / raw write of those bytes"] = c.metric(med / raw if raw else None, "x")
            if checkpoint_s:
                metrics["checkpoint alone / raw write of those bytes"] = c.metric(
                    c.median(checkpoint_s) / raw if raw else None, "x")
    if checkpoint_s:
        metrics["checkpoint alone (pickle, hash, write), median"] = c.metric(
            c.median(checkpoint_s), "s")
    attach = extra.pop("attach_metric", None)
    if attach is not None:
        metrics["attach: the frame back into a kernel"] = attach
    return c.result(med, "s/stmt", n=len(per_stmt), rows=nrows, frame_mb=frame_bytes(nrows) / 1e6,
                    column_mb=column_bytes(nrows) / 1e6, per_statement_s=per_stmt,
                    new_bytes=new_bytes, floors=floors, hash_floor_s=hash_s, metrics=metrics,
                    **extra)


def inline_floors(work: str, nrows: int) -> dict[str, float | None]:
    """The floors this workload is compared with, measured now on the same disk: xxh3_128
    bandwidth over a buffer of the frame's size, and write + fdatasync bandwidth at the
    size of one column."""
    buf = payload(frame_bytes(nrows))
    out = {"hash_gbps": hash_gbps(buf, rounds=2)}
    del buf
    out["write_gbps"] = write_gbps(work, column_bytes(nrows))
    return out


def workloads(run: Any) -> dict[str, Any]:
    """Workloads 9 and 10 of a system whose ``run(kind, n, work, p)`` measures one."""
    def namespace(n: int, work: str, p: dict[str, Any]) -> dict:
        """9: the frame, then n trivial statements."""
        return run("namespace", n, work, p)

    def column(n: int, work: str, p: dict[str, Any]) -> dict:
        """10: the frame, then n statements that each replace one column."""
        return run("column", n, work, p)

    return {"namespace": namespace, "column": column}
