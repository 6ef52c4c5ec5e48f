"""dn.metadata and dn.progress against a real engine and real worker processes: read live
with RunHandle.metadata and .progress while the run waits and after it ends, shown by
`durable-nb show`, fed by tqdm, capped at 256 KB with nothing lost, applied once when the
code re-executes after a wait, a killed worker or a killed engine, and kept across a
killed engine."""

from __future__ import annotations

import os
import signal
import time

from _support import run_cli, wait_for

import durable_nb as dn


@dn.task(id="mp-report")
def report(n: int) -> bool:
    dn.metadata.set("stage", "embedding")
    for i in range(n):
        dn.metadata.increment("done")
        dn.metadata.append("ids", i)
    dn.progress(n, 2 * n, "embedding")
    decision = dn.approval("go", timeout=600)  # suspends: the code runs again after it
    dn.metadata.set("stage", "written")
    dn.progress(2 * n, 2 * n, "written")
    return decision.approved


@dn.task(id="mp-tqdm")
def summed(n: int) -> int:
    from tqdm import tqdm

    total = 0
    for i in tqdm(range(n), desc="summing"):
        total += i
        time.sleep(0.002)
    return total


@dn.task(id="mp-cap")
def too_much() -> str:
    dn.metadata.set("a", "x" * 200_000)
    try:
        dn.metadata.set("b", "y" * 100_000)
    except dn.PayloadTooLarge as exc:
        dn.metadata.set("refused", True)
        return str(exc)
    return "accepted"


@dn.task(id="mp-killed")
def killed(marker: str, event: str) -> str:
    dn.metadata.set("before", True)
    dn.metadata.increment("count")
    dn.progress(1, 2, "half")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies after those were recorded
    dn.wait_for_event(event, timeout=600)
    dn.metadata.increment("count")
    return "done"


def test_metadata_and_progress_are_read_live_and_kept_after_the_run(engine):
    run = report.trigger(3)
    wait_for(lambda: run.status == "WAITING", 30, "the run to wait for its approval")
    assert run.metadata == {"stage": "embedding", "done": 3, "ids": [0, 1, 2]}
    prog = run.progress
    assert (prog["done"], prog["total"], prog["text"]) == (3, 6, "embedding")

    shown = run_cli("show", run.id, "--db", str(engine.db))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[1] == "progress  [############------------]  3/6  50%  embedding"
    assert lines[2] == 'metadata  stage: "embedding"'
    assert lines[3:5] == ["          done: 3", "          ids: [0, 1, 2]"]

    run.approve("go")
    assert run.result(timeout=30) is True
    # the calls made again after the approval were not applied twice
    assert run.metadata == {"stage": "written", "done": 3, "ids": [0, 1, 2]}
    assert run.progress["done"] == 6 and run.progress["text"] == "written"
    listed = [r for r in dn.runs(task="mp-report") if r.id == run.id][0]
    assert listed._summary["metadata"]["stage"] == "written"


def test_a_tqdm_loop_in_a_task_feeds_its_progress(engine):
    run = summed.trigger(60)
    assert run.result(timeout=30) == sum(range(60))
    assert run.progress == {"done": 60, "total": 60, "text": "summing"}


def test_metadata_over_256_kb_is_refused_and_nothing_is_lost(engine):
    run = too_much.trigger()
    message = run.result(timeout=30)
    assert "over the limit of 256.0 KB" in message and "'b'" in message
    assert "keeps its earlier value" in message
    meta = run.metadata
    assert sorted(meta) == ["a", "refused"] and meta["a"] == "x" * 200_000
    stored = dn.sql(f"select length(metadata) from runs where id = '{run.id}'")[0][0]
    assert 200_000 < stored < 256 * 1024


def test_a_killed_worker_keeps_the_metadata_recorded_before_the_kill(engine, tmp_path):
    marker, event = str(tmp_path / "killed-once"), f"go-{os.urandom(4).hex()}"
    run = killed.trigger(marker, event)
    wait_for(lambda: run.status == "WAITING", 30, "the second attempt to wait")
    assert run.metadata == {"before": True, "count": 1}, "kept, and not counted twice"
    assert run.progress["text"] == "half"
    dn.send_event(event)
    assert run.result(timeout=30) == "done"
    assert run.metadata == {"before": True, "count": 2}
    assert [a["outcome"] for a in run.attempts][:2] == ["CRASHED", "SUSPENDED"]


def test_a_killed_engine_keeps_what_was_recorded(engine):
    run = report.trigger(2)
    wait_for(lambda: run.status == "WAITING", 30, "the run to wait for its approval")
    engine.kill()
    engine.start()
    assert run.metadata == {"stage": "embedding", "done": 2, "ids": [0, 1]}
    assert run.progress["done"] == 2  # journaled when the attempt ended
    run.approve("go")
    assert run.result(timeout=30) is True
    # the code ran again from the top under the restarted engine: its calls applied once
    assert run.metadata == {"stage": "written", "done": 2, "ids": [0, 1]}
