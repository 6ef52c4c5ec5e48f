"""Databases written by an earlier release keep resuming.

tests/data/release-0.1.0/ was written by release 0.1.0 (`tests/data/make_release_db.py`)
and left by a SIGKILLed engine: its journal is in that release's format, its task code
pickles name that release's module paths, and its runs wait, sleep, queue and execute.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from _support import EngineProcess, wait_for

import durable_nb as dn
from durable_nb.client.cells import fetch_variables

FIXTURE = Path(__file__).parent / "data" / "release-0.1.0"


@pytest.fixture
def old_store(tmp_path) -> Path:
    dst = tmp_path / "release-0.1.0"
    shutil.copytree(FIXTURE, dst)
    for root, _dirs, files in os.walk(dst):  # git keeps no modes: private again
        os.chmod(root, 0o700)
        for f in files:
            os.chmod(os.path.join(root, f), 0o600)
    return dst


def test_the_runs_of_a_release_0_1_0_database_resume_and_complete(old_store):
    ids = json.loads((old_store / "runs.json").read_text())
    engine = EngineProcess(old_store / "store.duckdb", ["--wait-grace", "0.3"])
    engine.start()
    try:
        run = {k: dn.get_run(v) for k, v in ids.items()}
        # the run the engine was executing when it died, and the ones behind it
        assert run["executing"].result(timeout=60) == 8
        assert run["queued"].result(timeout=60) == 9
        assert run["delayed"].result(timeout=60) == 7
        assert run["executing"].attempts[0]["outcome"] == "INTERRUPTED"
        # waits recorded by the old release are resolved by the new one
        for k in ("approval", "event", "parent", "cell"):
            assert run[k].status == "WAITING", (k, run[k].status)
        run["approval"].approve("ship", comment="later")
        assert run["approval"].result(timeout=60) == {"doc": "doc-1", "approved": True}
        dn.send_event("compat-event-4", "hello")
        assert run["event"].result(timeout=60) == {"first": 40, "event": "hello"}
        assert [s["status"] for s in run["event"].steps] == ["COMPLETED"], "not run again"
        dn.send_event("compat-child-go", 100)
        assert run["parent"].result(timeout=60) == 210
        run["cell"].approve("cell-ship")
        wait_for(lambda: run["cell"].status == "COMPLETED", 60, "the cell run to complete")
        assert fetch_variables(run["cell"], ["x", "y"]) == {"x": 21, "y": 42}
    finally:
        engine.stop()
