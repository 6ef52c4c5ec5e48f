"""The standalone engine server (`durable-nb serve`): its runtime file, its token, one owner
per database, and a clean stop."""

import json
import os
import stat
import subprocess
import sys

from _support import http_call

from durable_nb.core.paths import runtime_file


def test_the_runtime_file_is_private_and_names_a_loopback_server(engine):
    rt = runtime_file(engine.db)
    assert stat.S_IMODE(rt.stat().st_mode) == 0o600
    info = json.loads(rt.read_text())
    assert info["pid"] == engine.pid and info["db"] == str(engine.db)
    assert info["url"].startswith("http://127.0.0.1:") and len(info["token"]) >= 32
    assert os.path.exists(info["socket"])


def test_every_route_needs_the_token(engine):
    url, token = engine.client.url + "durable/api", engine.client.token
    assert http_call("GET", url + "/health")[0] == 403
    assert http_call("GET", url + "/health", "wrong-" + token)[0] == 403
    status, out = http_call("GET", url + "/health", token)
    assert status == 200 and out["ok"] is True
    status, out = http_call("GET", url + "/runs/run_missing", token)
    assert status == 404 and out["code"] == "run_not_found"


def test_a_second_server_on_the_same_database_is_refused(engine):
    out = subprocess.run([sys.executable, "-m", "durable_nb", "serve", "--db", str(engine.db)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "error:" in out.stderr and "Traceback" not in out.stderr
    assert json.loads(runtime_file(engine.db).read_text())["pid"] == engine.pid  # untouched


def test_sigterm_stops_the_server_and_removes_its_runtime_file(engine):
    engine.stop()
    assert engine.proc.returncode == 0
    assert not runtime_file(engine.db).exists()
    assert "stopped" in engine.log.read_text()
