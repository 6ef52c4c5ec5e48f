"""The REST layer as data: route matching, and how each refusal maps to a status and code
(checked against a real engine)."""

import pytest
from _support import http_call

import durable_nb as dn
from durable_nb.server.api import ROUTES, match, openapi_document


@pytest.mark.parametrize("method,path,handler", [
    ("GET", "/health", "health"), ("GET", "/runs", "list_runs"), ("POST", "/runs", "post_run"),
    ("GET", "/runs/run_1", "get_run"), ("POST", "/runs/run_1/approve", "approve"),
    ("PUT", "/queues/docs", "put_queue"), ("POST", "/events/k%2F1", "send_event"),
])
def test_a_path_matches_its_route_and_captures_its_parameters(method, path, handler):
    route, args, known = match(method, path)
    assert known and route is not None and route.handler.__name__ == handler
    assert len(args) == len(route.path_params)


def test_unknown_paths_and_methods_are_told_apart():
    assert match("DELETE", "/runs/run_1") == (None, (), True)  # known path, wrong method
    assert match("GET", "/nothing/here") == (None, (), False)
    assert match("GET", "/runs/run_1/approve/extra")[2] is False
    assert match("GET", "/runs/a/b") == (None, (), False)  # a parameter never spans a slash


def test_every_route_is_in_the_openapi_document():
    doc = openapi_document()
    for rt in ROUTES:
        assert rt.method.lower() in doc["paths"][rt.path], rt.path


@dn.task(id="api-echo")
def echo(x):
    return x


def test_refusals_have_fitting_statuses_and_codes(engine):
    api, token = engine.client.url + "durable/api", engine.client.token

    def call(method, path, body=None):
        return http_call(method, api + path, token, body)

    assert call("GET", "/nowhere")[1]["code"] == "no_route"
    status, out = call("DELETE", "/runs/run_x")
    assert (status, out["code"]) == (405, "bad_method")
    status, out = call("GET", "/runs/run_x")
    assert (status, out["code"]) == (404, "run_not_found")
    run = echo.trigger(1)
    assert run.result(timeout=60) == 1
    status, out = call("POST", f"/runs/{run.id}/approve", {})
    assert (status, out["code"]) == (409, "conflict")
    status, out = call("GET", "/runs", None)
    assert status == 200 and [r["id"] for r in out["runs"]] == [run.id]
