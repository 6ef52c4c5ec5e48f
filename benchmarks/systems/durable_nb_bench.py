"""durable_nb workloads, run in the harness's own interpreter.

Everything that touches durable_nb's API is in this file, so it can be
adjusted in one place while the API settles.  Each workload starts its own
engine (``python -m durable_nb serve --db PATH``) on a fresh DuckDB file in
its work dir, connects to it, and stops it (SIGTERM) at the end.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import _common as c

SQL_POLL_S = 0.05


def _import() -> Any:
    try:
        import durable_nb
    except Exception as exc:  # noqa: BLE001 - any import failure is reported
        raise RuntimeError(f"durable_nb not importable: {type(exc).__name__}: {exc}") from exc
    return durable_nb


class Engine:
    """A ``durable_nb serve`` process started (and stopped) by this script."""

    def __init__(self, db: str, log: str) -> None:
        self.db, self.log_path = db, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "durable_nb", "serve", "--db", self.db],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()

    def connect(self, dn: Any, timeout: float = 60.0) -> Any:
        """``dn.connect`` once the engine answers; bounded retries.

        ``start=False`` so the client never starts a second, detached engine
        while ours is still coming up.
        """
        kw = {"start": False} if "start" in inspect.signature(dn.connect).parameters else {}
        end = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}: {self.tail()}")
            try:
                return dn.connect(db=self.db, **kw)
            except Exception:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)

    def tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-400:].decode(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def _session(work: str) -> Iterator[tuple[Any, Engine]]:
    """Import durable_nb, start an engine on ``work``/bench.duckdb and connect; the
    engine is stopped when the block ends."""
    dn = _import()
    eng = Engine(os.path.join(work, "bench.duckdb"), os.path.join(work, "engine.log"))
    eng.start()
    try:
        eng.connect(dn)
        yield dn, eng
    finally:
        eng.stop()


def _rows(res: Any) -> list[tuple[Any, ...]]:
    """Rows from ``dn.sql`` (a list of tuples, or an object with ``.rows``)."""
    return list(getattr(res, "rows", res))


def _count(dn: Any, where: str) -> int:
    return int(_rows(dn.sql(f"select count(*) from runs where {where}"))[0][0])


def _tasks(dn: Any) -> dict[str, Any]:
    """Define the benchmark's steps and tasks (needs a connected client)."""
    q_lat = dn.Queue("bench_latency", concurrency_limit=2)
    q_tp = dn.Queue("bench_throughput", concurrency_limit=2)

    @dn.step()
    def noop(i: int) -> int:
        return i

    @dn.step()
    def hold(i: int) -> int:
        """Mark entry, then block until the release file exists (bounded).

        Paths come from the environment, in case user code runs in another process.
        """
        marker = os.environ.get("BENCH_MARKER_FILE", "")
        release = os.environ.get("BENCH_RELEASE_FILE", "")
        if marker:
            with open(marker, "a") as f:
                f.write(f"{i} {time.time()}\n")
        end = time.monotonic() + 600
        while release and not os.path.exists(release) and time.monotonic() < end:
            time.sleep(0.2)
        return i

    @dn.task(id="steps")
    def many_steps(n: int) -> int:
        for i in range(n):
            noop(i)
        return n

    @dn.task(id="one")
    def one() -> int:
        return noop(0)

    @dn.task(id="stamp", queue=q_lat)
    def stamp() -> float:
        return time.time()

    @dn.task(id="one_q", queue=q_tp)
    def one_q() -> int:
        return noop(0)

    @dn.task(id="recoverable")
    def recoverable(i: int) -> int:
        noop(i)
        return hold(i)

    return dict(locals())


def w_step(n: int, work: str, p: dict[str, Any]) -> c.Result:
    with _session(work) as (dn, eng):
        t = _tasks(dn)
        t["many_steps"].trigger(20).result(timeout=120)
        start = time.perf_counter()
        assert t["many_steps"].trigger(n).result(timeout=p["limit_s"] * 0.8) == n
        return c.result((time.perf_counter() - start) / n * 1000, "ms/step", n=n)


def w_run(n: int, work: str, p: dict[str, Any]) -> c.Result:
    with _session(work) as (dn, eng):
        t = _tasks(dn)
        for _ in range(10):
            t["one"].trigger().result(timeout=60)
        start = time.perf_counter()
        for _ in range(n):
            t["one"].trigger().result(timeout=60)
        return c.result((time.perf_counter() - start) / n * 1000, "ms/run", n=n)


def w_latency(n: int, work: str, p: dict[str, Any]) -> c.Result:
    with _session(work) as (dn, eng):
        t = _tasks(dn)
        for _ in range(3):
            t["stamp"].trigger().result(timeout=60)
        rng = random.Random(1)
        lat = []
        for _ in range(n):
            time.sleep(rng.uniform(0, c.LATENCY_JITTER_S))
            t0 = time.time()
            started = t["stamp"].trigger().result(timeout=60)
            lat.append((started - t0) * 1000)
        return c.result(c.median(lat), "ms", n=n, metrics={"p99": c.metric(c.percentile(lat, 99), "ms")})


def w_throughput(n: int, work: str, p: dict[str, Any]) -> c.Result:
    with _session(work) as (dn, eng):
        t = _tasks(dn)
        t["one_q"].trigger().result(timeout=60)
        start = time.perf_counter()
        handles = [t["one_q"].trigger() for _ in range(n)]
        for h in handles:
            h.result(timeout=p["limit_s"] * 0.8)
        return c.result(n / (time.perf_counter() - start), "runs/s", n=n)


def _markers(path: str, since: float) -> list[float]:
    """Sorted first-entry times (at or after ``since``) of each run that wrote a marker."""
    first: dict[str, float] = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and float(parts[1]) >= since:
                    first[parts[0]] = min(first.get(parts[0], float("inf")), float(parts[1]))
    except OSError:
        return []
    return sorted(first.values())


def w_recovery(n: int, work: str, p: dict[str, Any]) -> c.Result:
    """n runs in flight, engine SIGKILLed and restarted.

    "Executing again": as many runs as were executing at the kill have re-entered
    user code (marker lines written by the ``hold`` step, with the runs' own clock);
    "completed": ``dn.sql`` counts n COMPLETED runs (polled every 50 ms).
    """
    release = os.environ["BENCH_RELEASE_FILE"] = os.path.join(work, "release")
    markers = os.environ["BENCH_MARKER_FILE"] = os.path.join(work, "markers.txt")
    limit = float(p["limit_s"])
    with _session(work) as (dn, eng):
        t = _tasks(dn)
        t_trigger = time.time()
        for i in range(n):
            t["recoverable"].trigger(i)
        # The engine runs at most --workers runs at once (8 by default); the rest stay QUEUED.
        in_flight = c.wait_settled(lambda: len(_markers(markers, t_trigger)), n, limit / 4)
        if in_flight == 0:
            raise RuntimeError("no run reached user code before the kill")
        eng.kill()
        with open(release, "w"):
            pass
        t0_wall, t0 = time.time(), time.perf_counter()
        eng.start()
        eng.connect(dn)
        answered = time.perf_counter() - t0
        got = c.first_true(
            {
                "exec": lambda: len(_markers(markers, t0_wall)) >= in_flight,
                "done": lambda: _count(dn, "status = 'COMPLETED'") >= n,
            },
            limit * 0.6, SQL_POLL_S,
        )
        if got["exec"] is None:
            back = len(_markers(markers, t0_wall))
            raise RuntimeError(f"only {back} of {in_flight} in-flight runs re-entered user code after the restart")
        if got["done"] is None:
            finished = _count(dn, "status = 'COMPLETED'")
            raise RuntimeError(f"only {finished} of {n} runs COMPLETED after the restart")
        # Exact: when the in_flight-th run re-entered user code (its own clock reading).
        t_exec = _markers(markers, t0_wall)[in_flight - 1] - t0_wall
        t_done = answered + got["done"]
        listed = len(dn.runs(status="COMPLETED", task="recoverable", limit=n))
        return c.result(
            t_exec, "s", n=n, in_flight_at_kill=in_flight, listed=listed,
            metrics={
                "runs executing user code at the kill": c.metric(in_flight, "runs"),
                "until the restarted engine answers": c.metric(answered, "s"),
                "until all completed": c.metric(t_done, "s"),
            },
        )


def w_checkpoint(n: int, work: str, p: dict[str, Any]) -> c.Result:
    """A cell holding a 50 MB array and a counter, checkpointed after each of n statements.

    Uses the function behind ``%%durable`` (each top-level statement of a cell is a
    checkpoint of its variables), so no kernel is needed.
    """
    nbytes = int(p.get("bytes", 50_000_000))
    with _session(work) as (dn, eng):
        from durable_nb.client.cells import trigger_cell

        source = (  # a standard-library array: the harness's interpreter may lack numpy
            "import array, random\n"
            f"blob = array.array('d', random.Random(0).randbytes({nbytes // 8 * 8}))\n"
            "counter = 0\n" + "counter += 1\n" * n
        )
        start = time.perf_counter()
        trigger_cell(source, {}, name="bench-checkpoint").result(timeout=p["limit_s"] * 0.8)
        elapsed = time.perf_counter() - start
        checkpoints = int(_rows(dn.sql("select count(*) from checkpoints"))[0][0])
        live = c.dir_bytes(work, "bench.duckdb") - _reserve_bytes(work)
    after = c.dir_bytes(work, "bench.duckdb") - _reserve_bytes(work)
    files = {name: round(c.dir_bytes(work, name) / 1e6, 2) for name in os.listdir(work) if name.startswith("bench.duckdb")}
    return c.result(
        after / 1e6, "MB", n=n, payload_mb=nbytes / 1e6, checkpoints=checkpoints, files_mb=files,
        metrics={
            "ratio to payload": c.metric(after / nbytes, "x"),
            "with WAL, before close": c.metric(live / 1e6, "MB"),
            "time per checkpoint": c.metric(elapsed / n * 1000, "ms"),
        },
    )


def _reserve_bytes(work: str) -> int:
    """The space the engine keeps free for a full disk (a fixed preallocated file in its
    journal folder), which is not checkpoint growth."""
    path = os.path.join(work, "bench.duckdb.journal", "reserve")
    return os.path.getsize(path) if os.path.exists(path) else 0


def w_notebook(n: int, work: str, p: dict[str, Any]) -> c.Result:
    """``%%durable --wait`` in a real kernel: execute request -> variable back."""
    import json

    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    with _session(work) as (dn, eng):
        spec_dir = os.path.join(work, "kernels", "bench")
        os.makedirs(spec_dir, exist_ok=True)
        with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
            json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                       "display_name": "bench", "language": "python"}, f)
        km = KernelManager(kernel_name="bench",
                           kernel_spec_manager=KernelSpecManager(kernel_dirs=[os.path.dirname(spec_dir)]))
        km.start_kernel(cwd=work)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)

            def run(code: str, **kw: Any) -> dict[str, Any]:
                reply = kc.execute_interactive(code, timeout=60, output_hook=lambda m: None, **kw)
                return reply["content"]

            setup = run(f"import durable_nb as dn\ndn.connect(db={eng.db!r})\n%load_ext durable_nb")
            if setup.get("status") != "ok":
                raise c.NotAvailable(f"not available: {setup.get('ename')}: {setup.get('evalue')}")
            cell = "%%durable --wait\nx = {k} + 1\n"
            times = []
            for k in range(n + 2):
                t = time.perf_counter()
                rep = run(cell.format(k=k), user_expressions={"x": "x"})
                el = time.perf_counter() - t
                got = rep.get("user_expressions", {}).get("x", {})
                value = got.get("data", {}).get("text/plain") if got.get("status") == "ok" else None
                if rep.get("status") != "ok" or value != str(k + 1):
                    why = f"{rep.get('ename')}: {rep.get('evalue')}" if rep.get("status") != "ok" else f"x={value!r}"
                    raise c.NotAvailable(f"not available: %%durable cell failed ({why})")
                if k >= 2:  # first two are warm-up
                    times.append(el * 1000)
            return c.result(c.median(times), "ms", n=n, metrics={"p99": c.metric(c.percentile(times, 99), "ms")})
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def w_memory(n: int, work: str, p: dict[str, Any]) -> c.Result:
    """Resident set of the engine process once n one-step runs have finished."""
    with _session(work) as (dn, eng):
        t = _tasks(dn)
        before = c.rss(eng.proc.pid)["VmRSS"]
        for start in range(0, n, 1000):  # in waves, so the client's handles stay small
            handles = [t["one"].trigger() for _ in range(min(1000, n - start))]
            for h in handles:
                h.result(timeout=p["limit_s"] * 0.5)
        done = _count(dn, "status = 'COMPLETED'")
        time.sleep(0.5)  # let the last ingest batch land
        mem = c.rss(eng.proc.pid)
        workers = [c.rss(k)["VmRSS"] for k in c.children(eng.proc.pid)]
        return c.result(
            mem["VmRSS"], "MB", n=n, completed=done, workers=len(workers),
            metrics={
                "peak (VmHWM)": c.metric(mem["VmHWM"], "MB"),
                "engine before the runs": c.metric(before, "MB"),
                "its worker processes, together": c.metric(sum(workers), "MB"),
            },
        )


def _lazy(module: str, name: str) -> Any:
    """A workload kept in its own module (``systems/<module>.py``), imported when it runs."""
    def call(n: int, work: str, p: dict[str, Any]) -> c.Result:
        import importlib

        return getattr(importlib.import_module(module), name)(n, work, p)

    return call


if __name__ == "__main__":
    c.run_main(
        {
            "step": w_step,
            "run": w_run,
            "latency": w_latency,
            "throughput": w_throughput,
            "recovery": w_recovery,
            "checkpoint": w_checkpoint,
            "notebook": w_notebook,
            "memory": w_memory,
            "namespace": _lazy("dnb_data", "w_namespace"),
            "column": _lazy("dnb_data", "w_column"),
            "concurrency": _lazy("dnb_concurrency", "w_concurrency"),
            "million": _lazy("dnb_million", "w_million"),
            "bigrun": _lazy("dnb_bigrun", "w_bigrun"),
            "dask": _lazy("dnb_dask", "w_dask"),
        }
    )
