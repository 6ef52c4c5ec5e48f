"""The big-run reads against a real engine over HTTP: GET /runs/{id}/step_groups (steps by
name with their counts), GET /runs/{id}/steps?name= (a page of one name's steps, every
try) and GET /runs/{id}?steps=N (the newest N step rows and the groups); bad input is
answered 400 or 404, and a widget may ask for them through its kernel."""

from __future__ import annotations

import pytest
from _support import EngineProcess, http_call

import durable_nb as dn
from durable_nb.widgets.kernel_api import _GET_PATH


@dn.step
def fetch(i: int) -> int:
    return i


@dn.step
def parse(i: int) -> int:
    if i == 7:
        raise ValueError("seven")
    return i


@dn.step(retry=dn.Retry(max_attempts=2, min_timeout=0.01, randomize=False))
def save(i: int, marker: str) -> int:
    import os

    if i == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        raise ConnectionError("busy")
    return i


@dn.task(id="groups-300")
def three_hundred(marker: str) -> int:
    for i in range(100):
        fetch(i)
        try:
            parse(i)
        except ValueError:
            pass
        save(i, marker)
    return 300


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """One engine and one finished 300-step run for the module's tests (read only)."""
    tmp = tmp_path_factory.mktemp("groups")
    engine = EngineProcess(tmp / "store.duckdb", [])
    engine.start()
    try:
        run = three_hundred.trigger(str(tmp / "saved-once"))
        assert run.result(timeout=60) == 300
        base, token = engine.client.url + "durable/api", engine.client.token

        def get(path: str):
            return http_call("GET", base + path, token)

        yield run.id, get
    finally:
        engine.stop()


def test_step_groups_count_each_names_steps_by_outcome(api):
    rid, get = api
    status, out = get(f"/runs/{rid}/step_groups")
    assert status == 200 and out["steps"] == 300
    by = {g["name"]: g for g in out["groups"]}
    assert [g["name"].rsplit(".", 1)[-1] for g in out["groups"]] == ["fetch", "parse", "save"]
    fetch_, parse_, save_ = (by[n] for n in by)
    assert (fetch_["steps"], fetch_["completed"], fetch_["failed"]) == (100, 100, 0)
    assert (parse_["completed"], parse_["failed"]) == (99, 1)  # step 7 raised into the task
    assert (save_["steps"], save_["tries"], save_["completed"]) == (100, 101, 100)  # 1 retry
    assert save_["total_s"] > 0 and save_["median_s"] is not None


def test_a_page_of_one_names_steps_with_every_try(api):
    rid, get = api
    name = get(f"/runs/{rid}/step_groups")[1]["groups"][2]["name"]  # save
    status, page = get(f"/runs/{rid}/steps?name={name}&offset=0&limit=5")
    assert status == 200 and page["total"] == 100 and page["offset"] == 0
    keys = [s["step_key"] for s in page["steps"]]
    assert list(dict.fromkeys(keys)) == [f"{name}#{i}" for i in range(1, 6)]
    assert [s["status"] for s in page["steps"] if s["step_key"] == f"{name}#3"] == [
        "FAILED", "COMPLETED"]
    status, rest = get(f"/runs/{rid}/steps?name={name}&offset=95&limit=100")
    assert len(rest["steps"]) == 5 and rest["steps"][-1]["step_key"] == f"{name}#100"
    assert get(f"/runs/{rid}/steps?name=nothing")[1]["total"] == 0


def test_a_run_with_at_most_n_step_rows_and_its_groups(api):
    rid, get = api
    status, full = get(f"/runs/{rid}")
    assert status == 200 and len(full["steps"]) == 301 and "step_groups" not in full
    status, few = get(f"/runs/{rid}?steps=50")
    assert few["steps"] == full["steps"][-50:] and few["steps_omitted"] == 251
    assert few["step_groups"] == get(f"/runs/{rid}/step_groups")[1]["groups"]
    assert "step_groups" not in get(f"/runs/{rid}?steps=1000")[1]


def test_bad_input_is_refused(api):
    rid, get = api
    status, out = get(f"/runs/{rid}/steps")
    assert status == 400 and out["field"] == "name"
    assert get(f"/runs/{rid}/steps?name=x&limit=0")[0] == 400
    assert get(f"/runs/{rid}/steps?name=x&offset=-1")[0] == 400
    assert get(f"/runs/{rid}?steps=many")[0] == 400
    assert get("/runs/run_nope/step_groups")[0] == 404
    assert get("/runs/run_nope/steps?name=x")[0] == 404


def test_a_widget_may_read_them_through_its_kernel():
    assert _GET_PATH.match("/runs/run_1/step_groups")
    assert _GET_PATH.match("/runs/run_1/steps")
    assert not _GET_PATH.match("/runs/run_1/steps_and_more")
