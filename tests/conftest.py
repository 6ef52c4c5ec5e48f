"""Shared fixtures: isolated Jupyter dirs and real engine subprocesses on temp DuckDB files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _support import EngineProcess

_SESSION_DIR = None


def pytest_configure(config):
    """Keep runtime files and the default database of tests away from the user's."""
    global _SESSION_DIR
    import tempfile

    _SESSION_DIR = Path(tempfile.mkdtemp(prefix="durable-nb-tests-"))
    os.environ["JUPYTER_RUNTIME_DIR"] = str(_SESSION_DIR / "runtime")
    os.environ["JUPYTER_DATA_DIR"] = str(_SESSION_DIR / "data")
    for name in ("DURABLE_NB_URL", "DURABLE_NB_TOKEN", "DURABLE_NB_DB", "DURABLE_NB_SOCKET"):
        os.environ.pop(name, None)


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
