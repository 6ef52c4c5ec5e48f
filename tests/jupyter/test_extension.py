"""The jupyter-server extension, against real `jupyter server` processes on 127.0.0.1.

Each server is enabled by the repository's own `jupyter-config/` data file (through
JUPYTER_CONFIG_PATH), exactly as an installed package enables it from etc/jupyter.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import http.client
import http.cookiejar
import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from _support import (
    Jupyter,
    http_call,
    jupyter_env,
    start_server,
    wait_for,
)

import durable_nb as dn
from durable_nb.client.client import find_engine
from durable_nb.core.paths import default_db_path, runtime_file
from durable_nb.server import api as _api

REPO = Path(__file__).resolve().parents[2]
BASE_URL = "/jp%40x/"


# ---------------------------------------------------------------------- tasks (run in workers)

@dn.step
def greet(name: str) -> str:
    print(f"hello {name}")
    return f"hello {name}"


@dn.task(id="serverext-approve")
def needs_approval(name: str) -> dict:
    text = greet(name)
    decision = dn.approval("ship", data={"text": text})
    return {"text": text, "approved": decision.approved, "by": decision.by}


@dn.task(id="serverext-nap")
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@dn.task(id="serverext-env")
def worker_env() -> dict:
    return {k: os.environ.get(k)
            for k in ("DURABLE_NB_URL", "DURABLE_NB_TOKEN", "DURABLE_NB_DB", "DURABLE_NB_SOCKET")}


@dn.task(id="serverext-event")
def wait_event(key: str):
    return dn.wait_for_event(key, timeout=60)


# ---------------------------------------------------------------------- helpers

call = http_call  # one HTTP request; status and JSON answer


class JupyterServer(Jupyter):
    """A `jupyter server` under a base URL, with short activity checks and small limits."""

    def __init__(self, tmp: Path, db: Path, *args: str, name: str = "server"):
        super().__init__(tmp, db, "--DurableApp.activity_interval=0.2",
                         "--DurableApp.max_payload_mb=1", "--DurableApp.max_workers=4", *args,
                         name=name, base_url=BASE_URL, ready=(200, 503))

    def get(self, path: str, **kw) -> tuple[int, dict | None]:
        return call("GET", self.api + path, self.token, **kw)

    def client(self, token: str | None = None) -> dn.Client:
        return dn.connect(url=self.url, token=token or self.token)


def runtime_info(db: Path) -> dict:
    return json.loads(runtime_file(db).read_text())


def last_activity(server: JupyterServer) -> float:
    """The server's `last_activity` as /api/status reports it (what idle cullers read)."""
    status, out = call("GET", server.url + "api/status", server.token)
    assert status == 200
    return datetime.fromisoformat(out["last_activity"].replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jupyter")
    s = JupyterServer(tmp, tmp / "main.duckdb").start()
    yield s
    s.stop()


@pytest.fixture
def jclient(server):
    """The durable client pointed at the server with the Jupyter login token."""
    return server.client()


# ---------------------------------------------------------------------- installation

@pytest.mark.slow
def test_the_data_file_enables_the_extension_and_is_installed_by_the_wheel():
    import tomllib

    data = json.loads((REPO / "jupyter-config/jupyter_server_config.d/durable_nb.json").read_text())
    assert data == {"ServerApp": {"jpserver_extensions": {"durable_nb": True}}}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    shared = project["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["jupyter-config/jupyter_server_config.d/durable_nb.json"] == \
        "etc/jupyter/jupyter_server_config.d/durable_nb.json"
    (point,) = dn._jupyter_server_extension_points()
    assert point["app"].name == "durable_nb" and point["module"] == "durable_nb.jupyter.extension"


def test_traits_have_help_and_current_activity_follows_the_host():
    from types import SimpleNamespace

    from durable_nb.jupyter.extension import DurableApp

    for name in ("db_path", "max_workers", "wait_grace", "max_payload_mb", "activity_interval"):
        trait = DurableApp.class_traits()[name]
        assert trait.metadata.get("config") and len(trait.help) > 20, name
    app = DurableApp()
    assert app.db_path == str(default_db_path())
    assert app.current_activity() is False
    app.host = SimpleNamespace(busy=True)
    assert app.current_activity() is True


# ---------------------------------------------------------------------- the hosted engine

def test_the_engine_runs_in_the_server_and_writes_its_runtime_file(server):
    status, health = server.get("/health")
    assert status == 200 and health["pid"] == server.pid and health["db"] == str(server.db)
    assert health["max_payload"] == 1024 * 1024  # --DurableApp.max_payload_mb=1
    info = runtime_info(server.db)
    assert info["pid"] == server.pid and info["url"] == server.url
    assert {"url", "token", "pid", "db", "started_at"} <= set(info)
    assert info["token"] != server.token, "the server's login token must not be handed out"
    assert stat.S_IMODE(runtime_file(server.db).stat().st_mode) == 0o600
    log = server.log.read_text()
    assert info["token"] not in log and server.token not in log, "no secret in the server log"
    # the runtime file's credential works on the durable API, and only there
    assert call("GET", server.api + "/health", info["token"])[0] == 200
    assert call("GET", server.url + "api/kernels", info["token"])[0] == 403
    # a script or CLI on the machine finds the server-hosted engine through the file, and
    # talks to it over the engine's private Unix socket
    found = find_engine(server.db, start=False)
    assert found.health()["pid"] == server.pid
    assert found.socket_path == info["socket"]
    assert stat.S_IMODE(os.stat(info["socket"]).st_mode) == 0o600


def test_the_stop_command_does_not_stop_the_jupyter_server(server):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "durable_nb", "stop", "--db", str(server.db)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "runs inside a Jupyter server" in out.stderr
    assert server.get("/health")[0] == 200


def test_workers_get_the_same_environment_as_kernels(server, jclient):
    env = worker_env.trigger().result(timeout=30)
    info = runtime_info(server.db)
    assert env == {"DURABLE_NB_URL": server.url, "DURABLE_NB_TOKEN": info["token"],
                   "DURABLE_NB_DB": str(server.db), "DURABLE_NB_SOCKET": info["socket"]}


def test_every_route_answers_as_documented(server, jclient):
    status, doc = server.get("/openapi.json")
    assert status == 200
    for rt in _api.ROUTES:
        assert rt.method.lower() in doc["paths"][rt.path], (rt.method, rt.path)
    assert _api.WS_PATH in doc["paths"]

    run = needs_approval.trigger("world")
    wait_for(lambda: run.status == "WAITING", what="the run to wait for its approval")
    detail = jclient.request("GET", f"/runs/{run.id}")
    assert [s["status"] for s in detail["steps"]] == ["COMPLETED"]
    assert detail["waits"][0]["name"] == "ship"
    listed = jclient.request("GET", "/runs", query={"task": "serverext-approve"})["runs"]
    assert run.id in [r["id"] for r in listed]
    assert run.approve("ship", comment="fine", by="reviewer")["outcome"] == "approved"
    with pytest.raises(dn.WaitConflict):  # 409: a wait resolves once
        run.reject("ship")
    out = run.result(timeout=30)
    # the approver is the server's owner, whatever name the client gives
    assert out == {"text": "hello world", "approved": True, "by": getpass.getuser()}
    assert any("hello world" in line["line"] for line in run.logs)
    assert any(s["kind"] == "run" for s in run.spans)

    again = run.replay()
    assert again.id != run.id
    again.cancel()
    assert again.wait(timeout=30) == "CANCELED"

    waiter = wait_event.trigger("serverext-key")
    wait_for(lambda: waiter.status == "WAITING", what="the run to wait for its event")
    assert dn.send_event("serverext-key", {"n": 1}) == 1
    assert waiter.result(timeout=30) == {"n": 1}

    assert jclient.request("PUT", "/queues/serverext-q", {"concurrency_limit": 2}) \
        ["concurrency_limit"] == 2
    assert "serverext-q" in [q["name"] for q in jclient.request("GET", "/queues")["queues"]]
    assert isinstance(jclient.request("GET", "/workers")["workers"], list)
    assert jclient.request("POST", "/sql", {"query": "select count(*) from runs"})["rows"][0][0] >= 3


def test_errors_have_the_documented_status_codes(server, jclient):
    with pytest.raises(dn.RunNotFound):
        jclient.request("GET", "/runs/run_nope")
    assert server.get("/runs/run_nope")[0] == 404
    assert server.get("/no/such/route")[0] == 404
    status, out = call("POST", server.api + "/runs", server.token, body=b"{not json")
    assert status == 400 and "JSON" in out["error"]
    status, out = call("POST", server.api + "/runs", server.token, body={"task_hash": 5})
    assert status == 400 and "task_hash" in out["error"]
    assert server.get("/runs?status=DONE")[0] == 422
    status, out = call("POST", server.api + "/runs", server.token,
                       body={"task_hash": "nope", "payload_b64": ""})
    assert status == 409 and out["code"] == "unknown_task"
    big = base64.b64encode(b"x" * (2 * 1024 * 1024)).decode()
    h = nap._register(jclient)
    status, out = call("POST", server.api + "/runs", server.token,
                       body={"task_hash": h, "payload_b64": big})
    assert status == 413 and out["code"] == "too_large"


def test_requests_without_credentials_are_refused(server):
    for rt in _api.ROUTES:
        path = rt.path.replace("{", "").replace("}", "")
        for token in (None, "wrong-token"):
            status, _ = call(rt.method, server.api + path, token,
                             body=b"{}" if rt.method in ("POST", "PUT") else None)
            assert status == 403, (rt.method, rt.path, token)
    status, out = call("GET", server.api + "/runs")
    assert "Authorization: token" in out["error"] and out["code"] == "http_403"

    async def ws(headers):
        import tornado.httpclient
        import tornado.websocket

        req = tornado.httpclient.HTTPRequest(
            "ws" + server.api[4:] + "/events", headers=headers)
        with pytest.raises(tornado.httpclient.HTTPClientError) as err:
            await tornado.websocket.websocket_connect(req)
        return err.value.code

    assert asyncio.run(ws({})) == 403
    assert asyncio.run(ws({"Authorization": "token wrong"})) == 403


def test_a_cookie_session_must_send_the_xsrf_token_to_write(server):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def send(method, path, headers=None, body=None):
        req = urllib.request.Request(server.url + path, method=method, data=body,
                                     headers=headers or {})
        try:
            with opener.open(req, timeout=30) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert send("GET", "login") == 200  # the login page sets the _xsrf cookie
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    assert send("GET", "durable/api/health", {"Authorization": f"token {server.token}"}) == 200
    assert any(c.name.startswith("username-") for c in jar), "token login sets a cookie"
    assert send("GET", "durable/api/health") == 200  # the cookie alone authenticates reads
    body = json.dumps({"concurrency_limit": 3}).encode()
    assert send("PUT", "durable/api/queues/cookie-q", body=body) == 403
    assert send("POST", "durable/api/sql", body=b'{"query": "select 1"}') == 403
    assert send("PUT", "durable/api/queues/cookie-q", {"X-XSRFToken": xsrf}, body) == 200


def test_the_events_websocket_streams_a_runs_status_changes(server, jclient):
    import tornado.httpclient
    import tornado.websocket

    kernel_token = runtime_info(server.db)["token"]

    async def stream(token: str) -> list[dict]:
        req = tornado.httpclient.HTTPRequest(
            "ws" + server.api[4:] + "/events", headers={"Authorization": f"token {token}"})
        ws = await tornado.websocket.websocket_connect(req)
        hello = json.loads(await ws.read_message())
        assert hello["type"] == "hello"
        run = await asyncio.to_thread(nap.trigger, 0.05)
        seen: list[dict] = []
        while not any(e.get("status") == "COMPLETED" for e in seen):
            msg = await asyncio.wait_for(ws.read_message(), 30)
            assert msg is not None, "the stream closed early"
            event = json.loads(msg)
            if event.get("run_id") == run.id and event["type"] == "run":
                seen.append(event)
        ws.close()
        return [e["status"] for e in seen]

    for token in (server.token, kernel_token):
        statuses = asyncio.run(stream(token))
        assert statuses[0] == "QUEUED" and "EXECUTING" in statuses
        assert statuses[-1] == "COMPLETED"


def test_a_kernel_started_by_the_server_finds_its_engine(server):
    from jupyter_client import BlockingKernelClient
    from jupyter_core.paths import jupyter_runtime_dir

    status, kernel = call("POST", server.url + "api/kernels", server.token, body={})
    assert status == 201, kernel
    kc = BlockingKernelClient(
        connection_file=str(Path(jupyter_runtime_dir()) / f"kernel-{kernel['id']}.json"))
    try:
        kc.load_connection_file()
        kc.start_channels(hb=False)  # no heartbeat: a slow start is not a dead kernel
        kc.wait_for_ready(timeout=60)
        code = (
            "import json, os, durable_nb as dn\n"
            "c = dn.connect()\n"
            "@dn.task(id='from-kernel')\n"
            "def double(x):\n"
            "    return 2 * x\n"
            "print(json.dumps({'url': os.environ['DURABLE_NB_URL'],\n"
            "  'token': os.environ['DURABLE_NB_TOKEN'], 'db': os.environ['DURABLE_NB_DB'],\n"
            "  'pid': c.health()['pid'], 'out': double.trigger(21).result(timeout=30),\n"
            "  'socket': c.socket_path}))\n"
        )
        lines: list[str] = []
        reply = kc.execute_interactive(
            code, timeout=60, output_hook=lambda m: lines.append(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
        seen = json.loads("".join(lines))
    finally:
        kc.stop_channels()
        call("DELETE", server.url + f"api/kernels/{kernel['id']}", server.token)
    assert seen["url"] == server.url and seen["pid"] == server.pid and seen["out"] == 42
    assert seen["token"] != server.token and seen["token"] == runtime_info(server.db)["token"]
    assert seen["db"] == str(server.db)
    assert seen["socket"] == runtime_info(server.db)["socket"], "kernels use the engine's socket"


def test_runs_keep_the_server_from_looking_idle(server, jclient):
    run = nap.trigger(2.5)
    wait_for(lambda: run.status == "EXECUTING", what="the run to execute")
    t0 = time.time()
    # deliberate pauses: no API calls meanwhile, so only the extension can report activity
    # (polling /api/status would itself count as activity)
    time.sleep(1.5)
    assert last_activity(server) >= t0 + 1.0, "an executing run must count as activity"
    run.result(timeout=30)
    time.sleep(0.6)  # the last stamp of the run (it stamps every activity_interval)
    idle = last_activity(server)
    time.sleep(1.0)  # a quiet second: nothing may stamp activity now
    assert last_activity(server) == idle, "with nothing running the server is idle"


# ---------------------------------------------------------------------- one database, two servers

@pytest.mark.slow
def test_a_second_server_on_the_same_database_uses_the_first_ones_engine(tmp_path):
    import tornado.httpclient
    import tornado.websocket

    db = tmp_path / "shared.duckdb"
    first = JupyterServer(tmp_path, db, name="first").start()
    second = JupyterServer(tmp_path, db, name="second")
    try:
        second.start()
        status, health = second.get("/health")
        assert status == 200 and health["pid"] == first.pid  # proxied to the owner
        assert runtime_info(db)["pid"] == first.pid
        c2 = second.client()

        async def stream() -> list[str]:
            req = tornado.httpclient.HTTPRequest(
                "ws" + second.api[4:] + "/events", headers={"Authorization": f"token {second.token}"})
            ws = await tornado.websocket.websocket_connect(req)
            assert json.loads(await ws.read_message())["type"] == "hello"
            run = await asyncio.to_thread(nap.trigger, 0.05)
            statuses: list[str] = []
            while "COMPLETED" not in statuses:
                event = json.loads(await asyncio.wait_for(ws.read_message(), 30))
                if event.get("run_id") == run.id and event["type"] == "run":
                    statuses.append(event["status"])
            ws.close()
            return statuses

        assert asyncio.run(stream())[0] == "QUEUED"  # events relayed from the owner
        run = nap.trigger(0.01)
        assert run.result(timeout=30) == 0.01
        assert first.client().request("GET", f"/runs/{run.id}")["status"] == "COMPLETED"

        assert first.stop() == 0
        status, health = call("GET", second.api + "/health", second.token)
        assert status == 200 and health["pid"] == second.pid, "the second server takes over"
        assert runtime_info(db)["pid"] == second.pid
        assert c2.request("GET", f"/runs/{run.id}")["status"] == "COMPLETED"
    finally:
        second.stop()
        first.stop()


@pytest.mark.slow
def test_a_server_on_the_database_of_a_standalone_engine_forwards_to_it(make_engine, tmp_path):
    owner = make_engine(name="standalone")
    srv = JupyterServer(tmp_path, owner.db, name="fwd").start()
    try:
        status, health = srv.get("/health")
        assert status == 200 and health["pid"] == owner.pid
        srv.client()
        run = nap.trigger(0.01)
        assert run.result(timeout=30) == 0.01
        assert owner.client.request("GET", f"/runs/{run.id}")["status"] == "COMPLETED"
        assert runtime_info(owner.db)["pid"] == owner.pid  # the owner's file is left alone
    finally:
        srv.stop()


@pytest.mark.slow
def test_a_database_locked_by_a_process_without_engine_answers_503(tmp_path):
    db = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('ready', flush=True); time.sleep(120)", str(db)],
        stdout=subprocess.PIPE, text=True)
    srv = JupyterServer(tmp_path, db, name="locked")
    try:
        assert holder.stdout.readline().strip() == "ready"
        srv.start()
        status, out = srv.get("/health")
        assert status == 503 and out["code"] == "engine_unavailable"
        assert str(db) in out["error"] and str(holder.pid) in out["error"]
        assert call("GET", srv.url + "api/status", srv.token)[0] == 200  # the server is fine
        assert srv.proc.poll() is None
        holder.kill()
        holder.wait(10)
        # the host retries at most once a second; until then it answers 503
        status, health = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
            srv.get("/health")), 10, "the server to take the database over")
        assert health["pid"] == srv.pid, "once free, the server owns it"
    finally:
        holder.kill()
        srv.stop()


@pytest.mark.slow
def test_a_unix_socket_server_exports_a_loopback_url_and_cleans_up(tmp_path):
    sock = tmp_path / "jp.sock"
    db = tmp_path / "sock.duckdb"
    srv = JupyterServer(tmp_path, db, f"--ServerApp.sock={sock}", name="sock")
    cmd = [sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser",
           f"--ServerApp.sock={sock}", f"--IdentityProvider.token={srv.token}",
           f"--ServerApp.root_dir={tmp_path}", f"--DurableApp.db_path={db}"]
    srv.proc = start_server(cmd, jupyter_env(tmp_path / "cfg"), srv.log, timeout=60,
                            what="jupyter server on a Unix socket",
                            ready=lambda: runtime_file(db).exists())
    try:
        info = runtime_info(db)
        assert info["pid"] == srv.pid and info["url"].startswith("http://127.0.0.1:")
        status, health = call("GET", info["url"] + "durable/api/health", info["token"])
        assert status == 200 and health["pid"] == srv.pid
        assert call("GET", info["url"] + "durable/api/health", "wrong")[0] == 403
        assert call("GET", info["url"] + "durable/api/runs")[0] == 403
    finally:
        assert srv.stop() == 0
    assert not runtime_file(db).exists(), "the runtime file goes with the server"
    import duckdb

    duckdb.connect(str(db)).close()  # the engine released the database
