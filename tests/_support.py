"""Helpers shared by test modules and by the worker processes that import them.

Kept out of conftest.py so that `from _support import ...` is unambiguous next to the
browser tests' own conftest.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class EngineProcess:
    """A real `durable-nb serve` subprocess for one database file."""

    def __init__(self, db: Path, args: list[str]):
        self.db = db
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.log = db.with_suffix(".engine.log")

    def start(self, timeout: float = 30.0):
        import durable_nb as dn
        from durable_nb._paths import runtime_file

        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durable_nb", "serve", "--db", str(self.db), *self.args],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            )
        rt = runtime_file(self.db)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited: {self.log.read_text()[-2000:]}")
            try:
                info = json.loads(rt.read_text())
                if info["pid"] == self.proc.pid:
                    self.client = dn.connect(url=info["url"], token=info["token"])
                    self.client.socket_path = info.get("socket")  # as find_engine would
                    self.client.db = self.db
                    self.client.autostart = False
                    return self.client
            except (OSError, ValueError, dn.DurableError):
                pass
            time.sleep(0.05)
        raise RuntimeError("engine did not start in time")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the engine (its workers die with it)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc, 20)

    def restart(self):
        self.stop()
        return self.start()


def count(marks: Path, name: str) -> int:
    p = marks / name
    return p.stat().st_size if p.exists() else 0


def bump(marks: str | Path, name: str) -> int:
    """Record one execution of ``name``; returns how many there were, this one included."""
    p = Path(marks) / name
    with open(p, "a") as f:
        f.write("x")
    return p.stat().st_size


def wait_for(pred, timeout: float = 20.0, what: str = "condition", interval: float = 0.05):
    """Poll ``pred()`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def stop_process(proc, grace: float) -> None:
    """SIGTERM ``proc`` (a Popen or None), SIGKILL it if it is still there after ``grace``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(config_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a Jupyter server under test: no engine of ours inherited, its
    own config dir, and durable_nb enabled by the repository's jupyter-config/."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_NB_")}
    env.update(JUPYTER_CONFIG_DIR=str(config_dir),
               JUPYTER_CONFIG_PATH=str(REPO / "jupyter-config"), **extra)
    return env


def start_server(cmd: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool],
                 timeout: float, what: str) -> subprocess.Popen:
    """Start ``cmd`` with its output in ``log`` and wait until ``ready()`` (errors that
    mean "not listening yet" count as not ready); the log's tail explains a failure."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, ValueError):
            if ready():
                return proc
        time.sleep(0.1)
    stop_process(proc, 10)
    raise RuntimeError(f"{what} did not start in {timeout:.0f} s: {log.read_text()[-3000:]}")
