"""Fixtures of the kernel tests: per test module, one engine process and one real IPython
kernel (jupyter_client) talking to it, with the extension loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import EngineProcess
from test_magics import Kernel


@pytest.fixture(scope="module")
def engine_env(request, tmp_path_factory):
    """An engine for the module; the environment that points a kernel at it."""
    eng = EngineProcess(tmp_path_factory.mktemp(request.module.__name__) / "store.duckdb",
                        ["--wait-grace", "0.3"])
    client = eng.start()
    yield {"DURABLE_NB_URL": client.url, "DURABLE_NB_TOKEN": client.token}
    eng.stop()


@pytest.fixture(scope="module")
def kernel(engine_env):
    k = Kernel.start(engine_env)
    k.ok("%load_ext durable_nb\nimport durable_nb as dn")
    yield k
    k.close()


@pytest.fixture
def scratch(tmp_path, kernel) -> Path:
    """A folder for the test's files, also known to the kernel as ``scratch``."""
    kernel.ok(f"scratch = {str(tmp_path)!r}")
    return tmp_path
