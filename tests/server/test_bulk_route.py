"""POST /runs/bulk and GET /runs?since=: through the API's dispatch on an in-process engine
(manual clock, scripted workers), and over HTTP against a real engine. Each run answers
for itself; malformed bodies are refused with 400 naming the field; replay and resume need
the execute permission."""

from __future__ import annotations

import asyncio
import functools
import json

import pytest
from _support import http_call

import durable_nb as dn
from durable_nb.core.errors import Forbidden
from durable_nb.core.retry import Retry
from durable_nb.server.api import dispatch
from durable_nb.testing import EngineHarness

NO_RETRY = Retry(max_attempts=1)


def run_async(fn):
    """Run an async test on a fresh event loop."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def _caller(h: EngineHarness, allowed=("read", "write", "execute")):
    async def authorize(action: str) -> None:
        if action not in allowed:
            raise Forbidden(f"not authorized to {action}")

    async def call(method: str, path: str, body=None, **query):
        raw = json.dumps(body).encode() if body is not None else None
        status, out = await dispatch(h.engine, method, path, {k: str(v) for k, v in
                                                               query.items()},
                                     raw, "tester", authorize)
        await h.settle()
        return status, out

    return call


@run_async
async def test_bulk_cancel_answers_for_each_run_and_counts(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", retry=NO_RETRY)
        parent, done = await h.trigger(t), await h.trigger(t)
        child = await h.trigger(t, parent_run_id=parent, delay=60)
        h.worker_of(done).done(1)
        await h.settle()
        call = _caller(h)
        status, out = await call("POST", "/runs/bulk", {
            "action": "cancel", "ids": [parent, child, done, "run_nope", parent]})
        assert status == 200, out
        by_id = {r["id"]: r for r in out["results"]}
        assert len(out["results"]) == 4, "an id given twice is acted on once"
        assert by_id[parent] == {"id": parent, "ok": True, "children": [child]}
        assert by_id[child]["ok"], "canceled with its parent in the same request"
        assert not by_id[done]["ok"] and "already finished (COMPLETED)" in by_id[done]["error"]
        assert not by_id["run_nope"]["ok"] and "no run with id" in by_id["run_nope"]["error"]
        assert (out["ok"], out["failed"]) == (2, 2)
        assert h.status(parent) == h.status(child) == "CANCELED"


@run_async
async def test_bulk_cancel_can_abandon_the_children(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", retry=NO_RETRY)
        parent = await h.trigger(t, delay=60)
        child = await h.trigger(t, parent_run_id=parent, delay=60)
        status, out = await _caller(h)("POST", "/runs/bulk", {
            "action": "cancel", "ids": [parent], "children": "abandon"})
        assert status == 200 and out["ok"] == 1, out
        assert h.status(parent) == "CANCELED" and h.status(child) == "DELAYED"


@run_async
async def test_bulk_replay_and_resume(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", retry=NO_RETRY)
        failed, running = await h.trigger(t), await h.trigger(t)
        h.worker_of(failed).fail()
        await h.settle()
        call = _caller(h)
        status, out = await call("POST", "/runs/bulk", {"action": "replay", "ids": [failed]})
        assert status == 200 and out["ok"] == 1, out
        new_id = out["results"][0]["new_id"]
        assert new_id != failed and h.status(new_id) == "EXECUTING"
        status, out = await call("POST", "/runs/bulk", {"action": "resume",
                                                        "ids": [failed, running]})
        assert [r["ok"] for r in out["results"]] == [True, False], out
        assert out["results"][0]["status"] in ("QUEUED", "EXECUTING")
        assert "only a" in out["results"][1]["error"]
        assert h.status(failed) == "EXECUTING"


@run_async
async def test_replay_and_resume_need_the_execute_permission(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY), delay=60)
        writer = _caller(h, allowed=("read", "write"))
        for action in ("replay", "resume"):
            status, out = await writer("POST", "/runs/bulk", {"action": action, "ids": [run]})
            assert (status, out["code"]) == (403, "forbidden"), out
        status, out = await writer("POST", "/runs/bulk", {"action": "cancel", "ids": [run]})
        assert status == 200 and out["ok"] == 1
        reader = _caller(h, allowed=("read",))
        status, _ = await reader("POST", "/runs/bulk", {"action": "cancel", "ids": [run]})
        assert status == 403


@pytest.mark.parametrize("body, field", [
    ({"action": "delete", "ids": ["run_a"]}, "action"),
    ({"action": "cancel", "ids": []}, "ids"),
    ({"action": "cancel", "ids": ["run_a"] * 1001}, "ids"),
    ({"action": "cancel"}, "ids"),
    ({"action": "cancel", "ids": [""]}, "ids[0]"),
    ({"action": "cancel", "ids": ["run_a"], "children": "orphan"}, "children"),
    ({"action": "replay", "ids": ["run_a"], "children": "cancel"}, "children"),
    ({"action": "cancel", "ids": ["run_a"], "force": True}, "force"),
])
def test_malformed_bulk_bodies_are_refused_naming_the_field(tmp_path, body, field):
    @run_async
    async def check():
        async with EngineHarness(tmp_path) as h:
            status, out = await _caller(h)("POST", "/runs/bulk", body)
            assert (status, out["code"], out.get("field")) == (400, "bad_request", field), out

    check()


@run_async
async def test_list_runs_since_a_duration(tmp_path):
    async with EngineHarness(tmp_path) as h:
        t = h.task("t", retry=NO_RETRY)
        old = await h.trigger(t, delay=10_000)
        await h.advance(7200)
        new = await h.trigger(t, delay=10_000)
        call = _caller(h)
        for since, ids in (("1h", [new]), ("3h", [new, old]), ("3600", [new]), ("0", [new])):
            status, out = await call("GET", "/runs", since=since)
            assert status == 200 and [r["id"] for r in out["runs"]] == ids, (since, out)
            assert out["total"] == len(ids)
        status, out = await call("GET", "/runs", since="yesterday")
        assert (status, out["field"]) == (400, "since") and "not a duration" in out["error"]


@dn.task(id="bulk-http")
def quick(x: int) -> int:
    return x


def test_bulk_over_http_on_a_real_engine(engine):
    api, token = engine.client.url + "durable/api", engine.client.token
    runs = [quick.trigger(i) for i in range(2)]
    assert [r.result(timeout=60) for r in runs] == [0, 1]
    status, out = http_call("POST", api + "/runs/bulk", token,
                            {"action": "replay", "ids": [r.id for r in runs]})
    assert status == 200 and out["ok"] == 2, out
    assert [dn.get_run(r["new_id"]).result(timeout=60) for r in out["results"]] == [0, 1]
    assert [r.id for r in dn.runs(since="1h")][2:] == [runs[1].id, runs[0].id]
    assert len(dn.runs(since="1h", limit=10)) == 4
    with pytest.raises(ValueError, match="not a duration"):
        dn.runs(since="soon")


def test_a_second_jupyter_server_asks_execute_before_forwarding_a_bulk_replay():
    from durable_nb.jupyter.host import _authorize_forward

    asked: list[str] = []

    async def authorize(action: str) -> None:
        asked.append(action)

    for action, wanted in (("cancel", ["write"]), ("replay", ["write", "execute"]),
                           ("resume", ["write", "execute"])):
        asked.clear()
        body = json.dumps({"action": action, "ids": ["run_a"]}).encode()
        asyncio.run(_authorize_forward("POST", "/runs/bulk", body, authorize))
        assert asked == wanted, action
