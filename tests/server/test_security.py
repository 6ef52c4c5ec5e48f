"""API security of both hosts: tokens only in headers, authentication before the body is
read, one server identity for every way in, and files private from their first byte.

Real engines (`durable-nb serve`) and real Jupyter servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.client
import http.cookiejar
import json
import os
import socket
import stat
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
import tornado.httpclient
import tornado.websocket
from _support import REPO, Jupyter, http_call, wait_for

import durable_nb as dn
from durable_nb.client.client import FRAME
from durable_nb.core.auth import scrub_uri, server_owner
from durable_nb.core.paths import engine_log_file, runtime_file
from durable_nb.core.private import call_private, private_thread, private_umask

MB = 1 << 20
OWNER = "ada-owner"  # $JUPYTERHUB_USER of the Jupyter servers below: the server's owner


@dn.task(id="security-approve")
def needs_ok(tag: str) -> str | None:
    return dn.approval("ok", data={"tag": tag}).by


@dn.step
def big_step(i: int) -> bytes:
    return bytes([i % 256]) * (MB + 1024)  # over the size that goes to a blob file


@dn.task(id="security-work")
def work(n: int) -> int:
    total = 0
    for i in range(n):
        total += len(big_step(i))
    return total


# ---------------------------------------------------------------------- helpers

def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def post_headers_only(url: str, path: str, length: int, headers: dict | None = None,
                      first: int = MB) -> int:
    """POST announcing ``length`` bytes, send only ``first`` of them, and read the status:
    a server that authenticates first answers before the body is complete."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.putrequest("POST", path)
    conn.putheader("Content-Length", str(length))
    conn.putheader("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    try:
        conn.send(b"x" * first)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed without reading the rest: what we check
    try:
        return conn.getresponse().status
    finally:
        conn.close()


def post_all(url: str, path: str, length: int) -> int:
    """POST ``length`` bytes without credentials, the whole body sent; the status."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    chunk = b"x" * MB
    conn.putrequest("POST", path)
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    sent = 0
    try:
        while sent < length:
            conn.send(chunk[: min(MB, length - sent)])
            sent += MB
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        return conn.getresponse().status
    finally:
        conn.close()


def secrets_in(text: str, *tokens: str) -> list[str]:
    return [t[:6] + "..." for t in tokens if t and t in text]


@pytest.fixture
def jupyter(tmp_path):
    s = Jupyter(tmp_path, tmp_path / "db" / "main.duckdb", "--ServerApp.log_level=DEBUG",
                env={"JUPYTERHUB_USER": OWNER})
    (tmp_path / "db").mkdir()
    s.start()
    yield s
    s.stop()


# ---------------------------------------------------------------------- 1. tokens in headers

def test_the_standalone_engine_refuses_a_token_in_the_url(engine):
    url, token = engine.client.url, engine.client.token
    assert http_call("GET", f"{url}durable/api/health?token={token}")[0] == 403
    status, out = http_call("GET", f"{url}durable/api/runs?token={token}")
    assert status == 403 and "never accepted in the URL" in out["error"]
    assert http_call("GET", f"{url}durable/api/health", token)[0] == 200
    assert http_call("GET", f"{url}durable/api/health", headers={
        "Authorization": f"Bearer {token}"})[0] == 200
    engine.stop()  # flush its log
    assert not secrets_in(engine.log.read_text(), token)


def test_the_standalone_events_socket_takes_the_header_or_a_first_message(engine):
    url, token = engine.client.url, engine.client.token
    ws_url = "ws" + url[4:] + "durable/api/events"

    async def scenario():
        by_header = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
            ws_url, headers={"Authorization": f"token {token}"}))
        assert json.loads(await by_header.read_message())["type"] == "hello"
        by_header.close()

        with pytest.raises(tornado.httpclient.HTTPClientError) as err:
            await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
                ws_url, headers={"Authorization": "token wrong"}))
        assert err.value.code == 403

        # a browser: no header; nothing is sent before its token message
        in_url = await tornado.websocket.websocket_connect(f"{ws_url}?token={token}")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(in_url.read_message(), 0.5)
        in_url.write_message(json.dumps({"token": "wrong"}))
        assert await in_url.read_message() is None
        assert in_url.close_code == 4403

        browser = await tornado.websocket.websocket_connect(ws_url)
        await browser.write_message(json.dumps({"token": token}))
        assert json.loads(await browser.read_message())["type"] == "hello"
        browser.close()

    asyncio.run(scenario())


def test_no_client_of_ours_puts_a_token_in_a_url():
    for path in [*(REPO / "labextension" / "src").glob("*.ts"),
                 *(REPO / "durable_nb" / "static").glob("*.js"),
                 *(REPO / "durable_nb").glob("*.py")]:
        text = path.read_text()
        assert "?token=" not in text and "token=${" not in text, path


def test_the_log_scrubber_hides_secret_parameters():
    assert scrub_uri("/a/b?token=abc&run_id=1&_xsrf=q") == (
        "/a/b?token=[secret]&run_id=1&_xsrf=[secret]")
    assert scrub_uri("/a/b") == "/a/b"


@pytest.mark.slow
def test_no_token_reaches_the_jupyter_servers_log(jupyter, tmp_path):
    kernel = jupyter.runtime()["token"]
    api = jupyter.api
    # what our clients do: the kernel token and the login token, in headers
    for token in (kernel, jupyter.token):
        client = dn.connect(url=jupyter.url, token=token)
        run = needs_ok.trigger("log")
        wait_for(lambda run=run: run.status == "WAITING", what="the approval")
        run.approve("ok")
        assert run.result(timeout=30)
        client.request("GET", "/runs")
    # what a user might type: tokens in the query string, refused without logging them
    for token in (kernel, jupyter.token):
        http_call("POST", f"{api}/runs?token={token}", body={})
        http_call("PUT", f"{api}/queues/q?token={token}", body={"concurrency_limit": 1})
        http_call("GET", f"{api}/runs?token={token}")

    async def ws():
        conn = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
            "ws" + api[4:] + "/events", headers={"Authorization": f"token {kernel}"}))
        await conn.read_message()
        conn.close()

    asyncio.run(ws())
    jupyter.stop()
    text = jupyter.log.read_text()
    assert "durable/api" in text  # the log does name the requests (DEBUG level)
    assert not secrets_in(text, kernel, jupyter.token)


# ---------------------------------------------------------------------- 2. auth before body

def test_the_standalone_engine_refuses_before_reading_the_body(engine):
    url = engine.client.url
    assert post_headers_only(url, "/durable/api/runs", 64 * MB) == 403
    before = rss(engine.pid)
    for _ in range(2):
        assert post_all(url, "/durable/api/runs", 64 * MB) == 403
    assert rss(engine.pid) - before < 16 * MB
    # an authenticated body over the limit is refused from its Content-Length
    headers = {"Authorization": f"token {engine.client.token}"}
    from durable_nb.server import api as _api

    assert post_headers_only(url, "/durable/api/runs", _api.MAX_BODY + 1, headers) == 413
    assert engine.client.request("GET", "/health")["pid"] == engine.pid


def test_the_unix_socket_refuses_before_reading_the_body(engine):
    path = engine.client.socket_path
    head = json.dumps({"method": "POST", "path": "/runs", "query": {},
                       "token": "wrong"}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(FRAME.pack(len(head), 64 * MB) + head)  # the body never comes
        status, n = FRAME.unpack(s.recv(FRAME.size, socket.MSG_WAITALL))
        assert status == 403
        assert b"wrong token" in s.recv(n, socket.MSG_WAITALL)
        assert s.recv(1) == b""  # then the connection is dropped


@pytest.mark.slow
def test_the_jupyter_host_refuses_before_reading_the_body(jupyter):
    path = "/durable/api/runs"
    assert post_headers_only(jupyter.url, path, 64 * MB) == 403
    before = rss(jupyter.pid)
    for _ in range(2):
        assert post_all(jupyter.url, path, 64 * MB) == 403
    assert rss(jupyter.pid) - before < 16 * MB
    kernel = jupyter.runtime()["token"]
    status, _ = http_call("GET", jupyter.api + "/health", kernel)
    assert status == 200


# ---------------------------------------------------------------------- 3. identity

@pytest.mark.slow
def test_every_way_in_records_the_same_server_identity(jupyter):
    """Login token (as scripts and Lab's ServerConnection send it), a cookie session with
    its XSRF token (a browser), the kernel token over HTTP and over the Unix socket, and
    a forged body "by": the approver is the server's owner every time."""
    kernel = jupyter.runtime()["token"]
    sock = jupyter.runtime()["socket"]
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(urllib.request.Request(jupyter.url + "api/status", headers={
        "Authorization": f"token {jupyter.token}"}), timeout=30).read()
    opener.open(jupyter.url + "login", timeout=30).read()
    xsrf = next(c.value for c in jar if c.name == "_xsrf")

    def by_cookie(run_id: str) -> dict:
        req = urllib.request.Request(
            f"{jupyter.api}/runs/{run_id}/approve", method="POST",
            data=json.dumps({"by": "mallory"}).encode(),
            headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"})
        with opener.open(req, timeout=30) as resp:
            return json.loads(resp.read())

    def by_token(token: str, socket_path: str | None = None):
        def approve(run_id: str) -> dict:
            c = dn.Client(jupyter.url, token, socket_path=socket_path)
            return c.request("POST", f"/runs/{run_id}/approve", {"by": "mallory"})
        return approve

    dn.connect(url=jupyter.url, token=kernel)
    ways = {"login token": by_token(jupyter.token), "cookie + xsrf": by_cookie,
            "kernel token": by_token(kernel), "kernel socket": by_token(kernel, sock)}
    for way, approve in ways.items():
        run = needs_ok.trigger(way)
        wait_for(lambda run=run: run.status == "WAITING", what="the approval")
        out = approve(run.id)
        assert out["outcome"] == "approved", way
        assert run.result(timeout=30) == OWNER, way
        waits = run.client.request("GET", f"/runs/{run.id}")["waits"]
        assert [w["resolved_by"] for w in waits] == [OWNER], way

    with pytest.raises(urllib.error.HTTPError) as err:  # the cookie alone cannot write
        opener.open(urllib.request.Request(
            f"{jupyter.api}/runs/x/approve", method="POST", data=b"{}"), timeout=30)
    assert err.value.code == 403


def test_the_standalone_engine_records_its_owner(engine):
    run = needs_ok.trigger("standalone")
    wait_for(lambda: run.status == "WAITING", what="the approval")
    assert engine.client.request("POST", f"/runs/{run.id}/approve",
                                 {"by": "mallory"})["outcome"] == "approved"
    assert run.result(timeout=30) == server_owner() != "mallory"


# ---------------------------------------------------------------------- 4. private files

def test_the_engine_log_is_private_from_its_first_byte(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    db = shared / "log.duckdb"
    old = os.umask(0o022)
    try:
        client = dn.connect(db=db)
    finally:
        os.umask(old)
    try:
        log = engine_log_file(db)
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
    finally:
        os.kill(client.health()["pid"], 15)
        wait_for(lambda: not runtime_file(db).exists(), what="the engine to stop")


def test_a_private_block_changes_only_its_own_threads_umask(tmp_path):
    stop = threading.Event()
    modes: list[int] = []

    def elsewhere():  # another thread of the process keeps the process's umask
        i = 0
        while not stop.is_set():
            p = tmp_path / f"other-{i}"
            p.write_text("x")
            modes.append(stat.S_IMODE(p.stat().st_mode))
            i += 1

    def mine():  # a thread of its own, as the engine's store threads are
        for i in range(50):
            with private_umask():
                (tmp_path / f"mine-{i}").write_text("x")
        call_private(lambda: (tmp_path / "called").write_text("x"))

    per_thread: list[bool] = []
    probe = threading.Thread(target=lambda: per_thread.append(private_thread()))
    probe.start()
    probe.join()
    old = os.umask(0o022)
    t = threading.Thread(target=elsewhere)
    t.start()
    try:
        wait_for(lambda: modes, what="the other thread")
        m = threading.Thread(target=mine)
        m.start()
        m.join()
    finally:
        stop.set()
        t.join()
        os.umask(old)
    assert {stat.S_IMODE((tmp_path / f"mine-{i}").stat().st_mode) for i in range(50)} == {0o600}
    assert stat.S_IMODE((tmp_path / "called").stat().st_mode) == 0o600
    if per_thread[0]:
        assert set(modes) == {0o644}  # per-thread umask: the other thread never changed


def _ours(db: Path) -> list[Path]:
    """Every file and folder durable_nb keeps for ``db``: beside it and in the runtime dir
    (files come and go while we look: a vanished one is skipped)."""
    rt = runtime_file(db)
    out: list[Path] = []

    def scan(folder: Path, prefix: str = "") -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for e in entries:
            if e.name.startswith(prefix):
                out.append(Path(e.path))
                if e.is_dir(follow_symlinks=False):
                    scan(Path(e.path))

    scan(db.parent, db.name)
    scan(rt.parent, rt.stem)
    return out


def _loose(paths: list[Path]) -> dict[str, str]:
    bad = {}
    for p in paths:
        try:
            mode = stat.S_IMODE(os.lstat(p).st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            bad[p.name] = oct(mode)
    return bad


@pytest.mark.slow
def test_every_file_of_the_jupyter_host_is_private_at_every_moment(tmp_path):
    """A database in a shared (0755) folder, a server under umask 022: the database, its
    WAL, the journal, blobs, runtime file, socket and log are never readable by others."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    db = shared / "modes.duckdb"
    old = os.umask(0o022)
    try:
        server = Jupyter(tmp_path, db, env={"JUPYTERHUB_USER": OWNER})
        seen: dict[str, str] = {}
        names: set[str] = set()
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                paths = _ours(db)
                names.update(p.name for p in paths)
                seen.update(_loose(paths))

        watcher = threading.Thread(target=poll)
        watcher.start()
        try:
            server.start()
            dn.connect(url=server.url, token=server.runtime()["token"])
            runs = [work.trigger(3) for _ in range(4)]
            for run in runs:
                assert run.result(timeout=120) == 3 * (MB + 1024)
        finally:
            server.stop()
            stop.set()
            watcher.join()
    finally:
        os.umask(old)
    assert {db.name, db.name + ".wal", db.name + ".journal"} <= names, names
    assert any(n.endswith(".sock") for n in names) and any(n.endswith(".json") for n in names)
    assert not seen, f"readable by others at some moment: {seen}"
