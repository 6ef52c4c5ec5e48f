"""GET /runs/{run_id}/steps/{step_key}: every try of one step with its error and the previews
of its arguments and output, and with values=1 the pickles (against a real engine, over HTTP
and through the client's local socket)."""

import base64
import pickle
import urllib.parse

import pytest
from _support import http_call

import durable_nb as dn
from durable_nb.client.steps import step_path
from durable_nb.server.api import match

pytestmark = pytest.mark.slow


@dn.step(name="io/halve", retry=dn.Retry(max_attempts=2, min_timeout=0.05, randomize=False))
def halve(x, note=""):
    if x % 2:
        raise ValueError(f"{x} is odd")
    return x // 2


@dn.task(id="step-route")
def halving(x):
    try:
        return halve(x, note="first")
    except ValueError:
        return halve(x + 1)


def test_the_route_takes_a_step_key_with_slashes():
    route, args, _ = match("GET", "/runs/run_1/steps/io/halve#1")
    assert route is not None and route.handler.__name__ == "get_step"
    assert args == ("run_1", "io/halve#1")


def test_a_step_s_tries_with_previews_and_values(engine):
    api, token = engine.client.url + "durable/api", engine.client.token
    run = halving.trigger(3)
    assert run.result(timeout=60) == 2
    key = urllib.parse.quote("io/halve#1", safe="")

    assert http_call("GET", f"{api}/runs/{run.id}/steps/{key}")[0] == 403  # no token
    status, out = http_call("GET", f"{api}/runs/{run.id}/steps/{key}", token)
    assert status == 200 and out["step_key"] == "io/halve#1" and out["name"] == "io/halve"
    first, second = out["tries"]  # a failed try and its retry: the same call
    assert (first["attempt"], first["status"], second["status"]) == (1, "FAILED", "ERRORED")
    assert first["error"]["type"] == "ValueError" and first["error"]["message"] == "3 is odd"
    assert "3 is odd" in first["error"]["traceback"]
    assert first["args_preview"]["args"] == [{"type": "int", "repr": "3"}]
    assert first["args_preview"]["kwargs"] == {"note": {"type": "str", "repr": "'first'"}}
    assert first["output_preview"] is None and "args_b64" not in first

    status, out = http_call("GET", f"{api}/runs/{run.id}/steps/io%2Fhalve%232", token)
    (ok,) = out["tries"]
    assert ok["status"] == "COMPLETED" and ok["output_preview"] == {"type": "int", "repr": "2"}

    status, out = http_call("GET", f"{api}/runs/{run.id}/steps/io%2Fhalve%232?values=1", token)
    (ok,) = out["tries"]
    assert pickle.loads(base64.b64decode(ok["args_b64"])) == ((4,), {})
    assert pickle.loads(base64.b64decode(ok["output_b64"])) == 2
    # the client's local socket sends the path as it is
    tries = engine.client.request("GET", step_path(run.id, "io/halve#1"),
                                  query={"values": 1})["tries"]
    assert [t["output_b64"] for t in tries] == [None, None]  # failed tries have no output


def test_unknown_runs_and_steps_and_bad_parameters(engine):
    api, token = engine.client.url + "durable/api", engine.client.token
    status, out = http_call("GET", f"{api}/runs/run_nope/steps/x%231", token)
    assert (status, out["code"]) == (404, "run_not_found")
    run = halving.trigger(8)
    assert run.result(timeout=60) == 4
    status, out = http_call("GET", f"{api}/runs/{run.id}/steps/nothing%231", token)
    assert (status, out["code"]) == (404, "step_not_found")
    assert "nothing#1" in out["error"]
    status, out = http_call("GET", f"{api}/runs/{run.id}/steps/io%2Fhalve%231?values=maybe",
                            token)
    assert (status, out["code"], out["field"]) == (400, "bad_request", "values")
