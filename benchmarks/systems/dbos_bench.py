"""DBOS Transact workloads, run inside the ``dbos`` venv.

DBOS is a library: workflows run in the calling process and every step's
output is written to the system database before the next step runs.  Here
the system database is a SQLite file (``system_database_url=sqlite:///...``),
so no Postgres is involved.  One script invocation launches DBOS once.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

import _common as c
from dbos import DBOS, SetWorkflowID

# Set by the recovery children: phase 1 blocks in ``hold``, phase 2 does not.
RELEASE_FILE = os.environ.get("BENCH_RELEASE_FILE", "")
MARKS: dict[int, float] = {}
SHORT_POLL_S = 0.01
DEFAULT_POLL_S = 1.0  # dbos' default queue polling interval


@DBOS.step()
def noop(i: int) -> int:
    return i


@DBOS.step()
def hold(i: int) -> int:
    """Block until the release file exists (bounded), keeping the run in flight."""
    end = time.monotonic() + 600
    while RELEASE_FILE and not os.path.exists(RELEASE_FILE) and time.monotonic() < end:
        time.sleep(0.2)
    return i


@DBOS.workflow()
def many_steps(n: int) -> int:
    for i in range(n):
        noop(i)
    return n


@DBOS.workflow()
def one() -> int:
    return noop(0)


@DBOS.workflow()
def timed_steps(n: int) -> list[float]:
    """n steps, each timed as the workflow waits for it (benchmark 11)."""
    clock = time.perf_counter
    out = []
    for i in range(n):
        t = clock()
        noop(i)
        out.append(clock() - t)
    return out


@DBOS.workflow()
def stamp() -> float:
    """First line of user code records the wall clock for trigger->start."""
    return time.time()


@DBOS.workflow()
def recoverable(i: int) -> int:
    MARKS[i] = time.time()
    noop(i)
    return hold(i)


_LAUNCHED: dict[str, str] = {}


def launch(work: str) -> str:
    """Create and launch DBOS on a SQLite system database in ``work`` (once per process)."""
    if not _LAUNCHED:
        db = os.path.join(work, "dbos_sys.sqlite")
        DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{db}"})
        DBOS.launch()
        _LAUNCHED["db"] = db
    return _LAUNCHED["db"]


def make_queue(name: str, concurrency: int, poll_s: float | None = None) -> Any:
    """Declare a queue with the API of the installed version.

    dbos 3.x registers queues in the database after launch
    (``DBOS.register_queue``); 1.x/2.x construct ``dbos.Queue`` directly.
    """
    if hasattr(DBOS, "register_queue"):
        factory: Any = DBOS.register_queue
    else:
        from dbos import Queue

        factory = Queue
    kwargs: dict[str, Any] = {}
    names = inspect.signature(factory).parameters
    kwargs["global_concurrency" if "global_concurrency" in names else "concurrency"] = concurrency
    if poll_s is not None:
        if "polling_interval_sec" not in names:
            raise c.NotAvailable("this dbos version has no polling_interval_sec")
        kwargs["polling_interval_sec"] = poll_s
    return factory(name, **kwargs)


def w_step(n: int, work: str, p: dict[str, Any]) -> c.Result:
    launch(work)
    many_steps(20)  # warm-up
    t = time.perf_counter()
    assert many_steps(n) == n
    per = (time.perf_counter() - t) / n * 1000
    return c.result(per, "ms/step", n=n, call="direct workflow call")


def w_run(n: int, work: str, p: dict[str, Any]) -> c.Result:
    launch(work)
    for _ in range(10):
        DBOS.start_workflow(one).get_result()
    t = time.perf_counter()
    for _ in range(n):
        DBOS.start_workflow(one).get_result()
    per_started = (time.perf_counter() - t) / n * 1000
    t = time.perf_counter()
    for _ in range(n):
        one()
    per_direct = (time.perf_counter() - t) / n * 1000
    return c.result(
        per_started,
        "ms/run",
        n=n,
        call="DBOS.start_workflow(...).get_result()",
        metrics={"direct call one()": c.metric(per_direct, "ms/run")},
    )


def _get(handle: Any, poll_s: float | None) -> Any:
    """``get_result`` with a result-polling interval where the version has one.

    Handles of enqueued workflows poll the database for the result (1 s by
    default in dbos 3.x); that does not change when user code starts.
    """
    if poll_s is not None and "polling_interval_sec" in inspect.signature(handle.get_result).parameters:
        return handle.get_result(polling_interval_sec=poll_s)
    return handle.get_result()


def _latencies(queue: Any, n: int, jitter_s: float) -> list[float]:
    """Sequential trigger->start latencies in ms.

    ``jitter_s``: a random idle gap before each trigger, so triggers land at a
    random phase of a slow queue poll instead of always just after one.
    """
    rng = random.Random(1)
    for _ in range(1):  # warm-up
        _get(queue.enqueue(stamp), SHORT_POLL_S)
    out = []
    for _ in range(n):
        time.sleep(rng.uniform(0, jitter_s))
        t0 = time.time()
        started = _get(queue.enqueue(stamp), SHORT_POLL_S)
        out.append((started - t0) * 1000)
    return out


def w_latency(n: int, work: str, p: dict[str, Any]) -> c.Result:
    launch(work)
    default = _latencies(make_queue("lat_default", 2), int(p["n_default"]), DEFAULT_POLL_S)
    extra: dict[str, Any] = {
        "p99": c.metric(c.percentile(default, 99), "ms"),
    }
    try:
        short = _latencies(make_queue("lat_short", 2, SHORT_POLL_S), n, c.LATENCY_JITTER_S)
        extra[f"poll {SHORT_POLL_S:g} s: median"] = c.metric(c.median(short), "ms")
        extra[f"poll {SHORT_POLL_S:g} s: p99"] = c.metric(c.percentile(short, 99), "ms")
    except c.NotAvailable as exc:
        extra["short poll"] = c.metric(None, str(exc))
    return c.result(c.median(default), "ms", n=len(default), n_short=n, metrics=extra)


def _throughput(queue: Any, n: int, poll_s: float | None) -> float:
    _get(queue.enqueue(one), SHORT_POLL_S)  # warm-up
    t = time.perf_counter()
    handles = [queue.enqueue(one) for _ in range(n)]
    for h in handles:
        _get(h, poll_s)
    return n / (time.perf_counter() - t)


def w_throughput(n: int, work: str, p: dict[str, Any]) -> c.Result:
    launch(work)
    default = _throughput(make_queue("tp_default", 2), int(p["n_default"]), None)
    extra: dict[str, Any] = {}
    try:
        extra[f"poll {SHORT_POLL_S:g} s"] = c.metric(_throughput(make_queue("tp_short", 2, SHORT_POLL_S), n, SHORT_POLL_S), "runs/s")
    except c.NotAvailable as exc:
        extra["short poll"] = c.metric(None, str(exc))
    return c.result(default, "runs/s", n=int(p["n_default"]), n_short=n, metrics=extra)


def _count_success(n: int) -> int:
    try:
        rows = DBOS.list_workflows(
            workflow_id_prefix="rec-", status="SUCCESS", load_input=False, load_output=False
        )
    except TypeError:  # older signature
        rows = DBOS.list_workflows(status="SUCCESS")
    return sum(1 for r in rows if str(r.workflow_id).startswith("rec-"))


def recovery_child(cfg: dict[str, Any]) -> None:
    """Phase 1: start n workflows and block them; phase 2: relaunch and time recovery."""
    c.protect_stdout()
    n = cfg["n"]
    os.makedirs(cfg["work"], exist_ok=True)
    launch(cfg["work"])
    if cfg["phase"] == 1:
        for i in range(n):
            with SetWorkflowID(f"rec-{i}"):
                DBOS.start_workflow(recoverable, i)
        ok = c.wait_until(lambda: len(MARKS) >= n, timeout=cfg["limit_s"] / 3, interval=0.05)
        c.emit({"ready": ok, "executing": len(MARKS)})
        time.sleep(cfg["limit_s"])  # wait to be SIGKILLed (bounded)
        return
    all_exec = c.wait_until(lambda: len(MARKS) >= n, timeout=cfg["limit_s"] / 2, interval=0.01)
    t_exec = max(MARKS.values()) if MARKS else time.time()  # when the last one re-entered
    all_done = c.wait_until(lambda: _count_success(n) >= n, timeout=cfg["limit_s"] / 2, interval=0.05)
    c.emit({"t_exec": t_exec, "t_done": time.time(), "all_exec": all_exec, "all_done": all_done,
            "executing": len(MARKS), "done": _count_success(n)})
    DBOS.destroy()


def w_recovery(n: int, work: str, p: dict[str, Any]) -> c.Result:
    """SIGKILL the process running n in-flight workflows; relaunch; DBOS recovers on launch."""
    release = os.path.join(work, "release")
    limit = float(p["limit_s"])

    def child(phase: int) -> subprocess.Popen[str]:
        cfg = {"phase": phase, "n": n, "work": work, "limit_s": limit * 0.8}
        env = dict(os.environ, BENCH_RELEASE_FILE=release)
        return subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--recovery-child", json.dumps(cfg)],
            stdout=subprocess.PIPE, text=True, env=env,
        )

    first = child(1)
    try:
        line = first.stdout.readline() if first.stdout else ""
        ready = json.loads(line) if line.strip() else {}
        if not ready.get("ready"):
            raise RuntimeError(f"phase 1 did not get all runs executing: {ready}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    with open(release, "w"):
        pass
    t_restart = time.time()  # the relaunch includes starting Python and importing dbos
    second = child(2)
    try:
        out, _ = second.communicate(timeout=limit * 0.9)
    except subprocess.TimeoutExpired:
        second.kill()
        raise
    rec = json.loads(out.strip().splitlines()[-1])
    if not (rec["all_exec"] and rec["all_done"]):
        raise RuntimeError(f"recovery incomplete: {rec}")
    return c.result(
        rec["t_exec"] - t_restart,
        "s",
        n=n,
        what="time from relaunching the killed process until every workflow re-entered user code",
        metrics={
            "runs executing user code at the kill": c.metric(ready.get("executing"), "runs"),
            "until all completed": c.metric(rec["t_done"] - t_restart, "s"),
        },
    )


def w_concurrency(n: int, work: str, p: dict[str, Any]) -> c.Result:
    """Benchmark 11: 1, 2, 4 and 8 workflows of n steps at once (DBOS runs each started
    workflow in a thread of this process); aggregate steps/s and per-step latency."""
    launch(work)
    for h in [DBOS.start_workflow(timed_steps, 20) for _ in range(8)]:  # warm-up
        h.get_result()
    metrics: dict[str, Any] = {}
    top = first = 0.0
    for k in (1, 2, 4, 8):
        t = time.perf_counter()
        handles = [DBOS.start_workflow(timed_steps, n) for _ in range(k)]
        lat = [x * 1000 for h in handles for x in h.get_result()]
        top = k * n / (time.perf_counter() - t)
        first = first or top
        metrics[f"{k} runs: aggregate"] = c.metric(top, "steps/s")
        metrics[f"{k} runs: step latency median"] = c.metric(c.median(lat), "ms")
        metrics[f"{k} runs: step latency p99"] = c.metric(c.percentile(lat, 99), "ms")
    return c.result(top, "steps/s", n=n, runs=8, scaling_1_to_8=round(top / first, 2),
                    metrics=metrics)


def w_memory(n: int, work: str, p: dict[str, Any]) -> c.Result:
    """Resident set of the process that runs the workflows (DBOS is a library) after n runs."""
    launch(work)
    before = c.rss()["VmRSS"]
    for _ in range(n):
        DBOS.start_workflow(one).get_result()
    mem = c.rss()
    return c.result(mem["VmRSS"], "MB", n=n, metrics={
        "peak (VmHWM)": c.metric(mem["VmHWM"], "MB"),
        "process before the runs": c.metric(before, "MB")})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--recovery-child":
        recovery_child(json.loads(sys.argv[2]))
    else:
        c.run_main(
            {
                "step": w_step,
                "run": w_run,
                "latency": w_latency,
                "throughput": w_throughput,
                "recovery": w_recovery,
                "memory": w_memory,
                "concurrency": w_concurrency,
                "million": lambda n, w, p: __import__("dbos_million").w_million(n, w, p),
            }
        )
