"""Helpers shared by test modules and by the worker processes that import them.

Kept out of conftest.py so that `from _support import ...` is unambiguous next to the
browser tests' own conftest.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class EngineProcess:
    """A real `durable-nb serve` subprocess for one database file."""

    def __init__(self, db: Path, args: list[str]):
        self.db = db
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.log = db.with_suffix(".engine.log")

    def start(self, timeout: float = 30.0):
        import durable_nb as dn
        from durable_nb.core.paths import runtime_file

        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durable_nb", "serve", "--db", str(self.db), *self.args],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            )
        rt = runtime_file(self.db)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited: {self.log.read_text()[-2000:]}")
            try:
                info = json.loads(rt.read_text())
                if info["pid"] == self.proc.pid:
                    self.client = dn.connect(url=info["url"], token=info["token"])
                    self.client.socket_path = info.get("socket")  # as find_engine would
                    self.client.db = self.db
                    self.client.autostart = False
                    return self.client
            except (OSError, ValueError, dn.DurableError):
                pass
            time.sleep(0.05)
        raise RuntimeError("engine did not start in time")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the engine (its workers die with it)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc, 20)

    def restart(self):
        self.stop()
        return self.start()


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """`durable-nb ARGS` as a user runs it (``python -m durable_nb``), with ``env`` added."""
    return subprocess.run([sys.executable, "-m", "durable_nb", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def count(marks: Path, name: str) -> int:
    p = marks / name
    return p.stat().st_size if p.exists() else 0


def bump(marks: str | Path, name: str) -> int:
    """Record one execution of ``name``; returns how many there were, this one included."""
    p = Path(marks) / name
    with open(p, "a") as f:
        f.write("x")
    return p.stat().st_size


def most_at_once(intervals) -> int:
    """The largest number of (start, end) intervals that overlap at one instant: how many
    runs a queue let execute at once, from the attempts' recorded times."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = top = 0
    for _, step in edges:
        now += step
        top = max(top, now)
    return top


def wait_for(pred, timeout: float = 20.0, what: str = "condition", interval: float = 0.05):
    """Poll ``pred()`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def stop_process(proc, grace: float) -> None:
    """SIGTERM ``proc`` (a Popen or None), SIGKILL it if it is still there after ``grace``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(config_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a Jupyter server under test: no engine of ours inherited, its
    own config dir, and durable_nb enabled by the repository's jupyter-config/."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_NB_")}
    env.update(JUPYTER_CONFIG_DIR=str(config_dir),
               JUPYTER_CONFIG_PATH=str(REPO / "jupyter-config"), **extra)
    return env


def start_server(cmd: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool],
                 timeout: float, what: str) -> subprocess.Popen:
    """Start ``cmd`` with its output in ``log`` and wait until ``ready()`` (errors that
    mean "not listening yet" count as not ready); the log's tail explains a failure."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, ValueError):
            if ready():
                return proc
        time.sleep(0.1)
    stop_process(proc, 10)
    raise RuntimeError(f"{what} did not start in {timeout:.0f} s: {log.read_text()[-3000:]}")


def http_call(method: str, url: str, token: str | None = None, body: bytes | dict | None = None,
              headers: dict | None = None, timeout: float = 30) -> tuple[int, dict | None]:
    """One HTTP request (the token in the Authorization header); status and JSON answer."""
    import http.client
    import urllib.parse

    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"token {token}"
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=h)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, None


class Jupyter:
    """A `jupyter server` subprocess hosting durable_nb (enabled by the repository's
    jupyter-config/), with its log in ``dir/server.log``; ``env`` adds variables, ``ready``
    are the statuses of ``/health`` that count as started (503: the engine is elsewhere)."""

    def __init__(self, tmp: Path, db: Path, *args: str, env: dict | None = None,
                 name: str = "jupyter", base_url: str = "/", ready: tuple = (200,)):
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = db
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.token = "login-" + os.urandom(12).hex()
        self.port = free_port()
        self.base_url = base_url
        self.ready = ready
        self.url = f"http://127.0.0.1:{self.port}{base_url}"
        self.api = self.url + "durable/api"
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Jupyter:
        (self.dir / "cfg").mkdir(exist_ok=True)
        (self.dir / "root").mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={self.dir / 'root'}", f"--ServerApp.base_url={self.base_url}",
               f"--DurableApp.db_path={self.db}"]
        given = {a.split("=", 1)[0] for a in self.args}  # traitlets refuses a setting twice
        cmd += [a for a in ("--DurableApp.wait_grace=0.3", "--DurableApp.max_workers=2")
                if a.split("=", 1)[0] not in given]
        cmd += self.args
        # the login token from the environment: a command line is logged at DEBUG level
        env = jupyter_env(self.dir / "cfg", JUPYTER_TOKEN=self.token, **self.extra_env)
        self.proc = start_server(
            cmd, env, self.log, timeout=timeout, what="jupyter server",
            ready=lambda: http_call("GET", self.api + "/health", self.token)[0] in self.ready)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def runtime(self) -> dict:
        from durable_nb.core.paths import runtime_file

        return json.loads(runtime_file(self.db).read_text())

    def stop(self) -> int | None:
        stop_process(self.proc, 30)
        return self.proc.returncode if self.proc else None


class FakeEngineWorker:
    """A real worker process (`python -m durable_nb.worker.main`) on a socket pair whose
    other end the test drives as the engine would; ``chan`` is that end."""

    def __init__(self) -> None:
        from durable_nb.core.protocol import SyncChannel

        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "durable_nb.worker.main", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        ours.settimeout(60)
        self.sock = ours
        self.chan = SyncChannel(ours)
        hello = self.chan.recv()
        assert hello == {"op": "hello", "pid": self.proc.pid}, hello

    def run(self, fn, *args, run_id: str = "run_a", attempt: int = 1, **msg) -> None:
        """Send one attempt of ``fn(*args)`` (``fn``'s folder and tests/ on the worker's path,
        where it is imported from); ``msg`` adds or overrides fields of the message."""
        from durable_nb.core import serial

        self.chan.send({"op": "run", "run_id": run_id, "attempt": attempt,
                        "aid": f"{run_id}/{attempt}", "task_id": "t",
                        "task_hash": f"h-{fn.__module__}.{fn.__qualname__}",
                        "code": serial.dumps(fn, "code"),
                        "sys_path": [str(Path(inspect.getfile(fn)).parent), str(REPO / "tests")],
                        "payload": serial.dumps((args, {}), "payload"), "steps": {},
                        "step_failures": {}, "waits": {}, "max_payload": 1 << 20, **msg})

    def until(self, *ops: str) -> tuple[list[dict], dict]:
        """Messages received before the first one whose op is in ``ops``, and that one."""
        seen = []
        while True:
            msg = self.chan.recv()
            if msg.get("op") in ops:
                return seen, msg
            seen.append(msg)

    def close(self) -> None:
        self.sock.close()  # the worker exits at EOF
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def small_tmpfs(tmp_path: Path, size: str):
    """A tmpfs of ``size`` (e.g. "24m") mounted at ``tmp_path/disk`` while the block runs, for
    tests that fill a disk; skips the test unless it runs as root with `mount`."""
    import shutil

    import pytest

    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
