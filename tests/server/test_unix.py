"""The engine's API on its Unix socket: what clients on the machine use by default."""

import json
import os
import socket
import stat

import pytest

import durable_nb as dn
from durable_nb.client.client import FRAME, Client, _recv_exact, find_engine, get_client
from durable_nb.core.paths import runtime_file
from durable_nb.server.unix import MAX_SOCKET_PATH, socket_path


@dn.task(id="localapi-add")
def add(a: int, b: int) -> int:
    return a + b


def _raw(path: str, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(FRAME.pack(len(head), len(body)) + head + body)
        status, n = FRAME.unpack(_recv_exact(s, FRAME.size))
        return status, json.loads(_recv_exact(s, n))


def test_the_runtime_file_names_a_private_socket_that_clients_use(engine):
    info = json.loads(runtime_file(engine.db).read_text())
    path = info["socket"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    client = find_engine(engine.db, start=False)
    assert client.socket_path == path
    dn.connect(db=engine.db, start=False)
    assert add.trigger(2, 3).result(timeout=30) == 5
    assert get_client().socket_path == path, "the socket stays in use after a run"


def test_the_socket_refuses_a_wrong_token_and_malformed_frames(engine):
    info = json.loads(runtime_file(engine.db).read_text())
    path = info["socket"]
    head = {"method": "GET", "path": "/health", "query": {}}
    status, body = _raw(path, json.dumps({**head, "token": "nope"}).encode())
    assert status == 403 and "token" in body["error"]
    status, body = _raw(path, json.dumps(head).encode())
    assert status == 403
    status, body = _raw(path, b"not json")
    assert status == 400 and body["code"] == "bad_request"
    status, body = _raw(path, json.dumps({**head, "token": info["token"]}).encode())
    assert status == 200 and body["ok"] is True
    status, body = _raw(path, json.dumps({"method": "GET", "path": "/runs/run_nope",
                                          "token": info["token"]}).encode())
    assert status == 404 and body["code"] == "run_not_found"
    with socket.socket(socket.AF_UNIX) as s:  # an absurd frame length: dropped, not read
        s.settimeout(10)
        s.connect(path)
        s.sendall(FRAME.pack(1 << 30, 0))
        assert s.recv(10) == b""
    assert find_engine(engine.db, start=False).health()["ok"] is True


def test_a_client_whose_socket_is_gone_falls_back_to_http(engine, tmp_path):
    info = json.loads(runtime_file(engine.db).read_text())
    client = Client(info["url"], info["token"], engine.db, autostart=False,
                    socket_path=str(tmp_path / "missing.sock"))
    assert client.request("GET", "/health")["ok"] is True
    assert client.socket_path is None


def test_the_socket_goes_away_with_its_engine(make_engine):
    e = make_engine(name="short-lived")
    path = json.loads(runtime_file(e.db).read_text())["socket"]
    assert os.path.exists(path)
    e.stop()
    assert not os.path.exists(path)


def test_a_runtime_folder_too_deep_for_a_socket_gets_a_private_temporary_one(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(deep))
    path, folder = socket_path(tmp_path / "x.duckdb")
    try:
        assert folder is not None and path.parent == folder
        assert len(os.fsencode(path)) <= MAX_SOCKET_PATH
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    finally:
        os.rmdir(folder)


def test_sockets_of_dead_engines_are_cleared(tmp_path):
    db = tmp_path / "y.duckdb"
    rt = runtime_file(db)
    rt.parent.mkdir(parents=True, exist_ok=True)
    dead = rt.with_name(f"{rt.stem}-999999999.sock")
    dead.touch()
    path, folder = socket_path(db)
    assert not dead.exists()
    assert folder is None and str(os.getpid()) in path.name


@pytest.mark.parametrize("method", ["socket", "http"])
def test_both_transports_give_the_same_answers(engine, method):
    info = json.loads(runtime_file(engine.db).read_text())
    client = Client(info["url"], info["token"], engine.db, autostart=False,
                    socket_path=info["socket"] if method == "socket" else None)
    with pytest.raises(dn.RunNotFound):
        client.request("GET", "/runs/run_nope")
    with pytest.raises(dn.ApiError) as err:
        client.request("POST", "/runs", {"task_hash": "0" * 64, "payload_b64": ""})
    assert err.value.status in (409, 422)
    runs = client.request("GET", "/runs", query={"limit": 5, "status": None})
    assert isinstance(runs["runs"], list)
