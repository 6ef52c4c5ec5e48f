"""Prefect 3 workloads, run inside the ``prefect`` venv.

Durable mode: ``persist_result=True`` on every flow and task, the default
local API (an ephemeral server that Prefect starts as a subprocess on
127.0.0.1, backed by SQLite in ``PREFECT_HOME``), analytics and telemetry
off.  A "run" is a flow run (or, on the queue workloads, a background task
run); a "step" is a task run inside a flow.  All workloads of one repetition
share one process, because starting Prefect (server, database migrations)
takes 10-20 s; that start-up is done as a warm-up before anything is timed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

import _common as c

# Settings are read when prefect is imported, so they are set first.  The
# task-worker child inherits PREFECT_HOME and gets PREFECT_API_URL from us.
_CHILD = len(sys.argv) >= 2 and sys.argv[1] == "--task-worker"
if not _CHILD:
    _SPEC = json.loads(sys.argv[1]) if len(sys.argv) == 2 else {"tmp": "."}
    os.environ["PREFECT_HOME"] = os.path.join(_SPEC["tmp"], "prefect_home")
    for _var in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILES_PATH"):
        os.environ.pop(_var, None)
os.environ.update(
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    DO_NOT_TRACK="1",
    PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true",
    PREFECT_UI_ENABLED="false",
)

from prefect import flow, task  # noqa: E402
from prefect.settings import get_current_settings, temporary_settings  # noqa: E402

STATE: dict[str, Any] = {}


@task(persist_result=True)
def noop(i: int) -> int:
    return i


@flow(persist_result=True)
def many_steps(n: int) -> int:
    for i in range(n):
        noop(i)
    return n


@flow(persist_result=True)
def one() -> int:
    return noop(0)


@task(persist_result=True)
def stamp() -> float:
    """First line of user code records the wall clock for trigger->start."""
    return time.time()


@task(persist_result=True)
def one_task() -> int:
    return 0


def _api_url() -> str:
    """URL of the ephemeral server this process started (the warm-up starts it)."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if not server.running:
        raise RuntimeError("the ephemeral Prefect server is not running")
    return server.api_url


def _cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def settle(limit_s: float = 60.0) -> float:
    """Wait (bounded) until the server and worker are idle; seconds waited.

    The Prefect server records task-run states from events in background
    services; a workload that starts while it is still busy with the
    previous one's backlog would be charged for it.
    """
    from prefect.server.api.server import SubprocessASGIServer

    proc = SubprocessASGIServer().server_process
    pids = [p.pid for p in (proc, STATE.get("worker")) if p is not None]
    t = time.perf_counter()
    while time.perf_counter() - t < limit_s:
        before = sum(_cpu_s(pid) for pid in pids)
        time.sleep(0.5)
        if sum(_cpu_s(pid) for pid in pids) - before < 0.05:
            break
    return time.perf_counter() - t


def _cpu_all() -> dict[str, float]:
    """CPU seconds of this process, the server and the task worker."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer().server_process
    worker = STATE.get("worker")
    return {
        "client": _cpu_s(os.getpid()),
        "server": _cpu_s(server.pid) if server else 0.0,
        "worker": _cpu_s(worker.pid) if worker else 0.0,
    }


def _count_completed_task_runs() -> int:
    """Task runs the server has recorded as COMPLETED (REST count endpoint)."""
    import httpx

    body = {"task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    resp = httpx.post(_api_url() + "/task_runs/count", json=body, timeout=30)
    resp.raise_for_status()
    return int(resp.json())


def _task_worker(limit_s: float) -> str:
    """Start (once) a task-worker process with limit=2 serving the queue tasks."""
    if "worker" not in STATE:
        url = _api_url()
        env = dict(os.environ, PREFECT_API_URL=url)
        STATE["worker"] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--task-worker", str(limit_s)], env=env
        )
        STATE["url"] = url
    return STATE["url"]


def _stop_worker() -> None:
    proc = STATE.pop("worker", None)
    if proc is not None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def _result(future: Any, timeout: float) -> Any:
    """``future.result`` that tolerates the short window in which a just-delayed
    task run has no state yet (Prefect raises RuntimeError then)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return future.result(timeout=max(0.1, end - time.monotonic()))
        except RuntimeError as exc:
            if "hasn't started yet" not in str(exc) or time.monotonic() > end:
                raise
            time.sleep(0.01)


def w_step(n: int, work: str, p: dict[str, Any]) -> c.Result:
    many_steps(5)
    settled = settle()
    base = _count_completed_task_runs()
    t = time.perf_counter()
    assert many_steps(n) == n
    client_s = time.perf_counter() - t
    recorded = c.wait_until(lambda: _count_completed_task_runs() >= base + n, p["limit_s"] / 3, 0.05)
    recorded_s = time.perf_counter() - t
    return c.result(
        client_s / n * 1000, "ms/step", n=n, settle_s=round(settled, 2),
        metrics={
            "until the server recorded every task run": c.metric(
                recorded_s / n * 1000 if recorded else None, "ms/step"
            )
        },
    )


def w_run(n: int, work: str, p: dict[str, Any]) -> c.Result:
    for _ in range(3):
        one()
    settled = settle()
    t = time.perf_counter()
    for _ in range(n):
        one()
    per = (time.perf_counter() - t) / n * 1000
    metrics: dict[str, Any] = {}
    default_hb = STATE.get("default_heartbeat")
    if default_hb:
        # Prefect's default: a heartbeat thread, joined when a sync flow ends.
        with temporary_settings(updates={"flows.heartbeat_frequency": default_hb}):
            one()
            m = int(p["n_default"])
            t = time.perf_counter()
            for _ in range(m):
                one()
            metrics[f"default heartbeat ({default_hb} s), n={m}"] = c.metric(
                (time.perf_counter() - t) / m * 1000, "ms/run"
            )
    return c.result(per, "ms/run", n=n, settle_s=round(settled, 2), metrics=metrics)


def w_latency(n: int, work: str, p: dict[str, Any]) -> c.Result:
    url = _task_worker(float(p["limit_s"]))
    with temporary_settings(updates={"api.url": url}):
        for _ in range(3):  # warm-up; also waits for the worker to subscribe
            _result(stamp.delay(), 120)
        settled = settle()
        lat = []
        rng = random.Random(1)
        for _ in range(n):
            time.sleep(rng.uniform(0, c.LATENCY_JITTER_S))
            t0 = time.time()
            started = _result(stamp.delay(), 60)
            lat.append((started - t0) * 1000)
    return c.result(
        c.median(lat), "ms", n=n, settle_s=round(settled, 2), queue="task.delay() to a task worker (limit=2)",
        metrics={"p99": c.metric(c.percentile(lat, 99), "ms")},
    )


def w_throughput(n: int, work: str, p: dict[str, Any]) -> c.Result:
    url = _task_worker(float(p["limit_s"]))
    with temporary_settings(updates={"api.url": url}):
        for _ in range(2):
            _result(one_task.delay(), 120)
        settled = settle()
        cpu0 = _cpu_all()
        t = time.perf_counter()
        futures = [one_task.delay() for _ in range(n)]
        t_enq = time.perf_counter() - t
        for f in futures:
            _result(f, p["limit_s"] / 2)
        el = time.perf_counter() - t
        cpu = {k: round(v - cpu0[k], 2) for k, v in _cpu_all().items()}
    return c.result(
        n / el, "runs/s", n=n, settle_s=round(settled, 2), cpu_s=cpu, queue="task.delay() to a task worker (limit=2)",
        metrics={"enqueue only": c.metric(n / t_enq, "runs/s")},
    )


def task_worker_main(limit_s: float) -> None:
    """Child process: serve the queue tasks with at most 2 at a time."""
    from prefect.task_worker import serve

    serve(stamp, one_task, limit=2, timeout=limit_s)


def main() -> None:
    c.protect_stdout()
    settings = get_current_settings()
    STATE["default_heartbeat"] = getattr(getattr(settings, "flows", None), "heartbeat_frequency", None)
    updates = {"flows.heartbeat_frequency": None} if STATE["default_heartbeat"] else {}
    try:
        with temporary_settings(updates=updates):
            t = time.perf_counter()
            one()  # warm-up: starts the ephemeral server, migrates the database
            STATE["startup_s"] = time.perf_counter() - t
            print(f"prefect warm-up took {STATE['startup_s']:.1f} s", file=sys.stderr)
            c.run_main({"step": w_step, "run": w_run, "latency": w_latency, "throughput": w_throughput})
    finally:
        _stop_worker()


if __name__ == "__main__":
    if _CHILD:
        task_worker_main(float(sys.argv[2]))
    else:
        main()
