"""Tasks the Dask executor tests run on Dask workers (imported there by reference: the
workers find this folder on the path each attempt carries)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import durable_nb as dn


def where() -> tuple[str, int]:
    """(the Dask worker's address, this process's pid): raises outside a Dask worker."""
    from distributed import get_worker

    return get_worker().address, os.getpid()


def note(marks: str, name: str) -> None:
    """Append when ``name`` began (one line each time it runs)."""
    with open(Path(marks) / name, "a") as f:
        f.write(f"{time.time()!r}\n")


def notes(marks: str | Path, name: str) -> list[float]:
    p = Path(marks) / name
    return [float(x) for x in p.read_text().split()] if p.exists() else []


@dn.step
def pause(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@dn.task(queue=dn.Queue("cluster-q", concurrency_limit=3))
def limited(i: int) -> tuple[str, int, int]:
    pause(0.02)
    return (*where(), i)


@dn.task(resources={"GPU": 1})
def on_gpu() -> tuple[str, int]:
    return where()


@dn.task(executor="local")
def stays_local() -> int:
    return os.getpid()


@dn.step
def first(marks: str) -> str:
    note(marks, "first")
    return "one"


@dn.step
def blocking(marks: str) -> str:
    """Its first execution never ends (the test kills its worker); later ones return."""
    note(marks, "blocking")
    while len(notes(marks, "blocking")) < 2:
        time.sleep(0.02)
    return "two"


@dn.task(retry=dn.Retry(max_attempts=3, min_timeout=0.1, randomize=False))
def survives(marks: str) -> tuple[str, str, str]:
    a = first(marks)
    b = blocking(marks)
    return a, b, where()[0]


@dn.step
def tick(marks: str, i: int) -> int:
    note(marks, f"tick-{i}")
    time.sleep(0.1)
    return i


@dn.task
def ticking(marks: str, n: int) -> int:
    return sum(tick(marks, i) for i in range(n))


@dn.task(retry=dn.Retry(max_attempts=1))
def apply(fn, x):  # noqa: ANN001 - any function, pickled by reference with its module
    return fn(x)


@dn.task
def double_it(x: int) -> tuple[int, str]:
    return pause(0) + 2 * x, where()[0]


@dn.task
def looks(path: str, sleep: float) -> tuple[str, bool, str]:
    """Where it ran and whether ``path`` (the engine's database folder) is visible there,
    across a durable sleep that suspends the run and resumes it in a new attempt."""
    before = pause(0)
    dn.sleep(sleep)
    return where()[0], os.path.exists(path), str(before) + socket.gethostname()
