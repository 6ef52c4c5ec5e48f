"""HTTP client of the engine, and how a script or kernel finds (or starts) one."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..core import runtime as _runtime
from ..core.errors import (
    ApiError,
    EngineUnavailable,
    FormInvalid,
    PayloadTooLarge,
    RunNotFound,
    WaitConflict,
)
from ..core.paths import engine_log_file, private_dir, resolve_db
from ..core.runtime import FRAME, pid_alive
from ..core.serial import b64

START_TIMEOUT = 60.0
LOCKED_EXIT = 2  # `durable-nb serve`'s exit code when another process holds the database


CONNECT_PATIENCE = 5.0  # seconds a Unix-socket connect retries a full listen queue


@dataclass(frozen=True)
class Endpoint:
    """Where one engine answers; replaced as a whole, never changed in place, so that a
    thread in the middle of a request never sees half of an old engine and half of a new."""

    url: str
    token: str | None
    socket_path: str | None
    host: str
    port: int
    base: str

    @classmethod
    def of(cls, url: str, token: str | None, socket_path: str | None = None) -> Endpoint:
        url = url if url.endswith("/") else url + "/"
        parsed = urllib.parse.urlparse(url)
        return cls(url, token, socket_path if socket_path and token else None,
                   parsed.hostname or "127.0.0.1", parsed.port or 80,
                   parsed.path.rstrip("/") + "/" + _runtime.API_PREFIX)


class Client:
    """Talks to one engine. Thread-safe: each thread keeps its own keep-alive connection,
    and a client shared by threads follows its database to a new engine as one."""

    def __init__(self, url: str, token: str | None, db: Path | None = None,
                 autostart: bool = True, socket_path: str | None = None):
        self.db = db
        self.autostart = autostart
        self._local = threading.local()  # per thread: conn, sock, and the ep they belong to
        self._registered: set[str] = set()
        self._switch = threading.Lock()
        self._health: tuple[Endpoint, dict] | None = None
        self._ep = Endpoint.of(url, token, socket_path)

    @property
    def url(self) -> str:
        return self._ep.url

    @property
    def token(self) -> str | None:
        return self._ep.token

    @property
    def socket_path(self) -> str | None:
        return self._ep.socket_path

    @socket_path.setter
    def socket_path(self, path: str | None) -> None:
        ep = self._ep
        self._ep = Endpoint.of(ep.url, ep.token, path)

    def _point_at(self, url: str, token: str | None, socket_path: str | None = None) -> None:
        """Use the engine at ``url``; through its Unix socket when it has one (faster)."""
        self._ep = Endpoint.of(url, token, socket_path)

    def _rediscover(self, failed: Endpoint) -> bool:
        """After the engine at ``failed`` went away: follow the database to its new (or a
        fresh) engine. One thread looks; the others find the client already moved."""
        if self.db is None:
            return False
        with self._switch:
            now = self._ep
            if (now.url, now.token) != (failed.url, failed.token):
                return True  # another thread already moved the client
            try:
                other = find_engine(self.db, start=self.autostart)
            except EngineUnavailable:
                return False
            self._ep = other._ep
            return True

    def _drop_socket(self, failed: Endpoint) -> None:
        """The engine's socket is not there (a proxying or older host): HTTP from now on."""
        with self._switch:
            if self._ep is failed:
                self._ep = Endpoint.of(failed.url, failed.token, None)

    def __repr__(self) -> str:
        return f"<durable_nb.Client {self.url} db={self.db}>"

    def _mine(self, ep: Endpoint) -> threading.local:
        """This thread's connections, dropped first when they belong to another engine."""
        local = self._local
        if getattr(local, "ep", None) is not ep:
            self._close()
            local.ep = ep
        return local

    def _conn(self, ep: Endpoint, timeout: float) -> http.client.HTTPConnection:
        local = self._mine(ep)
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
            local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _close(self) -> None:
        for name in ("conn", "sock"):
            c = getattr(self._local, name, None)
            if c is not None:
                c.close()
                setattr(self._local, name, None)

    def _http(self, ep: Endpoint, method: str, path: str, data: bytes | None,
              timeout: float) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if ep.token:
            headers["Authorization"] = f"token {ep.token}"
        conn = self._conn(ep, timeout)
        conn.request(method, ep.base + path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def _socket(self, ep: Endpoint, method: str, path: str, query: dict, data: bytes | None,
                timeout: float) -> tuple[int, bytes]:
        """One request on the engine's Unix socket (see server.unix for the frames)."""
        local = self._mine(ep)
        sock = getattr(local, "sock", None)
        if sock is None:
            sock = _connect_unix(str(ep.socket_path), timeout)
            local.sock = sock
        sock.settimeout(timeout)
        head = json.dumps({"method": method, "path": path, "query": query,
                           "token": ep.token}).encode()
        body = data or b""
        sock.sendall(FRAME.pack(len(head), len(body)) + head + body)
        status, n = FRAME.unpack(_recv_exact(sock, FRAME.size))
        return status, _recv_exact(sock, n)

    def _once(self, ep: Endpoint, method: str, path: str, query: dict, data: bytes | None,
              timeout: float) -> tuple[int, bytes]:
        if ep.socket_path:
            try:
                return self._socket(ep, method, path, query, data, timeout)
            except (FileNotFoundError, ConnectionRefusedError):
                self._close()
                self._drop_socket(ep)
                ep = self._ep
                if ep.socket_path:  # another thread moved the client meanwhile
                    return self._socket(ep, method, path, query, data, timeout)
        return self._http(ep, method, _with_query(path, query), data, timeout)

    def request(self, method: str, path: str, body: dict | None = None,
                timeout: float = 60.0, query: dict | None = None) -> Any:
        """One API call; raises the matching durable_nb error on an error status."""
        query = {k: str(v) for k, v in (query or {}).items() if v is not None}
        data = json.dumps(body).encode() if body is not None else None
        for retry in range(3):
            ep = self._ep
            try:
                status, raw = self._once(ep, method, path, query, data, timeout)
                break
            except (ConnectionRefusedError, FileNotFoundError, BlockingIOError) as exc:
                self._close()
                if retry < 2 and self._rediscover(ep):
                    continue
                raise EngineUnavailable(
                    f"the durable_nb engine at {ep.url} is not answering ({exc}); it may have "
                    "stopped. dn.connect() finds or starts one again."
                ) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                self._close()
                if retry == 0 or (retry == 1 and self._rediscover(ep)):
                    continue
                raise EngineUnavailable(
                        f"the durable_nb engine at {ep.url} closed the connection") from None
            except BaseException:  # a timeout or Ctrl-C mid-answer: the stream is unusable
                self._close()
                raise
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = {"error": raw.decode(errors="replace")[:500]}
        if status >= 400:
            msg = (payload or {}).get("error") or f"HTTP {status}"
            code = (payload or {}).get("code")
            exc_type = {"run_not_found": RunNotFound, "conflict": WaitConflict,
                        "too_large": PayloadTooLarge}.get(code) if isinstance(code, str) else None
            if exc_type is not None:
                raise exc_type(msg)
            if code == "invalid_form" and isinstance(payload, dict):
                raise FormInvalid(msg, payload.get("field"), payload.get("rule"))
            raise ApiError(status, msg)
        return payload

    def health(self) -> dict:
        cached, ep = self._health, self._ep
        if cached is not None and cached[0] is ep:
            return cached[1]
        out = self.request("GET", "/health", timeout=5)
        self._health = (self._ep, out)
        return out

    @property
    def max_payload(self) -> int:
        return int(self.health()["max_payload"])

    def upload_module(self, module: ModuleType | str) -> dict:
        """Ship ``module`` (a module, or its name; a package goes whole) from this machine to
        every Dask worker of the engine, and to workers that join later, so that tasks
        using it run there. For an engine whose executor is Dask; returns how many workers
        took it (``"failed"`` names any that could not import it)."""
        from .modules import module_file

        filename, data = module_file(module)
        if len(data) > self.max_payload:
            raise PayloadTooLarge(f"{filename} is {len(data):,} bytes, over the engine's "
                                  f"limit of {self.max_payload:,} (max_payload_mb)")
        return self.request("POST", "/executor/modules",
                            {"filename": filename, "data_b64": b64(data)}, timeout=120)


def _connect_unix(path: str, timeout: float) -> socket.socket:
    """A connected Unix socket. A full listen queue (EAGAIN) is retried for up to
    ``CONNECT_PATIENCE`` s, a refusal (an engine restarting its socket) for a moment."""
    deadline = time.monotonic() + min(timeout, CONNECT_PATIENCE)
    refused_until = time.monotonic() + 0.2
    pause = 0.005
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            return sock
        except (BlockingIOError, ConnectionRefusedError) as exc:
            sock.close()
            now = time.monotonic()
            if now >= (deadline if isinstance(exc, BlockingIOError) else refused_until):
                raise
        except BaseException:
            sock.close()
            raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _with_query(path: str, query: dict) -> str:
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionResetError("the engine closed the connection")
        buf += chunk
    return bytes(buf)


_lock = threading.RLock()
_default: Client | None = None


def _healthy(url: str, token: str | None, db: Path | None,
             socket_path: str | None = None) -> Client | None:
    """A client for the engine at ``url`` if it answers, else None. The probe itself has no
    database to follow, so a dead engine never sends it looking for (or starting) another."""
    c = Client(url, token, None, socket_path=socket_path)
    try:
        c.health()
    except Exception:
        return None
    c.db = db
    return c


def _open_log(path: Path) -> int:
    """The engine log, appended to, private from its first byte (an older log is fixed)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd


@contextlib.contextmanager
def _start_lock(db: Path, deadline: float):
    """One process at a time starts the engine for ``db`` (an advisory lock beside its
    runtime file): the others wait, then find the engine it started."""
    path = _runtime.lock_path(db)
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EngineUnavailable(
                        f"another process has been starting the engine for {db} for over "
                        f"{START_TIMEOUT:.0f} s; see {engine_log_file(db)}") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _live_engine(db: Path) -> Client | None:
    """The engine named by ``db``'s runtime file, if it is alive and answers."""
    info = _runtime.read(db)
    if info and pid_alive(info["pid"]):
        return _healthy(info["url"], info["token"], db, info.get("socket"))
    return None


def _start_engine(db: Path) -> Client:
    """Start a detached `durable-nb serve` for ``db`` and wait for its runtime file. When
    another process holds the database meanwhile (an engine that is still starting), wait
    for that one's runtime file instead."""
    deadline = time.monotonic() + START_TIMEOUT
    with _start_lock(db, deadline):
        found = _live_engine(db)  # started by the process that held the lock before us
        if found:
            return found
        logf = engine_log_file(db)
        proc = _spawn(db, logf)
        while time.monotonic() < deadline:
            found = _live_engine(db)
            if found:
                return found
            code = proc.poll()
            if code == LOCKED_EXIT:
                owner = _locked_by(logf)
                if owner is not None and not pid_alive(owner):
                    proc = _spawn(db, logf)  # the holder went away: try again
            elif code is not None:
                tail = logf.read_text(errors="replace").strip().splitlines()[-3:]
                raise EngineUnavailable(
                    f"could not start an engine for {db}: " + " / ".join(tail)
                    + f" (full log: {logf})")
            time.sleep(0.05)
        owner = _locked_by(logf) if proc.poll() == LOCKED_EXIT else None
        held = f"; process {owner} holds the database" if owner else ""
        raise EngineUnavailable(f"the engine for {db} did not start within {START_TIMEOUT:.0f} s"
                                f"{held}; see {logf}")


def _spawn(db: Path, logf: Path) -> subprocess.Popen:
    fd = _open_log(logf)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "durable_nb", "serve", "--db", str(db)],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True,
        )
    finally:
        os.close(fd)


def _locked_by(logf: Path) -> int | None:
    """The pid an engine that could not lock the database named in the log, if any."""
    try:
        with open(logf, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    found = re.findall(r"already owned by process (\d+)", tail)
    return int(found[-1]) if found else None




def find_engine(db: Path, start: bool = True) -> Client:
    """The engine owning ``db``: from its runtime file if alive, else a new one."""
    c = _live_engine(db)
    if c:
        c.autostart = start  # and so does its rediscovery after an engine restart
        return c
    if not start:
        raise EngineUnavailable(f"no engine is running for {db}; start one with "
                                f"`durable-nb serve --db {db}`")
    return _start_engine(db)


def connect(url: str | None = None, token: str | None = None,
            db: str | os.PathLike | None = None, start: bool = True) -> Client:
    """Connect to an engine and make it the default for this process.

    ``url`` (with ``token``) names an engine directly. Otherwise ``db`` (or
    ``DURABLE_NB_URL`` / ``DURABLE_NB_DB``, or the embedded default database) selects the
    engine that owns that DuckDB file, starting one detached when none runs.
    """
    global _default
    with _lock:
        sock = None
        if url is None and db is None and os.environ.get("DURABLE_NB_URL"):
            url = os.environ["DURABLE_NB_URL"]
            token = token or os.environ.get("DURABLE_NB_TOKEN")
            sock = os.environ.get("DURABLE_NB_SOCKET")
        if url is not None:
            client = Client(url, token, None, socket_path=sock)
            client.health()
        else:
            client = find_engine(resolve_db(db), start=start)
        _default = client
        return client


def use_client(client: Client | None) -> Client | None:
    """Make ``client`` this process's default (None: connect again on next use); returns
    the previous default. ``durable_nb.testing`` points the API at its engine this way."""
    global _default
    with _lock:
        previous, _default = _default, client
        return previous


def get_client() -> Client:
    """The default client, connecting on first use."""
    with _lock:
        return _default if _default is not None else connect()
