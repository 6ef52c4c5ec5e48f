"""OpenTelemetry export: a real engine (``durable-nb serve --otlp-endpoint``) sends its
finished runs as spans over OTLP/HTTP to a real receiver on loopback
(``_otlp_receiver``), with their tree, names, attributes and the trace given at trigger.
A receiver that is down loses nothing: the spans arrive when it answers again, by the
exporter's retries or after the engine restarts, once each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _otlp_receiver import OtlpReceiver
from _support import free_port, wait_for

import durable_nb as dn

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
ERROR = 2  # Status.STATUS_CODE_ERROR on the wire


@dn.step
def fetch(x):
    return x * 2


@dn.task(id="otlp-child")
def child(x):
    return x + 1


@dn.task(id="otlp-parent", retry=dn.Retry(max_attempts=2, min_timeout=0.1, randomize=False))
def parent(marks: str):
    a = fetch(1)
    first = Path(marks) / "failed-once"
    if not first.exists():
        first.touch()
        raise ValueError("the first attempt fails")
    b = fetch(2)
    dn.approval("ship", timeout=60)
    return child.trigger_and_wait(a + b)


@dn.task(id="otlp-echo")
def echo(x):
    return x


@dn.task(id="otlp-boom", retry=dn.Retry(max_attempts=1))
def boom():
    raise KeyError("nothing here")


def _run_spans(spans: list[dict], run_id: str) -> list[dict]:
    return [s for s in spans if s["attributes"].get("durable_nb.run_id") == run_id]


def _kind(spans: list[dict], kind: str) -> list[dict]:
    return [s for s in spans if s["attributes"]["durable_nb.kind"] == kind]


def _has_run(run_id: str):
    return lambda spans: any(s["attributes"].get("durable_nb.kind") == "run"
                             for s in _run_spans(spans, run_id))


def test_runs_arrive_as_a_tree_in_the_trace_given_at_trigger(make_engine, marks):
    receiver = OtlpReceiver().start()
    try:
        make_engine("--otlp-endpoint", receiver.endpoint)
        run = parent.trigger(str(marks), traceparent=f"00-{TRACE}-{CALLER_SPAN}-01",
                             tags=["nightly"])
        wait_for(lambda: any(w["kind"] == "approval" and not w.get("outcome")
                             for w in run.waits), 60, "the approval")
        run.approve("ship")
        assert run.result(timeout=60) == 7
        (child_id,) = [c["id"] for c in run.info()["children"]]
        spans = receiver.wait_for(_has_run(run.id), what="the parent run's span")
    finally:
        receiver.stop()
    assert receiver.content_types == {"application/x-protobuf"}, "OTLP/HTTP with protobuf"
    ours, theirs = _run_spans(spans, run.id), _run_spans(spans, child_id)
    assert {s["trace_id"] for s in ours + theirs} == {TRACE}, "one trace: the caller's"
    (root,) = _kind(ours, "run")
    assert root["parent_span_id"] == CALLER_SPAN and root["name"] == "otlp-parent"
    attrs = root["attributes"]
    assert (attrs["durable_nb.task_id"], attrs["durable_nb.status"]) == ("otlp-parent",
                                                                         "COMPLETED")
    assert attrs["durable_nb.tags"] == ["nightly"] and attrs["durable_nb.queue"]
    assert attrs["durable_nb.attempts"] == len(_kind(ours, "attempt")) >= 2
    assert root["resource"]["service.name"] == "durable-nb"
    attempts = {s["attributes"]["durable_nb.attempt"]: s for s in _kind(ours, "attempt")}
    assert all(a["parent_span_id"] == root["span_id"] for a in attempts.values())
    assert attempts[1]["status"] == ERROR and "the first attempt fails" in \
        attempts[1]["status_message"]
    assert attempts[1]["name"] == "attempt 1"
    steps = {s["attributes"]["durable_nb.step_key"]: s for s in _kind(ours, "step")}
    assert {"fetch#1", "fetch#2"} <= set(steps) and steps["fetch#1"]["name"] == "fetch"
    attempt_ids = {a["span_id"] for a in attempts.values()}
    assert all(s["parent_span_id"] in attempt_ids for s in steps.values())
    waits = {s["name"]: s for s in _kind(ours, "wait")}
    assert waits["ship"]["parent_span_id"] == root["span_id"]
    assert waits["ship"]["attributes"]["durable_nb.wait_kind"] == "approval"
    assert waits["ship"]["end"] >= waits["ship"]["start"] >= root["start"]
    (child_root,) = _kind(theirs, "run")
    assert child_root["parent_span_id"] == root["span_id"], "the child sits under its parent"
    assert child_root["attributes"]["durable_nb.parent_run_id"] == run.id
    known = {s["span_id"] for s in ours + theirs} | {CALLER_SPAN}
    assert all(s["parent_span_id"] in known for s in ours + theirs), "no dangling parent"
    assert len([s for s in spans if s["attributes"]["durable_nb.kind"] == "run"]) == 2


def test_a_run_without_a_trace_gets_its_own_and_failures_are_errors(make_engine):
    receiver = OtlpReceiver().start()
    try:
        make_engine("--otlp-endpoint", receiver.endpoint + "/v1/traces")
        ok, bad = echo.trigger(1), boom.trigger()
        ok.result(timeout=30)
        with pytest.raises(dn.RunFailed):
            bad.result(timeout=30)
        spans = receiver.wait_for(lambda s: _has_run(ok.id)(s) and _has_run(bad.id)(s))
    finally:
        receiver.stop()
    (mine,) = _kind(_run_spans(spans, ok.id), "run")
    assert mine["parent_span_id"] == "" and mine["trace_id"] != TRACE
    assert mine["status"] != ERROR and mine["attributes"]["durable_nb.status"] == "COMPLETED"
    (failed,) = _kind(_run_spans(spans, bad.id), "run")
    assert failed["trace_id"] not in (TRACE, mine["trace_id"]), "a trace per root run"
    assert failed["status"] == ERROR and "KeyError" in failed["status_message"]
    assert failed["attributes"]["error.type"] == "KeyError"
    (attempt,) = _kind(_run_spans(spans, bad.id), "attempt")
    assert attempt["status"] == ERROR and attempt["parent_span_id"] == failed["span_id"]


def _trigger_in_a_span(db: Path, code: str) -> str:
    """Trigger from a process that has a current OpenTelemetry span; returns its output."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code, str(db)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_callers_current_span_is_continued(make_engine, tmp_path):
    engine = make_engine()
    code = (
        "import sys; import durable_nb as dn\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "dn.connect(db=sys.argv[1])\n"
        "from test_otlp_export import echo\n"
        "with trace.get_tracer('t').start_as_current_span('caller') as span:\n"
        "    c = span.get_span_context()\n"
        "    run = echo.trigger(1)\n"
        "print(f'00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x} {run.id}')\n")
    traceparent, run_id = _trigger_in_a_span(engine.db, code).split()
    assert dn.get_run(run_id).info()["traceparent"] == traceparent


def test_a_bad_traceparent_is_refused_before_anything_is_sent(engine):
    for bad in ("00-abc-def-01", f"01-{TRACE}-{CALLER_SPAN}-01", f"00-{'0' * 32}-{CALLER_SPAN}-01"):
        with pytest.raises(ValueError, match="traceparent"):
            echo.trigger(1, traceparent=bad)
    assert dn.runs(task="otlp-echo") == []


@pytest.mark.slow
def test_spans_of_runs_finished_while_the_receiver_was_down_arrive_once(make_engine):
    receiver = OtlpReceiver(free_port())
    engine = make_engine("--otlp-endpoint", receiver.endpoint)
    first = echo.trigger("during the outage")
    first.result(timeout=30)
    warned = lambda n: lambda: engine.log.read_text().count("failed (") == n  # noqa: E731
    wait_for(warned(1), 30, "the exporter to say that the receiver is down")
    otlp = engine.client.request("GET", "/health")["otlp"]
    assert otlp["endpoint"] == receiver.endpoint + "/v1/traces" and otlp["failing"]
    assert otlp["exported_runs"] == 0
    receiver.start()  # the exporter's retries find it
    receiver.wait_for(_has_run(first.id), what="the first run, by a retry")
    wait_for(lambda: engine.client.request("GET", "/health")["otlp"]["failing"] is None, 10,
             "/health to say the export works again")
    receiver.stop()
    second = echo.trigger("before the crash")
    second.result(timeout=30)
    wait_for(warned(2), 30, "the exporter to fail again")
    engine.kill()  # SIGKILL: the second run was never exported
    receiver.start()
    try:
        engine.start()
        third = echo.trigger("after the restart")
        third.result(timeout=30)
        spans = receiver.wait_for(lambda s: _has_run(second.id)(s) and _has_run(third.id)(s),
                                  what="the runs finished before the crash and after it")
    finally:
        receiver.stop()
    runs = [s["attributes"]["durable_nb.run_id"] for s in spans
            if s["attributes"]["durable_nb.kind"] == "run"]
    assert sorted(runs) == sorted([first.id, second.id, third.id]), "each run once"
    log = engine.log.read_text()
    assert log.count("OTLP export to") >= 2 and log.count("failed (") == 2, \
        "one warning per outage, not one per retry"


def test_the_endpoint_setting_honours_the_standard_variable_and_refuses_a_bad_url(
        tmp_path, monkeypatch):
    from _support import run_cli

    from durable_nb.core.config import BY_NAME, ConfigError

    setting = BY_NAME["otlp_endpoint"]
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert setting.from_env({}) == ""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert setting.from_env({}) == "http://collector:4318"
    assert setting.from_env({setting.env: "http://mine:4318"}) == "http://mine:4318"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    with pytest.raises(ConfigError, match=r"\$OTEL_EXPORTER_OTLP_ENDPOINT: expected an"):
        setting.from_env({})
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    db = tmp_path / "refused.duckdb"
    out = run_cli("serve", "--db", str(db), "--otlp-endpoint", "grpc://x:4317")
    assert out.returncode == 2 and "expected an http:// or https:// URL" in out.stderr
    assert not db.exists()
