"""GET /runs?q= (search) and the origin of a run in POST /runs, against a real engine:
hostile text is a parameter, never SQL; malformed origins are refused with a message."""

import base64
import urllib.parse

import pytest
from _support import http_call

import durable_nb as dn
from durable_nb.client.cells import trigger_cell
from durable_nb.core import serial as _serial


@dn.task(id="search-echo")
def echo(x):
    return x


def _api(engine):
    base, token = engine.client.url + "durable/api", engine.client.token

    def call(method, path, body=None, **query):
        q = urllib.parse.urlencode(query)
        return http_call(method, base + path + (f"?{q}" if q else ""), token, body)
    return call


def _ids(call, **query):
    status, out = call("GET", "/runs", **query)
    assert status == 200, out
    return [r["id"] for r in out["runs"]], out["total"]


def test_q_matches_id_task_tags_and_notebook_in_any_case(engine):
    call = _api(engine)
    a = echo.trigger(1, tags=["Nightly-Batch"])
    origin = {"notebook": "reports/Analysis.ipynb", "cell_id": "c-1", "execution_count": 5}
    b = trigger_cell("y = 2", {}, name="Analysis.ipynb [5]", origin=origin)
    c = trigger_cell("z = 3", {}, name="other", origin={"notebook": "scratch/Zeta.ipynb"})
    for run in (a, b, c):
        run.wait(timeout=60)
    assert _ids(call, q="nightly") == ([a.id], 1)
    assert _ids(call, q="analysis") == ([b.id], 1)  # cell name and notebook both match
    assert _ids(call, q="ZETA.IPYNB") == ([c.id], 1)  # the notebook of origin
    assert _ids(call, q=c.id[-8:].upper()) == ([c.id], 1)
    assert _ids(call, q="search-ECHO") == ([a.id], 1)
    assert set(_ids(call, q=".ipynb")[0]) == {b.id, c.id}
    assert _ids(call, q=".ipynb", status="COMPLETED", limit=1)[1] == 2  # total, one page
    assert _ids(call, q="no such thing") == ([], 0)
    assert dn.runs(q="zeta")[0].id == c.id


@pytest.mark.parametrize("q", ["%", "r%n", "r_n", "' OR 1=1 --", "'); DROP TABLE runs; --",
                               "\\", '"', "*", "[a-z]", "\u00e9\u4e2d", "a\nb", "%' --"])
def test_hostile_search_text_is_only_text(engine, q):
    call = _api(engine)
    run = echo.trigger(1, tags=["plain"])
    run.wait(timeout=60)
    assert _ids(call, q=q) == ([], 0)  # matched literally: nothing holds these
    assert _ids(call) == ([run.id], 1)  # and the table is all there
    assert _ids(call, q="run_") == ([run.id], 1)  # '_' is itself, not a wildcard


def test_search_text_over_200_characters_is_refused(engine):
    call = _api(engine)
    status, out = call("GET", "/runs", q="x" * 201)
    assert status == 400 and out["field"] == "q" and "at most 200" in out["error"], out
    status, out = call("GET", "/runs", q="x" * 10_000)
    assert status == 400 and "at most 200" in out["error"]


def _post(call, origin):
    """POST /runs of the registered task ``echo`` with this origin."""
    echo.trigger(0).wait(timeout=60)  # registers the task
    body = {"task_hash": echo.spec()["hash"], "origin": origin,
            "payload_b64": base64.b64encode(_serial.dumps(((1,), {}), "args")).decode()}
    return call("POST", "/runs", body)


@pytest.mark.parametrize("origin,field,words", [
    ("analysis.ipynb", "origin", "must be an object or null"),
    ({"notebook": "x" * 10_240}, "origin.notebook", "at most 1024"),
    ({"cell_id": 5}, "origin.cell_id", "must be a string or null"),
    ({"execution_count": "5"}, "origin.execution_count", "must be an integer or null"),
    ({"execution_count": -1}, "origin.execution_count", "at least 0"),
    ({"execution_count": 2**40}, "origin.execution_count", "at most"),
    ({"notebook": "a", "extra": 1}, "origin.extra", "not a known field"),
    ({"notebook": ["a"]}, "origin.notebook", "must be a string or null"),
])
def test_a_malformed_origin_is_refused_with_its_field(engine, origin, field, words):
    call = _api(engine)
    status, out = _post(call, origin)
    assert status == 400, out
    assert out["field"] == field and words in out["error"], out
    status, out = call("GET", "/runs")
    assert status == 200 and all(r["origin"] is None for r in out["runs"])


def test_an_origin_with_sql_text_is_stored_as_given(engine):
    call = _api(engine)
    nb = "'); DROP TABLE runs; -- \u00e9.ipynb"
    status, out = _post(call, {"notebook": nb, "cell_id": "%_", "execution_count": 0})
    assert status == 201, out
    status, run = call("GET", f"/runs/{out['id']}")
    assert run["origin"] == {"notebook": nb, "cell_id": "%_", "execution_count": 0}
    assert _ids(call, q="drop table")[0] == [out["id"]]
