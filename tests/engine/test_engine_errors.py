"""Bad input gets clear errors and loses nothing (acceptance 7)."""

import socket
import subprocess
import sys

import pytest

import durable_nb as dn


@dn.task(id="echo")
def echo(x):
    return x


@dn.task(id="big-result")
def big_result(n: int) -> bytes:
    return b"x" * n


@dn.step()
def unpicklable_step():
    return socket.socket()


@dn.task(id="bad-step-output")
def bad_step_output():
    unpicklable_step()


def test_unknown_run_id(engine):
    with pytest.raises(dn.RunNotFound, match="no run with id 'run_nope'"):
        dn.get_run("run_nope")
    for method, path in (("GET", "/runs/run_nope"), ("POST", "/runs/run_nope/cancel"),
                         ("POST", "/runs/run_nope/approve"), ("GET", "/runs/run_nope/spans")):
        with pytest.raises(dn.RunNotFound):
            engine.client.request(method, path)


def test_approving_a_run_that_is_not_waiting(engine):
    run = echo.trigger(1)
    run.result(timeout=30)
    with pytest.raises(dn.WaitConflict, match="COMPLETED, not waiting on an approval"):
        run.approve()


def test_non_picklable_argument_is_named(engine):
    before = dn.sql("select count(*) from runs")[0][0]
    s = socket.socket()
    try:
        with pytest.raises(dn.NotPicklable) as err:
            echo.trigger(s)
    finally:
        s.close()
    msg = str(err.value)
    assert "argument 'x' of task 'echo'" in msg and "socket" in msg and "cannot pickle" in msg
    assert dn.sql("select count(*) from runs")[0][0] == before


def test_non_picklable_step_output_fails_the_run_without_retry(engine):
    run = bad_step_output.trigger()
    with pytest.raises(dn.RunFailed) as err:
        run.result(timeout=30)
    assert "output of step 'unpicklable_step#1'" in err.value.error["message"]
    assert len(run.attempts) == 1


def test_oversized_result_and_payload(make_engine):
    engine = make_engine("--max-payload-mb", "1")
    ok = echo.trigger("small")
    assert ok.result(timeout=30) == "small"
    run = big_result.trigger(3 * 1024 * 1024)
    with pytest.raises(dn.RunFailed) as err:
        run.result(timeout=30)
    msg = err.value.error["message"]
    assert "return value of task 'big-result'" in msg and "3.0 MB" in msg and "1.0 MB" in msg
    assert len(run.attempts) == 1, "an oversized result is not retried"
    with pytest.raises(dn.PayloadTooLarge, match="largest: 'x' 2.0 MB"):
        echo.trigger(b"y" * 2 * 1024 * 1024)
    assert ok.result() == "small", "earlier runs are intact"
    assert engine.client.request("GET", "/health")["max_payload"] == 1024 * 1024


def test_database_owned_by_another_engine(engine, tmp_path):
    run = echo.trigger("kept")
    run.result(timeout=30)
    out = subprocess.run([sys.executable, "-m", "durable_nb", "serve", "--db", str(engine.db)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"already owned by process {engine.pid}" in out.stderr
    assert "Use that engine" in out.stderr
    assert run.result(timeout=30) == "kept"
    assert dn.get_run(run.id).status == "COMPLETED"


def test_malformed_requests(engine):
    c = engine.client
    with pytest.raises(dn.ApiError) as err:
        c.request("POST", "/runs", {"task_hash": 5})
    assert err.value.status == 400 and "task_hash" in str(err.value)
    with pytest.raises(dn.ApiError) as err:
        c.request("POST", "/runs", {"task_hash": "abc", "payload_b64": "!!notbase64"})
    assert err.value.status == 400 and "base64" in str(err.value)
    with pytest.raises(dn.ApiError) as err:
        c.request("GET", "/runs", query={"status": "DONE"})
    assert err.value.status == 422 and "unknown status" in str(err.value)
    with pytest.raises(dn.ApiError) as err:
        c.request("PUT", "/queues/q", {"concurrency_limit": 0})
    assert err.value.status == 400 and "concurrency_limit" in str(err.value)
    with pytest.raises(dn.ApiError) as err:
        c.request("POST", "/sql", {"query": "delete from runs"})
    assert err.value.status == 422 and "read-only" in str(err.value)
    with pytest.raises(dn.ApiError) as err:
        c.request("GET", "/nope")
    assert err.value.status == 404


def test_requests_without_the_token_are_refused(engine):
    import http.client
    import urllib.parse

    u = urllib.parse.urlparse(engine.client.url)
    for method, path in (("GET", "/durable/api/health"), ("GET", "/durable/api/runs"),
                         ("POST", "/durable/api/sql"), ("GET", "/durable/api/openapi.json")):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.request(method, path, body=b"{}", headers={"Authorization": "token wrong"})
        resp = conn.getresponse()
        assert resp.status == 403, (method, path)
        assert b"token" in resp.read()


def test_engine_binds_loopback_only_and_files_are_private(engine):
    import os
    import stat

    from durable_nb.core.paths import runtime_file

    assert engine.client.url.startswith("http://127.0.0.1:")
    assert stat.S_IMODE(os.stat(runtime_file(engine.db)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(engine.db).st_mode) == 0o600


@dn.task(id="returns-a-lock")
def returns_a_lock():
    import threading

    return threading.Lock()


def test_non_picklable_return_value_is_named(engine):
    run = returns_a_lock.trigger()
    with pytest.raises(dn.RunFailed) as err:
        run.result(timeout=30)
    msg = err.value.error["message"]
    assert "return value of task 'returns-a-lock'" in msg and "lock" in msg
    assert len(run.attempts) == 1


def test_a_client_asked_not_to_start_engines_never_does(make_engine):
    """A runtime file naming a live process whose engine does not answer, and an engine
    that stops under a client found with start=False: clear errors, and no engine started."""
    import json
    import os
    import time

    from durable_nb.client.client import find_engine
    from durable_nb.core.paths import runtime_file

    e = make_engine(name="no-autostart")
    client = find_engine(e.db, start=False)
    assert client.health()["ok"] is True
    e.stop()
    with pytest.raises(dn.EngineUnavailable, match="is not answering"):
        client.request("GET", "/health")
    assert not runtime_file(e.db).exists(), "the client did not start another engine"

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rt = runtime_file(e.db)
    rt.write_text(json.dumps({"url": f"http://127.0.0.1:{port}/", "token": "t", "pid": os.getpid(),
                              "db": str(e.db), "socket": str(e.db.parent / "gone.sock")}))
    with pytest.raises(dn.EngineUnavailable, match="no engine is running"):
        find_engine(e.db, start=False)
    time.sleep(0.5)  # deliberate: time in which a wrongly started engine would show up
    assert json.loads(rt.read_text())["pid"] == os.getpid(), "no engine was started"
    rt.unlink()
