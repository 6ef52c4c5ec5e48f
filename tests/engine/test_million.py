"""A store of many finished runs, built by SQL at a small scale (benchmark 12 builds a
million the same way) and served by a real engine: lists, filters and pages answer what
SQL says; the engine loads only the unfinished runs; a prune takes the old finished runs
with their rows and blobs, keeps what other runs refer to, and survives a SIGKILL."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import pytest
from _support import REPO, EngineProcess, run_cli, wait_for

import durable_nb as dn
from durable_nb.store.retention import RUN_TABLES

sys.path.insert(0, str(REPO / "benchmarks" / "systems"))
import dnb_million  # noqa: E402  (the benchmark's store builder)

N_FINISHED, N_WAITING = 20_000, 200


@dn.step()
def _fetch(i: int) -> int:
    return i


@dn.task(id="etl")
def _etl(i: int) -> int:
    return _fetch(i)


@dn.task(id="review")
def _review(i: int) -> dict:
    _fetch(i)
    return {"ok": dn.approval("publish", data={"i": i}).approved}


@pytest.fixture
def big_store(tmp_path) -> EngineProcess:
    """An engine on a store of N_FINISHED finished runs over 90 days and N_WAITING runs
    waiting on an approval (clones of real runs), one in 100 with a checkpoint."""
    eng = EngineProcess(tmp_path / "big.duckdb", ["--wait-grace", "0.2"])
    eng.start()
    try:
        assert _etl.trigger(1).result(timeout=60) == 1
        run = _review.trigger(2)
        wait_for(lambda: run.status == "WAITING", 60, "the template run to wait")
    finally:
        eng.stop()
    dnb_million.build_store(eng.db, N_FINISHED, N_WAITING)
    eng.start()
    yield eng
    eng.stop()


def _count(where: str) -> int:
    return int(dn.sql(f"SELECT count(*) FROM runs WHERE {where}").rows[0][0])


# finished more than 30 days ago, give or take a minute (time moves during a test)
OLD = "finished_at < epoch(now()) - 30 * 86400 - 60"
RECENT = "(finished_at IS NULL OR finished_at > epoch(now()) - 30 * 86400 + 60)"


def _orphans() -> int:
    """Rows of the run tables whose run is gone (a prune must leave none behind)."""
    return sum(int(dn.sql(f"SELECT count(*) FROM {t} WHERE run_id NOT IN "
                          "(SELECT id FROM runs)").rows[0][0]) for t in RUN_TABLES)


def _missing_blobs(blob_dir: Path) -> list[str]:
    """Blobs a remaining checkpoint refers to that are not stored (rows or files)."""
    from durable_nb.core.checkpoints import referenced_blobs

    texts = [r[0] for r in dn.sql("SELECT manifest FROM checkpoints", limit=100_000).rows]
    rows = {r[0]: r[1] for r in dn.sql("SELECT hash, external FROM blobs",
                                       limit=100_000).rows}
    return [h for h in referenced_blobs(texts)
            if h not in rows or (rows[h] and not (blob_dir / h).exists())]


@pytest.mark.slow
def test_lists_filters_and_pages_answer_what_the_store_holds(big_store):
    client = big_store.client
    total = N_FINISHED + N_WAITING + 2
    page = client.request("GET", "/runs", query={"limit": 50})
    assert page["total"] == total and len(page["runs"]) == 50
    created = [r["created_at"] for r in page["runs"]]
    assert created == sorted(created, reverse=True)
    failed = client.request("GET", "/runs", query={"status": "FAILED", "limit": 10})
    assert failed["total"] == _count("status = 'FAILED'") > 0
    assert {r["status"] for r in failed["runs"]} == {"FAILED"}
    rare = dn.runs(task=dnb_million.RARE_TASK, limit=100)
    assert len(rare) == _count(f"task_id = '{dnb_million.RARE_TASK}'") == N_FINISHED // 1000
    deep = client.request("GET", "/runs", query={"limit": 20, "offset": 10_000})
    ids = [r[0] for r in dn.sql("SELECT id FROM runs ORDER BY created_at DESC "
                                "LIMIT 20 OFFSET 10000").rows]
    assert [r["id"] for r in deep["runs"]] == ids
    tagged = client.request("GET", "/runs", query={"q": "B42", "limit": 5})
    assert tagged["total"] == _count("list_contains(tags, 'b42') OR contains(id, 'b42')")
    waiting = client.request("GET", "/runs", query={"status": "WAITING", "limit": 1})
    assert waiting["runs"][0]["pending_approvals"] == ["publish"]
    # the engine holds the unfinished runs only, and a cloned waiting run goes on
    assert client.request("GET", "/health")["active_runs"] == N_WAITING + 1
    run = dn.get_run(waiting["runs"][0]["id"])
    run.approve()
    assert run.result(timeout=60) == {"ok": True}


@pytest.mark.slow
def test_prune_takes_old_finished_runs_rows_and_blobs_and_keeps_the_rest(big_store):
    blob_dir = big_store.db.with_name(big_store.db.name + ".blobs")
    old, recent = _count(OLD), _count(RECENT)
    files_before = len(list(blob_dir.iterdir()))
    env = {"DURABLE_NB_URL": big_store.client.url, "DURABLE_NB_TOKEN": big_store.client.token}
    dry = run_cli("prune", "--older-than", "30d", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    would = int(re.search(r"would prune (\d+) runs", dry.stdout).group(1))
    assert old <= would <= old + 2
    assert _count("true") == N_FINISHED + N_WAITING + 2
    out = run_cli("prune", "--older-than", "30d", env=env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"pruned \d+ runs", out.stdout) and "blob files" in out.stdout
    assert _count(OLD) == 0 and _count(RECENT) == recent
    assert _count("status = 'WAITING'") == N_WAITING + 1
    assert _orphans() == 0 and _missing_blobs(blob_dir) == []
    shared = dn.sql("SELECT count(*) FROM blobs WHERE size = 64").rows[0][0]
    assert shared == 1  # the value every checkpoint shares stays for the remaining ones
    assert 0 < len(list(blob_dir.iterdir())) < files_before
    bad = run_cli("prune", "--older-than", "a while", env=env)
    assert bad.returncode == 1 and "not a duration" in bad.stderr
    assert "Traceback" not in bad.stderr
    active = run_cli("prune", "--older-than", "1d", "--status", "WAITING", env=env)
    assert active.returncode == 1 and "never pruned" in active.stderr


@pytest.mark.slow
def test_a_prune_killed_midway_leaves_a_consistent_store(big_store):
    """SIGKILL the engine once the prune's first batch is deleted; the store then holds every
    run that should stay, whole, and every blob they refer to; a new prune finishes."""
    db = big_store.db
    keep = _count(RECENT)
    client = big_store.client
    total = client.request("GET", "/runs", query={"limit": 1})["total"]
    threading.Thread(target=lambda: _quietly(client.request, "POST", "/prune",
                                             {"older_than": "30d"}), daemon=True).start()
    wait_for(lambda: client.request("GET", "/runs", query={"limit": 1})["total"] < total,
             60, "the prune's first batch", interval=0.005)
    big_store.kill()
    big_store.start()
    assert _count(RECENT) == keep
    assert _missing_blobs(db.with_name(db.name + ".blobs")) == []
    waiting = dn.runs(status="WAITING", limit=1)[0]
    waiting.approve()
    assert waiting.result(timeout=60) == {"ok": True}
    big_store.client.request("POST", "/prune", {"older_than": "30d"}, timeout=120)
    assert _count(OLD) == 0 and _count(RECENT) == keep and _orphans() == 0


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the engine is killed under this request
        pass
