"""The runtime file that names a running engine, whether a process lives, and the URL of the
events WebSocket: one module for all their readers and writers."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import durable_nb
from durable_nb.core import runtime as _runtime
from durable_nb.server import api as _api

PKG = Path(durable_nb.__file__).resolve().parent


def _info(**over) -> dict:
    info = {"url": "http://127.0.0.1:5/", "token": "t0ken", "pid": os.getpid(), "db": "x"}
    return {**info, **over}


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------------- write and read

def test_written_info_reads_back_from_a_private_file_with_no_leftovers(tmp_path):
    db = tmp_path / "a.duckdb"
    rt = _runtime.write(db, _info(socket="/s"))
    assert rt == _runtime.path(db) and _mode(rt) == 0o600
    assert _runtime.read(db) == _info(socket="/s")
    assert _runtime.lock_path(db) == rt.with_suffix(".lock")
    assert [p.name for p in rt.parent.glob(rt.name + "*")] == [rt.name], "no temporary file left"


def test_the_file_is_private_even_under_an_open_umask_and_replaces_an_open_one(tmp_path):
    db = tmp_path / "b.duckdb"
    rt = _runtime.path(db)
    rt.parent.mkdir(parents=True, exist_ok=True)
    rt.write_text("{}")
    os.chmod(rt, 0o644)  # e.g. written by an older release
    old = os.umask(0)
    try:
        _runtime.write(db, _info())
    finally:
        os.umask(old)
    assert _mode(rt) == 0o600 and _runtime.read(db)["token"] == "t0ken"


def test_a_reader_sees_the_old_file_or_the_new_one_never_half_of_one(tmp_path):
    db = tmp_path / "c.duckdb"
    _runtime.write(db, _info(token="first"))
    seen: list[object] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.append(_runtime.read(db))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(150):
            _runtime.write(db, _info(token=f"t{i}", pad="x" * 20000))
    finally:
        done.set()
        t.join()
    assert seen and all(s is not None for s in seen), "a reader met a missing or partial file"


@pytest.mark.parametrize("text", [
    "", "not json", "[]", "null",
    json.dumps(_info(url=None)), json.dumps(_info(token="")), json.dumps(_info(token=5)),
    json.dumps(_info(pid="12")), json.dumps(_info(pid=True)),
    json.dumps({"url": "http://127.0.0.1:5/", "token": "t"}),
])
def test_a_malformed_file_reads_as_no_engine(tmp_path, text):
    db = tmp_path / "d.duckdb"
    rt = _runtime.path(db)
    rt.parent.mkdir(parents=True, exist_ok=True)
    rt.write_text(text)
    assert _runtime.read(db) is None


def test_no_file_reads_as_no_engine_and_malformed_info_is_never_written(tmp_path):
    db = tmp_path / "e.duckdb"
    assert _runtime.read(db) is None
    with pytest.raises(ValueError, match="url string, a token and an int pid"):
        _runtime.write(db, _info(token=None))  # type: ignore[arg-type]
    assert not _runtime.path(db).exists()


# ---------------------------------------------------------------------- remove

def test_remove_takes_only_the_file_that_still_names_this_engine(tmp_path):
    db = tmp_path / "f.duckdb"
    assert _runtime.remove(db, "t0ken") is False  # no file
    _runtime.write(db, _info(token="theirs"))  # another engine took the database over
    assert _runtime.remove(db, "t0ken") is False and _runtime.read(db)["token"] == "theirs"
    _runtime.write(db, _info(pid=os.getpid() + 1))  # same token, another process
    assert _runtime.remove(db, "t0ken") is False and _runtime.path(db).exists()
    assert _runtime.remove(db, "t0ken", pid=os.getpid() + 1) is True
    _runtime.write(db, _info())
    assert _runtime.remove(db, "t0ken") is True and not _runtime.path(db).exists()


@pytest.mark.parametrize("text", ["not json", "[1]", json.dumps(_info(token=7))])
def test_remove_leaves_a_malformed_file_alone(tmp_path, text):
    db = tmp_path / "g.duckdb"
    rt = _runtime.path(db)
    rt.parent.mkdir(parents=True, exist_ok=True)
    rt.write_text(text)
    assert _runtime.remove(db, "t0ken") is False and rt.exists()


# ---------------------------------------------------------------------- processes

def test_pid_alive():
    assert _runtime.pid_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # exited and reaped: its pid names no process now
    assert not _runtime.pid_alive(proc.pid)
    for bad in (0, -1, None, "12", True, 1.5):
        assert not _runtime.pid_alive(bad)


# ---------------------------------------------------------------------- events URL

@pytest.mark.parametrize(("base", "run_id", "want"), [
    ("http://127.0.0.1:8888/", None, "ws://127.0.0.1:8888/durable/api/events"),
    ("http://127.0.0.1:8888", "run_1", "ws://127.0.0.1:8888/durable/api/events?run_id=run_1"),
    ("https://h.example:443/user/ann/", "r 1&x",
     "wss://h.example:443/user/ann/durable/api/events?run_id=r+1%26x"),
    ("http://[::1]:9/base", None, "ws://[::1]:9/base/durable/api/events"),
    ("http://127.0.0.1:5/?token=secret#frag", None, "ws://127.0.0.1:5/durable/api/events"),
])
def test_events_url(base, run_id, want):
    assert _runtime.events_url(base, run_id) == want


def test_the_events_path_is_the_one_the_api_serves():
    assert _runtime.API_PREFIX == _api.PREFIX and _runtime.EVENTS_PATH == _api.WS_PATH


def test_the_events_url_is_built_in_one_place():
    """No other module turns an http URL into a ws one (the JavaScript builds its own)."""
    ws_literal = re.compile(r"""["']wss?["']|["']wss?://|\^http""")
    others = [p.name for p in PKG.rglob("*.py")
              if p.relative_to(PKG).as_posix() != "core/runtime.py"
              and ws_literal.search(p.read_text())]
    assert others == []


def test_every_runtime_file_reader_and_writer_goes_through_the_module():
    direct = re.compile(r"runtime_file\(|write_private\(")
    others = [p.name for p in PKG.rglob("*.py")
              if p.relative_to(PKG).as_posix() not in ("core/runtime.py", "core/paths.py")
              and direct.search(p.read_text())]
    assert others == []
