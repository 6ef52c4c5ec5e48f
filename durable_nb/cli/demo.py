"""`durable-nb demo`: an example task that meets a retry, a killed worker and an approval."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from ..client import show as _show
from ..client.client import connect
from ..client.tasks import approval, step, task
from ..core.retry import Retry


def _count(marker_dir: str, name: str) -> int:
    """Append to a side-effect log and return how often ``name`` ran."""
    path = Path(marker_dir) / name
    with open(path, "a") as f:
        f.write("x")
    return path.stat().st_size


@step()
def fetch_document(doc_id: str, marker_dir: str) -> dict:
    _count(marker_dir, "fetch")
    return {"id": doc_id, "text": f"Document {doc_id}: notebooks lose work on every restart."}


@step(retry=Retry(max_attempts=3, min_timeout=0.2, factor=2, randomize=False))
def summarize(doc: dict, marker_dir: str) -> str:
    if _count(marker_dir, "summarize") == 1:
        raise ConnectionError("the LLM API timed out (simulated)")
    return f"summary of {doc['id']}: durable execution keeps it"


@step()
def enrich(summary: str, marker_dir: str) -> str:
    if _count(marker_dir, "enrich") == 1:
        print("enrich: killing my own worker process (simulated crash)")
        os.kill(os.getpid(), signal.SIGKILL)
    return summary + " (enriched)"


@task(id="demo-process-document",
         retry=Retry(max_attempts=3, min_timeout=0.2, factor=2, randomize=False))
def process_document(doc_id: str, marker_dir: str) -> dict:
    doc = fetch_document(doc_id, marker_dir)
    summary = summarize(doc, marker_dir)
    enriched = enrich(summary, marker_dir)
    decision = approval("publish", data={"doc": doc_id, "summary": enriched}, timeout="1h")
    print(f"decision: approved={decision.approved} by {decision.by}")
    return {"doc": doc_id, "published": decision.approved, "summary": enriched}


def run_demo(db: str | None = None) -> int:
    t0 = time.monotonic()
    client = connect(db=db)
    print(f"engine: {client.url} (database {client.health()['db']})")
    marker_dir = tempfile.mkdtemp(prefix="durable-nb-demo-")
    run = process_document.trigger("doc-42", marker_dir)
    print(f"triggered {run.id}; waiting for it to reach its approval ...")
    deadline = time.monotonic() + 60
    seen = None
    while time.monotonic() < deadline:
        info = run.info()
        if info["status"] != seen:
            seen = info["status"]
            print(f"  {time.monotonic() - t0:5.2f} s  {seen}")
        if any(w["kind"] == "approval" and w["outcome"] is None for w in info["waits"]):
            if info["status"] == "WAITING":
                break
        if seen in ("FAILED", "CRASHED", "CANCELED"):
            print(_show.run_tree(info))
            return 1
        time.sleep(0.05)
    workers = client.request("GET", "/workers")["workers"]
    holding = [w["pid"] for w in workers if w["run_id"] == run.id]
    print(f"  the waiting run holds {len(holding)} worker processes")
    run.approve("publish", comment="looks good")
    print(f"  {time.monotonic() - t0:5.2f} s  approved 'publish'")
    result = run.result(timeout=60)
    print(f"result: {result}\n")
    print(_show.run_tree(run.info()))
    counts = {n: (Path(marker_dir) / n).stat().st_size for n in ("fetch", "summarize", "enrich")}
    print(f"\nstep bodies executed: {counts} — fetch ran once although the task had "
          f"{len(run.attempts)} attempts; its result was replayed from the journal.")
    shutil.rmtree(marker_dir, ignore_errors=True)  # the side-effect counts, read above
    print(f"demo finished in {time.monotonic() - t0:.2f} s. "
          f"Try: durable-nb show {run.id}")
    print(f"The engine of {client.health()['db']} (pid {client.health()['pid']}) keeps "
          "running in the background for the next command; `durable-nb stop` ends it.")
    return 0
