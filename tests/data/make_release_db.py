"""Write the database of tests/data/release-0.1.0/ with the durable_nb of release 0.1.0.

Run it with that release importable (e.g. a checkout of it on PYTHONPATH):
``python tests/data/make_release_db.py OUT_FOLDER``. It leaves, in ``OUT_FOLDER/store.duckdb``,
runs in every state a later release must resume: WAITING on an approval (a task and a
``%%durable`` cell with a checkpoint), WAITING on an event after a recorded step, a parent
WAITING on its child, DELAYED, QUEUED behind a busy worker, and one that was EXECUTING
when the engine was SIGKILLed. `tests/test_compat.py` resumes them with today's code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import durable_nb as dn


@dn.step()
def recorded(x: int) -> int:
    return x * 10


@dn.task(id="compat-approval")
def compat_approval(doc: str) -> dict:
    d = dn.approval("ship", data={"doc": doc})
    return {"doc": doc, "approved": d.approved}


@dn.task(id="compat-event")
def compat_event(x: int) -> dict:
    first = recorded(x)
    data = dn.wait_for_event(f"compat-event-{x}")
    return {"first": first, "event": data}


@dn.task(id="compat-child")
def compat_child(x: int) -> int:
    return dn.wait_for_event("compat-child-go") + x


@dn.task(id="compat-parent")
def compat_parent(x: int) -> int:
    return compat_child.trigger_and_wait(x) * 2


@dn.task(id="compat-slow")
def compat_slow(n: int) -> int:
    time.sleep(1.5)
    return n


CELL = "x = 21\nok = dn.approval('cell-ship').approved\ny = x * 2 if ok else 0\n"


def main(out: Path) -> None:
    from durable_nb.client.cells import trigger_cell
    from durable_nb.core.paths import runtime_file

    out.mkdir(parents=True, exist_ok=True)
    db = out / "store.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "durable_nb", "serve", "--db", str(db),
                             "--workers", "1", "--wait-grace", "0.2"])
    rt = runtime_file(db)
    while not rt.exists():
        time.sleep(0.05)
    info = json.loads(rt.read_text())
    dn.connect(url=info["url"], token=info["token"])
    runs = {
        "approval": compat_approval.trigger("doc-1"),
        "event": compat_event.trigger(4),
        "parent": compat_parent.trigger(5),
        "cell": trigger_cell(CELL, {"dn": dn}, name="compat-cell"),
    }
    deadline = time.time() + 60
    while time.time() < deadline:
        states = {k: r.status for k, r in runs.items()}
        if all(s == "WAITING" for s in states.values()):
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"runs did not reach WAITING: {states}")
    runs["delayed"] = compat_slow.trigger(7, delay="1s")
    runs["executing"] = compat_slow.trigger(8)
    while runs["executing"].status != "EXECUTING":
        time.sleep(0.02)
    runs["queued"] = compat_slow.trigger(9)  # one worker, busy: it stays QUEUED
    time.sleep(0.3)  # ingestion (every 50 ms) takes the latest records
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rt.unlink(missing_ok=True)
    for sock in rt.parent.glob(rt.stem + "-*.sock"):
        sock.unlink(missing_ok=True)
    (out / "runs.json").write_text(json.dumps({k: r.id for k, r in runs.items()}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
