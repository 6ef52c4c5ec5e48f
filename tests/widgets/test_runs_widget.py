"""The runs widget against a real engine: pages and filters read through the REST runs list
(with the total the filters match), pending approvals, new runs shown live, a selected run's
graph, and quick pages over 10,000 runs."""

from __future__ import annotations

import time

from _support import wait_for

import durable_nb as dn
from durable_nb.widgets.runs_widget import RunsWidget, status_filter, task_choices


@dn.step
def note(x: int) -> int:
    return x


@dn.task(id="runs-widget-approve")
def needs_approval(x: int) -> bool:
    d = dn.approval("ship", data={"x": note(x)}, timeout=60)
    return d.approved


@dn.task(id="runs-widget-idle")
def idle() -> None:
    return None


def test_status_filter_keeps_the_known_statuses():
    assert status_filter("") is None
    assert status_filter("FAILED, CRASHED,nonsense") == "FAILED,CRASHED"
    assert status_filter("nonsense") is None  # no known status: no filter


def test_task_choices_grow_with_the_pages_seen():
    rows = [{"task_id": "b"}, {"task_id": "a"}, {"task_id": None}]
    assert task_choices([], rows, "") == ["a", "b"]
    assert task_choices(["c"], rows, "d") == ["a", "b", "c", "d"]


def test_runs_widget_pages_filters_and_follows_new_runs(engine):
    for _ in range(30):
        idle.trigger(delay=3600)  # DELAYED: they stay put, nothing executes
    rw = dn.runs_widget(limit=10)
    assert isinstance(rw, RunsWidget)
    # a page of the 30 runs the filters match
    assert len(rw.rows) == 10 and rw.total == 30
    assert rw.rows[0]["created_at"] >= rw.rows[-1]["created_at"]  # newest first
    assert rw.tasks == ["runs-widget-idle"]
    first = [r["id"] for r in rw.rows]
    rw.offset = 10
    assert len(rw.rows) == 10 and rw.total == 30
    assert not {r["id"] for r in rw.rows} & set(first)
    rw.offset = 20  # the last page, exactly full
    assert len(rw.rows) == 10 and rw.total == 30
    rw.offset = 25
    assert len(rw.rows) == 5 and rw.total == 30
    rw.status = "COMPLETED"  # past the end of what matches: nothing
    assert rw.rows == [] and rw.total == 0
    rw.offset = 0
    assert rw.rows == [] and rw.total == 0
    rw.status = "DELAYED,QUEUED"
    rw.task = "runs-widget-idle"
    assert len(rw.rows) == 10 and rw.total == 30
    rw.task = "no-such-task"
    assert rw.rows == [] and rw.total == 0
    assert rw.tasks == ["no-such-task", "runs-widget-idle"]
    rw.status = ""
    # live: a new run shows up without any call from the main thread
    h = needs_approval.trigger(2)
    rw.task = ""
    wait_for(lambda: any(r["id"] == h.id and r["status"] == "WAITING" for r in rw.rows), 20,
             "the new run in the table")
    wait_for(lambda: rw.approvals.get(h.id) == ["ship"], 5, "its pending approval")
    assert "runs-widget-approve" in rw.tasks
    # selecting a row opens its graph, live
    rw.selected = h.id
    assert rw.detail["id"] == h.id
    rw._decide(h.id, True, "ship", "from the table")
    wait_for(lambda: rw.detail.get("status") == "COMPLETED", 20, "COMPLETED detail")
    wait_for(lambda: h.id not in rw.approvals, 5, "the approval gone from the table")
    rw.close()


def test_runs_widget_stays_fast_with_10000_runs(tmp_path):
    """10,000 finished runs (written straight into a fresh store before its engine starts):
    every page and filter is one quick request, nothing loads all rows."""
    from _support import EngineProcess

    from durable_nb.store.store import Store

    db = tmp_path / "big.duckdb"
    store = Store(db)
    store.open()
    t0 = time.time() - 20_000
    store.write([("ins", "runs", {
        "id": f"run_seed{i:06d}", "kind": "task", "task_id": f"seed-{i % 3}",
        "task_hash": "x", "status": "FAILED" if i % 10 == 0 else "COMPLETED",
        "queue": "q", "created_at": t0 + i, "started_at": t0 + i + 0.1,
        "finished_at": t0 + i + 0.5, "attempts": 1, "duration_warning": False,
        "generation": 0, "tags": [], "updated_at": t0 + i}) for i in range(10_000)])
    store.close()
    e = EngineProcess(db, ["--wait-grace", "0.3"])
    e.start()
    try:
        times = {}
        t = time.perf_counter()
        rw = RunsWidget(limit=25, client=e.client)
        times["first page"] = time.perf_counter() - t
        assert rw.total == 10_000 and len(rw.rows) == 25
        assert rw.rows[0]["id"] == "run_seed009999" and rw.tasks == ["seed-0", "seed-1", "seed-2"]
        t = time.perf_counter()
        rw.offset = 9_990
        times["last page"] = time.perf_counter() - t
        assert [r["id"] for r in rw.rows][-1] == "run_seed000000" and len(rw.rows) == 10
        assert rw.total == 10_000
        t = time.perf_counter()
        rw.offset = 0
        rw.status = "FAILED,CRASHED,TIMED_OUT"
        times["status filter"] = time.perf_counter() - t
        assert len(rw.rows) == 25 and all(r["status"] == "FAILED" for r in rw.rows)
        t = time.perf_counter()
        rw.offset = 975
        times["last failed page"] = time.perf_counter() - t
        assert len(rw.rows) == 25 and rw.total == 1_000
        t = time.perf_counter()
        rw.offset = 0
        rw.task = "seed-1"
        times["task filter"] = time.perf_counter() - t
        failed_seed_1 = sum(1 for i in range(0, 10_000, 10) if i % 3 == 1)
        assert all(r["task_id"] == "seed-1" and r["status"] == "FAILED" for r in rw.rows)
        rw.offset = failed_seed_1 - 5
        assert len(rw.rows) == 5 and rw.total == failed_seed_1
        print("runs widget page times (s):", times)  # measured in benchmarks, not asserted
        rw.close()
    finally:
        e.stop()


def test_runs_widget_bundle_has_a_static_table(engine):
    from durable_nb.widgets.runs_widget import RUNS_MIME

    h = needs_approval.trigger(1)
    wait_for(lambda: h.status == "WAITING", 20, "WAITING")
    rw = RunsWidget(limit=5, live=False)
    bundle, _ = rw._repr_mimebundle_()
    static = bundle["text/html"]  # the page shown, for GitHub and nbviewer
    assert h.id in static and "runs-widget-approve" in static and "WAITING" in static
    assert "ship" in static and "<script" not in static and "class=" not in static
    assert h.id in bundle["text/plain"] and "application/vnd.jupyter.widget-view+json" in bundle
    assert RUNS_MIME not in bundle  # not the Jupyter server's engine
    rw.engine = {**rw.engine, "server": True}
    assert rw._repr_mimebundle_()[0][RUNS_MIME]["limit"] == 5
    h.approve("ship")
    h.result(timeout=30)
    rw.close()
