"""Malformed and out-of-range requests answer 400 naming the field and the rule, and
nothing they carry reaches the store; the engine keeps working after each of them.

Every test sends raw bytes to a real engine (`durable-nb serve`), then checks that the
engine is healthy and that a run triggered afterwards completes (a value the store
cannot hold used to stop ingestion: every later read and write failed).
"""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest
from _support import EngineProcess, http_call

import durable_nb as dn

INT32_MAX = 2**31 - 1
TEN_YEARS = 10 * 365 * 86400


@dn.task(id="validation-echo")
def echo(x):
    return x


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    """One engine for the module: a request that bricks it fails every later test too."""
    tmp = tmp_path_factory.mktemp("validation")
    e = EngineProcess(tmp / "v.duckdb", ["--wait-grace", "0.3"])
    e.start()
    yield e
    e.stop()


def call(e: EngineProcess, method: str, path: str, body=None, query: dict | None = None
         ) -> tuple[int, dict | None]:
    """One HTTP request to the engine's API; ``body`` as bytes, or a dict sent as JSON."""
    if isinstance(body, list):
        body = json.dumps(body).encode()
    target = e.client.url.rstrip("/") + "/durable/api" + path
    if query:
        target += "?" + urllib.parse.urlencode(query)
    return http_call(method, target, e.client.token, body, timeout=60)


def refused(e, method, path, body=None, query=None, *, field=None, rule=None, status=400,
            says: str = "") -> dict:
    """Assert a clear refusal (status, field, rule, words of the message)."""
    got, out = call(e, method, path, body, query)
    assert got == status, (got, out)
    assert isinstance(out, dict) and out.get("error"), out
    if field is not None:
        assert out.get("field") == field, out
        assert f"'{field}'" in out["error"], out
    if rule is not None:
        assert out.get("rule") == rule, out
    assert says.lower() in out["error"].lower(), out
    assert len(out["error"]) < 600, "an error message never echoes a huge value"
    return out


def alive(e: EngineProcess) -> None:
    """The engine answers, stores and runs: /health ok, a new run completes."""
    status, health = call(e, "GET", "/health")
    assert status == 200 and health["ok"] is True, health
    assert health.get("store", {}).get("quarantined", 0) == 0, health
    assert e.proc.poll() is None
    assert echo.trigger("still here").result(timeout=60) == "still here"
    status, out = call(e, "POST", "/sql", {"query": "select count(*) from runs"})
    assert status == 200 and out["rows"][0][0] >= 1, out


def task_hash(e: EngineProcess) -> str:
    return echo._register(e.client)


def payload(*args) -> str:
    import cloudpickle

    return base64.b64encode(cloudpickle.dumps((args, {}))).decode()


# ---------------------------------------------------------------------- queues


@pytest.mark.parametrize("limit, rule", [
    (2**31, "maximum"), (2**63, "maximum"), (0, "minimum"), (-1, "minimum"),
    (1.5, "type"), ("3", "type"), (True, "type"), ([1], "type"),
])
def test_queue_limits_must_fit_the_column(eng, limit, rule):
    refused(eng, "PUT", "/queues/q", {"concurrency_limit": limit},
            field="concurrency_limit", rule=rule)
    alive(eng)


def test_a_queue_limit_in_range_is_stored_and_survives_a_restart(eng):
    for limit in (INT32_MAX, None, 1):
        assert call(eng, "PUT", "/queues/edge", {"concurrency_limit": limit}) == \
            (200, {"name": "edge", "concurrency_limit": limit, "rate_limit": None})
    refused(eng, "PUT", "/queues/edge", {}, field="concurrency_limit", rule="required")
    refused(eng, "PUT", "/queues/edge", {"concurrency_limit": 2, "burst": 3}, field="burst",
            rule="additionalProperties", says="not a known field")
    refused(eng, "PUT", "/queues/a%0Ab", {"concurrency_limit": 2}, field="name", rule="pattern")
    eng.restart()  # the journal replays into the store on start
    queues = {q["name"]: q["concurrency_limit"] for q in call(eng, "GET", "/queues")[1]["queues"]}
    assert queues["edge"] == 1
    alive(eng)


def test_a_task_queue_limit_out_of_range_is_refused_at_registration(eng):
    spec = echo.spec()
    opts = {**spec["options"], "queue": {"name": "big", "concurrency_limit": 2**31}}
    body = {"task_id": "x", "code_b64": base64.b64encode(spec["code"]).decode(),
            "options": opts}
    refused(eng, "PUT", "/tasks/" + "a" * 64, body, field="options.queue.concurrency_limit",
            rule="maximum")
    alive(eng)


# ---------------------------------------------------------------------- numbers


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
@pytest.mark.parametrize("name", ["delay", "ttl"])
def test_nan_and_infinity_are_refused(eng, name, literal):
    h = task_hash(eng)
    body = b'{"task_hash": "%s", "payload_b64": "%s", "%s": %s}' % (
        h.encode(), payload(1).encode(), name.encode(), literal)
    refused(eng, "POST", "/runs", body, rule="json", says="finite numbers only")
    alive(eng)


@pytest.mark.parametrize("name, value, field, rule", [
    ("delay", -1, "delay", "minimum"), ("delay", TEN_YEARS + 1, "delay", "maximum"),
    ("delay", "1h", "delay", "type"), ("ttl", 0, "ttl", "exclusiveMinimum"),
    ("ttl", TEN_YEARS * 2, "ttl", "maximum"), ("tags", ["x"] * 101, "tags", "maxItems"),
    ("tags", ["x" * 201], "tags[0]", "maxLength"), ("tags", ["a", 1], "tags[1]", "type"),
    ("tags", "a,b", "tags", "type"), ("idempotency_key", "k" * 1001, "idempotency_key",
                                      "maxLength"),
    ("concurrency_key", 7, "concurrency_key", "type"),
    ("payload_b64", "not base64!", "payload_b64", "format"),
    ("payload_b64", None, "payload_b64", "type"),
    ("priority", 1001, "priority", "maximum"), ("priority", 1.5, "priority", "type"),
    ("urgency", 1, "urgency", "additionalProperties"),
])
def test_run_options_are_checked(eng, name, value, field, rule):
    body = {"task_hash": task_hash(eng), "payload_b64": payload(1), name: value}
    refused(eng, "POST", "/runs", body, field=field, rule=rule)
    alive(eng)


def test_a_delay_and_ttl_in_range_are_accepted(eng):
    h = task_hash(eng)
    status, out = call(eng, "POST", "/runs", {"task_hash": h, "payload_b64": payload(2),
                                               "delay": TEN_YEARS, "ttl": TEN_YEARS,
                                               "tags": ["t" * 200] * 100})
    assert status == 201, out
    run = dn.RunHandle(out["id"], eng.client)
    assert run.status == "DELAYED"
    run.cancel()
    alive(eng)


@pytest.mark.parametrize("options, field, rule", [
    ({"retry": {"max_attempts": 0}}, "options.retry.max_attempts", "minimum"),
    ({"retry": {"max_attempts": 3, "factor": 0}}, "options.retry.factor", "exclusiveMinimum"),
    ({"retry": {"max_attempts": 3, "jitter": 1}}, "options.retry.jitter",
     "additionalProperties"),
    ({"retry": {"min_timeout": -1}}, "options.retry.min_timeout", "minimum"),
    ({"kill_after": -5}, "options.kill_after", "minimum"),
    ({"max_duration": TEN_YEARS + 1}, "options.max_duration", "maximum"),
    ({"kind": "shell"}, "options.kind", "enum"),
    ({"queue": {"concurrency_limit": 2}}, "options.queue.name", "required"),
])
def test_task_options_are_checked_against_what_tasks_send(eng, options, field, rule):
    spec = echo.spec()
    body = {"task_id": "x", "code_b64": base64.b64encode(spec["code"]).decode(),
            "options": {**spec["options"], **options}}
    refused(eng, "PUT", "/tasks/" + "b" * 64, body, field=field, rule=rule)
    refused(eng, "PUT", "/tasks/" + "c" * 64, {**body, "options": spec["options"],
                                               "sys_path": [1]},
            field="sys_path[0]", rule="type")
    alive(eng)


def test_the_options_tasks_and_cells_send_are_accepted():
    """Every option _tasks and _cells send validates (a task with all options set)."""
    from durable_nb.client.tasks import Queue, Task
    from durable_nb.server import apischema as _apischema
    from durable_nb.worker.cells import run_cell

    full = Task(run_cell, "full", dn.Retry(max_attempts=5, factor=3, min_timeout=0.5,
                                           max_timeout=30), Queue("q", 4), 60.0, 120.0)
    full.kind = "cell"
    for t in (echo, full):
        spec = t.spec()
        _apischema.validate(_apischema.PUT_TASK, {
            "task_id": spec["task_id"], "code_b64": base64.b64encode(spec["code"]).decode(),
            "sys_path": spec["sys_path"], "options": spec["options"]})


# ---------------------------------------------------------------------- malformed bodies


def test_json_nested_100000_deep_is_refused(eng):
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        refused(eng, "POST", "/events/deep", body, rule="depth", says="nested too deeply")
    deep = {"data": json.loads("[" * 80 + "]" * 80)}
    refused(eng, "POST", "/events/deep", deep, rule="depth")
    alive(eng)


@pytest.mark.parametrize("body, rule", [
    (b"\xff\xfe{}", "encoding"), (b'{"comment": "\xc3"}', "encoding"), (b"[]", "type"),
    (b'"text"', "type"), (b"12", "type"), (b"null", "type"), (b"{not json", "json"),
    (b'{"concurrency_limit": 1' + b"0" * 5000 + b"}", "json"),
])
def test_bodies_that_are_not_json_objects_are_refused(eng, body, rule):
    refused(eng, "PUT", "/queues/q", body, rule=rule)
    alive(eng)


@pytest.mark.parametrize("method, path, body, field", [
    ("POST", "/runs/{run}/approve", {"comment": "\ud800"}, "comment"),
    ("POST", "/runs", None, "tags[0]"),
    ("POST", "/events/k", {"data": {"\udfff": 1}}, "data.\\udfff"),
])
def test_text_that_is_not_unicode_is_refused(eng, method, path, body, field):
    """A lone surrogate cannot be stored as UTF-8: it used to stop ingestion for good."""
    if body is None:
        body = {"task_hash": task_hash(eng), "payload_b64": payload(1), "tags": ["ok", "\ud800"]}
        field = "tags[1]"
    raw = json.dumps(body).encode()  # json escapes the surrogate as \ud800
    out = refused(eng, method, path.format(run="run_x"), raw, rule="unicode")
    assert out["field"] == field
    alive(eng)


# ---------------------------------------------------------------------- query and path


@pytest.mark.parametrize("path, query, field, rule", [
    ("/runs", {"limit": "-1"}, "limit", "minimum"),
    ("/runs", {"limit": str(10**30)}, "limit", "maximum"),
    ("/runs", {"limit": "1" * 5000}, "limit", "type"),
    ("/runs", {"limit": "ten"}, "limit", "type"),
    ("/runs", {"offset": "-5"}, "offset", "minimum"),
    ("/runs", {"offset": "1.5"}, "offset", "type"),
    ("/runs/run_x/result", {"timeout": "nan"}, "timeout", "type"),
    ("/runs/run_x/result", {"timeout": "inf"}, "timeout", "type"),
    ("/runs/run_x/result", {"timeout": "-1"}, "timeout", "minimum"),
    ("/runs/run_x/result", {"timeout": "1e9"}, "timeout", "maximum"),
    ("/runs/run_x/logs", {"limit": "0"}, "limit", "minimum"),
    ("/runs/run_x/logs", {"limit": "100001"}, "limit", "maximum"),
    ("/runs/run_x/checkpoint", {"values": "maybe"}, "values", "type"),
])
def test_query_parameters_have_ranges(eng, path, query, field, rule):
    out = refused(eng, "GET", path, query=query, field=field, rule=rule)
    assert "query parameter" in out["error"]
    alive(eng)


def test_unknown_query_parameters_and_odd_path_parameters_never_answer_500(eng):
    assert call(eng, "GET", "/runs", query={"limit": "2", "color": "blue"})[0] == 200
    for path in ("/runs/%00", "/runs/a%20b", "/runs/%E2%98%83", "/runs/" + "x" * 200,
                 "/runs/..%5C..", "/runs/%FF/logs"):
        status, out = call(eng, "GET", path)
        assert status in (400, 404), (path, status, out)
    refused(eng, "GET", "/runs/" + "x" * 201, field="run_id", rule="maxLength")
    refused(eng, "PUT", "/tasks/XYZ", {"task_id": "t", "code_b64": ""}, field="hash",
            rule="pattern")
    refused(eng, "POST", "/events/%01", {}, field="key", rule="pattern")
    alive(eng)


# ---------------------------------------------------------------------- SQL


@pytest.mark.parametrize("limit, rule", [
    (-1, "minimum"), (0, "minimum"), (10**30, "maximum"), (100_001, "maximum"),
    ("5", "type"), (1.5, "type"), (None, "type"),
])
def test_sql_limits_are_checked(eng, limit, rule):
    refused(eng, "POST", "/sql", {"query": "select 1", "limit": limit}, field="limit", rule=rule)
    alive(eng)


SETTINGS = ("select name, value from duckdb_settings() where name in ('threads', "
            "'memory_limit', 'preserve_insertion_order', 'checkpoint_threshold') order by name")


@pytest.mark.parametrize("query", [
    "EXPLAIN ANALYZE SET GLOBAL threads=1",
    "EXPLAIN ANALYZE SET GLOBAL preserve_insertion_order=false",
    "EXPLAIN ANALYZE CHECKPOINT", "EXPLAIN ANALYZE DELETE FROM runs",
    "select * from checkpoint()", "select * from force_checkpoint()",
    "SET GLOBAL memory_limit='1MB'", "PRAGMA threads=1", "CALL checkpoint()",
    "ATTACH ':memory:' AS m", "select * from query('select 1')", "select 1; select 2",
])
def test_sql_that_writes_or_changes_settings_is_refused(eng, query):
    before = call(eng, "POST", "/sql", {"query": SETTINGS})
    assert before[0] == 200
    refused(eng, "POST", "/sql", {"query": query}, status=422)
    assert call(eng, "POST", "/sql", {"query": SETTINGS}) == before
    alive(eng)


def test_sql_bodies_are_checked_and_results_are_json(eng):
    refused(eng, "POST", "/sql", {"query": "x" * 100_001}, field="query", rule="maxLength")
    refused(eng, "POST", "/sql", {"query": "select 1", "format": "csv"}, field="format",
            rule="additionalProperties")
    status, out = call(eng, "POST", "/sql", {"query": "select 'nan'::double, 'inf'::double"})
    assert status == 200 and out["rows"] == [["nan", "inf"]]
    alive(eng)


# ---------------------------------------------------------------------- the document


def test_the_openapi_document_describes_every_body_and_parameter(eng):
    status, doc = call(eng, "GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    from durable_nb.server import api as _api

    for rt in _api.ROUTES:
        op = doc["paths"][rt.path][rt.method.lower()]
        if rt.method in ("POST", "PUT"):
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert schema == rt.body and schema["additionalProperties"] is False
        names = {p["name"] for p in op.get("parameters", [])}
        assert names == set(rt.path_params) | {p.name for p in rt.query}, rt.path
        assert "400" in op["responses"] and str(rt.status) in op["responses"]
    runs = doc["paths"]["/runs"]["get"]["parameters"]
    limit = next(p for p in runs if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 10_000)
    queue = doc["paths"]["/queues/{name}"]["put"]["requestBody"]["content"]
    assert queue["application/json"]["schema"]["properties"]["concurrency_limit"]["maximum"] \
        == INT32_MAX
