"""HTTP client of the engine, and how a script or kernel finds (or starts) one."""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from ._errors import ApiError, EngineUnavailable, PayloadTooLarge, RunNotFound, WaitConflict
from ._paths import engine_log_file, private_dir, resolve_db, runtime_file

START_TIMEOUT = 60.0
# Frames on the engine's Unix socket (see _localapi): two little-endian uint32.
FRAME = struct.Struct("<II")


def pid_alive(pid: object) -> bool:
    """Whether a process with this pid exists (a malformed pid is not alive)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Client:
    """Talks to one engine. Thread-safe: each thread keeps its own keep-alive connection."""

    def __init__(self, url: str, token: str | None, db: Path | None = None,
                 autostart: bool = True, socket_path: str | None = None):
        self.db = db
        self.autostart = autostart
        self._local = threading.local()
        self._registered: set[str] = set()
        self._point_at(url, token, socket_path)

    def _point_at(self, url: str, token: str | None, socket_path: str | None = None) -> None:
        """Use the engine at ``url``; through its Unix socket when it has one (faster)."""
        self.url = url if url.endswith("/") else url + "/"
        self.token = token
        self.socket_path = socket_path if socket_path and token else None
        parsed = urllib.parse.urlparse(self.url)
        self._host, self._port = parsed.hostname, parsed.port or 80
        self._base = parsed.path.rstrip("/") + "/durable/api"
        self._local = threading.local()
        self._health: dict | None = None

    def _rediscover(self) -> bool:
        """After the engine went away: follow the database to its new (or a fresh) engine."""
        if self.db is None:
            return False
        try:
            other = find_engine(self.db, start=self.autostart)
        except EngineUnavailable:
            return False
        self._point_at(other.url, other.token, other.socket_path)
        return True

    def __repr__(self) -> str:
        return f"<durable_nb.Client {self.url} db={self.db}>"

    def _conn(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._local.conn = conn
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

    def _http(self, method: str, path: str, data: bytes | None, timeout: float) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        conn = self._conn(timeout)
        conn.request(method, self._base + path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def _socket(self, method: str, path: str, query: dict, data: bytes | None,
                timeout: float) -> tuple[int, bytes]:
        """One request on the engine's Unix socket (see _localapi for the frames)."""
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(self.socket_path)
            except BaseException:
                sock.close()
                raise
            self._local.sock = sock
        sock.settimeout(timeout)
        head = json.dumps({"method": method, "path": path, "query": query,
                           "token": self.token}).encode()
        body = data or b""
        sock.sendall(FRAME.pack(len(head), len(body)) + head + body)
        status, n = FRAME.unpack(_recv_exact(sock, FRAME.size))
        return status, _recv_exact(sock, n)

    def request(self, method: str, path: str, body: dict | None = None,
                timeout: float = 60.0, query: dict | None = None) -> Any:
        """One API call; raises the matching durable_nb error on an error status."""
        query = {k: str(v) for k, v in (query or {}).items() if v is not None}
        data = json.dumps(body).encode() if body is not None else None
        for retry in range(3):
            try:
                if self.socket_path:
                    try:
                        status, raw = self._socket(method, path, query, data, timeout)
                    except (FileNotFoundError, ConnectionRefusedError):
                        # no socket (a proxying or older host): HTTP from now on
                        self._close()
                        self.socket_path = None
                        status, raw = self._http(method, _with_query(path, query), data, timeout)
                else:
                    status, raw = self._http(method, _with_query(path, query), data, timeout)
                break
            except (ConnectionRefusedError, FileNotFoundError) as exc:
                self._close()
                if retry < 2 and self._rediscover():
                    continue
                raise EngineUnavailable(
                    f"the durable_nb engine at {self.url} is not answering ({exc}); it may have "
                    "stopped. dn.connect() finds or starts one again."
                ) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                self._close()
                if retry == 0 or (retry == 1 and self._rediscover()):
                    continue
                raise EngineUnavailable(
                        f"the durable_nb engine at {self.url} closed the connection") from None
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
                        "too_large": PayloadTooLarge}.get(code)
            if exc_type is not None:
                raise exc_type(msg)
            raise ApiError(status, msg)
        return payload

    def health(self) -> dict:
        if self._health is None:
            self._health = self.request("GET", "/health", timeout=5)
        return self._health

    @property
    def max_payload(self) -> int:
        return int(self.health()["max_payload"])


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


def _start_engine(db: Path) -> Client:
    """Start a detached `durable-nb serve` for ``db`` and wait for its runtime file."""
    logf = engine_log_file(db)
    private_dir(logf.parent)
    with open(logf, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "durable_nb", "serve", "--db", str(db)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        info = _read_runtime(db)
        if info and pid_alive(info["pid"]):
            c = _healthy(info["url"], info["token"], db, info.get("socket"))
            if c:
                return c
        code = proc.poll()
        if code is not None and code != 0:
            info = _read_runtime(db)  # another engine may have won the race
            if info and pid_alive(info["pid"]):
                continue
            tail = logf.read_text(errors="replace").strip().splitlines()[-3:]
            raise EngineUnavailable(
                f"could not start an engine for {db}: " + " / ".join(tail)
                + f" (full log: {logf})")
        time.sleep(0.05)
    raise EngineUnavailable(f"the engine for {db} did not start within {START_TIMEOUT:.0f} s; "
                            f"see {logf}")


def _read_runtime(db: Path) -> dict | None:
    try:
        return json.loads(runtime_file(db).read_text())
    except (OSError, ValueError):
        return None


def find_engine(db: Path, start: bool = True) -> Client:
    """The engine owning ``db``: from its runtime file if alive, else a new one."""
    info = _read_runtime(db)
    if info and pid_alive(info["pid"]):
        c = _healthy(info["url"], info["token"], db, info.get("socket"))
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


def get_client() -> Client:
    """The default client, connecting on first use."""
    with _lock:
        return _default if _default is not None else connect()
