"""Helpers shared by the workload scripts.

The scripts run inside each peer's own virtual environment, so this module
uses the standard library only.  Protocol: a script is called with one JSON
argument (the spec, see ``load_spec``) and prints one JSON object per
workload on stdout; everything else (library logs, prints) goes to stderr.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

Result = dict[str, Any]
Workload = Callable[[int, str, dict[str, Any]], Result]

_OUT: TextIO | None = None
# Random idle gap before each trigger in the latency loops, so triggers do not
# fall at a fixed phase of any polling inside the system.
LATENCY_JITTER_S = 0.01


class NotAvailable(Exception):
    """Raised by a workload that the system cannot run (reported as n/a)."""


def protect_stdout() -> None:
    """Point fd 1 at stderr so chatter from libraries cannot corrupt results.

    A private duplicate of the original stdout is kept for ``emit``; child
    processes started later inherit the redirected fd 1.
    """
    global _OUT
    if _OUT is not None:
        return
    sys.stdout.flush()
    _OUT = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)


def emit(obj: Result) -> None:
    """Write one result line to the real stdout."""
    out = _OUT or sys.stdout
    out.write(json.dumps(obj, default=str) + "\n")
    out.flush()


def result(value: float, unit: str, **extra: Any) -> Result:
    """Build a result object; ``extra["metrics"]`` holds secondary figures."""
    return {"value": value, "unit": unit, "extra": extra}


def metric(value: float | None, unit: str) -> dict[str, Any]:
    """A secondary figure shown as its own row in the harness table."""
    return {"value": value, "unit": unit}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    xs = sorted(values)
    k = max(0, min(len(xs) - 1, math.ceil(q / 100.0 * len(xs)) - 1))
    return xs[k]


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    return float(statistics.median(values))


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` seconds pass; bounded."""
    end = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


def first_true(conds: dict[str, Callable[[], bool]], timeout: float, interval: float = 0.05) -> dict[str, float | None]:
    """Poll several conditions together; seconds until each first held (None: never, bounded)."""
    t0 = time.monotonic()
    got: dict[str, float | None] = dict.fromkeys(conds)
    while True:
        for name, pred in conds.items():
            if got[name] is None and pred():
                got[name] = time.monotonic() - t0
        if all(v is not None for v in got.values()) or time.monotonic() - t0 >= timeout:
            return got
        time.sleep(interval)


def rss(pid: int | None = None) -> dict[str, float]:
    """Resident set now and at its peak (VmRSS, VmHWM) of a process, in MB (Linux)."""
    out = {}
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) / 1024
    return out


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def dir_bytes(path: str, prefix: str = "") -> int:
    """Bytes of the entries of ``path`` whose name starts with ``prefix`` (dirs walked)."""
    total = 0
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if not name.startswith(prefix):
            continue
        if os.path.isfile(full):
            total += os.path.getsize(full)
        elif os.path.isdir(full):
            for root, _dirs, files in os.walk(full):
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def wait_settled(count: Callable[[], int], target: int, timeout: float, quiet: float = 1.0) -> int:
    """Wait until ``count()`` reaches ``target``, or is above 0 and unchanged for
    ``quiet`` seconds (a system running fewer at once than were started); bounded."""
    end = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < end:
        now = count()
        if now >= target:
            return now
        if now != last:
            last, since = now, time.monotonic()
        elif now > 0 and time.monotonic() - since >= quiet:
            return now
        time.sleep(0.05)
    return count()


def load_spec() -> dict[str, Any]:
    """Read the spec given as the single JSON command-line argument.

    Keys: ``tmp`` (work dir on the benchmark disk), ``quick`` (bool),
    ``limit_s`` (time limit per workload) and ``workloads``: an ordered
    mapping of workload name to parameters (at least ``n``).
    """
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} SPEC_JSON")
    return json.loads(sys.argv[1])


def run_main(workloads: dict[str, Workload]) -> None:
    """Run the workloads named in the spec, one JSON line each, never raising."""
    protect_stdout()
    spec = load_spec()
    for name, params in spec["workloads"].items():
        fn = workloads.get(name)
        if fn is None:
            emit({"workload": name, "na": "no equivalent in this system"})
            continue
        work = os.path.join(spec["tmp"], name)
        os.makedirs(work, exist_ok=True)
        params = dict(params, quick=spec.get("quick", False), limit_s=spec.get("limit_s", 600))
        started = time.perf_counter()
        try:
            res = fn(int(params["n"]), work, params)
            res["workload"] = name
            res.setdefault("extra", {})["wall_s"] = round(time.perf_counter() - started, 3)
            emit(res)
        except NotAvailable as exc:
            emit({"workload": name, "na": str(exc)})
        except BaseException as exc:  # noqa: BLE001 - report, never crash the harness
            traceback.print_exc()
            emit({"workload": name, "error": f"{type(exc).__name__}: {exc}"[:500]})
            if isinstance(exc, KeyboardInterrupt):
                raise
