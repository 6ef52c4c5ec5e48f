"""Shared fixtures: isolated Jupyter dirs and real engine subprocesses on temp DuckDB files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

_SESSION_DIR = None


def pytest_configure(config):
    """Keep runtime files and the default database of tests away from the user's."""
    global _SESSION_DIR
    import tempfile

    _SESSION_DIR = Path(tempfile.mkdtemp(prefix="durable-nb-tests-"))
    os.environ["JUPYTER_RUNTIME_DIR"] = str(_SESSION_DIR / "runtime")
    os.environ["JUPYTER_DATA_DIR"] = str(_SESSION_DIR / "data")
    os.environ.pop("DURABLE_NB_URL", None)
    os.environ.pop("DURABLE_NB_TOKEN", None)
    os.environ.pop("DURABLE_NB_DB", None)


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
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self):
        self.stop()
        return self.start()


@pytest.fixture
def make_engine(tmp_path):
    """Factory: start an engine on ``tmp_path/<name>.duckdb`` with extra serve args."""
    engines: list[EngineProcess] = []

    def make(*args: str, name: str = "store") -> EngineProcess:
        e = EngineProcess(tmp_path / f"{name}.duckdb", ["--wait-grace", "0.3", *args])
        e.start()
        engines.append(e)
        return e

    yield make
    for e in engines:
        e.stop()


@pytest.fixture
def engine(make_engine) -> EngineProcess:
    return make_engine()


@pytest.fixture
def marks(tmp_path) -> Path:
    """A folder where step bodies count their executions (one byte per run)."""
    d = tmp_path / "marks"
    d.mkdir()
    return d


def count(marks: Path, name: str) -> int:
    p = marks / name
    return p.stat().st_size if p.exists() else 0


def bump(marks: str | Path, name: str) -> int:
    """Record one execution of ``name``; returns how many there were, this one included."""
    p = Path(marks) / name
    with open(p, "a") as f:
        f.write("x")
    return p.stat().st_size
