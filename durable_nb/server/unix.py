"""The engine's API over a Unix socket, for clients on the same machine.

Same routes and answers as the HTTP API (``server.api.dispatch``), without HTTP: a request is
``FRAME`` (header length, body length), a JSON header ``{"method", "path", "query",
"token"}`` and the JSON body; the answer is ``FRAME`` (status, body length) and the JSON
body. A step of a script or kernel that triggers runs costs a fraction of an HTTP round
trip this way. The socket is 0600 in a private folder and every request carries the
engine's token; the HTTP API stays for browsers, proxies and other hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import tempfile
import urllib.parse
from pathlib import Path

from ..core import runtime as _runtime
from ..core.auth import same_token
from ..core.private import call_private
from ..core.runtime import FRAME, pid_alive
from ..engine.engine import Engine
from . import api as _api

# Longest path a Unix socket address holds everywhere we run (104 bytes with the final NUL
# on macOS, 108 on Linux).
MAX_SOCKET_PATH = 103
MAX_HEADER = 1 << 20
# Pending connections the socket queues (the kernel caps it at net.core.somaxconn): many
# clients connecting at once wait here rather than being refused.
BACKLOG = 4096


def socket_path(db: Path) -> tuple[Path, Path | None]:
    """Where this process serves the engine for ``db``: next to its runtime file, named
    with the pid (another process's socket for the same database is never mistaken for
    ours), or, when that path is too long for a socket address, in a new private
    temporary folder (returned second, to remove on close). Sockets left by dead
    processes are removed."""
    rt = _runtime.path(db)
    prefix = rt.stem + "-"
    for old in rt.parent.glob(prefix + "*.sock"):
        pid = old.stem[len(prefix):]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                old.unlink()
    near = rt.with_name(f"{prefix}{os.getpid()}.sock")
    if len(os.fsencode(near)) <= MAX_SOCKET_PATH:
        return near, None
    folder = Path(tempfile.mkdtemp(prefix="durable-nb-"))
    return folder / "engine.sock", folder


def _bind(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
    except BaseException:
        sock.close()
        raise
    return sock


class LocalServer:
    """Serves an engine's API on a Unix socket from ``start`` until ``close``; the path is
    chosen at once, so that it can be handed out before the engine runs."""

    def __init__(self, token: str, db: Path, user: str | None = None):
        self.engine: Engine | None = None
        self.token = token.encode()
        self.user = user
        self.path, self._folder = socket_path(db)
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def start(self, engine: Engine) -> Path:
        self.engine = engine
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket left by an engine that was killed
        sock = call_private(_bind, path)  # 0600 from the start, no other thread affected
        try:
            self._server = await asyncio.start_unix_server(self._serve, sock=sock,
                                                           limit=2 ** 26, backlog=BACKLOG)
        except BaseException:
            sock.close()
            raise
        return path

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            self._server = None
        with contextlib.suppress(OSError):
            self.path.unlink()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        engine = self.engine
        if engine is None:  # start() sets it before the socket listens
            raise RuntimeError("the local socket serves no engine: call start(engine) first")
        self._conns.add(writer)
        try:
            while True:
                hlen, blen = FRAME.unpack(await reader.readexactly(FRAME.size))
                if hlen > MAX_HEADER or blen > _api.MAX_BODY:
                    break  # not our client: drop the connection
                req, refusal = self._authenticate(await reader.readexactly(hlen))
                if refusal is not None:
                    # answered before reading the body, then dropped: its bytes are never kept
                    await self._reply(writer, *refusal)
                    break
                body = await reader.readexactly(blen) if blen else b""
                # the path decoded, as the HTTP hosts (tornado) hand it to dispatch
                path = urllib.parse.unquote(req["path"])
                await self._reply(writer, *await _api.dispatch(
                    engine, req["method"], path, req["query"], body, user=self.user))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._conns.discard(writer)
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, obj: object) -> None:
        out = json.dumps(obj).encode()
        writer.write(FRAME.pack(status, len(out)) + out)
        await writer.drain()

    def _authenticate(self, head: bytes) -> tuple[dict, tuple[int, object] | None]:
        """The request's header frame, checked before its body is read: (request, None), or
        (_, the refusal to answer)."""
        try:
            req = json.loads(head)
            out = {"method": str(req["method"]), "path": str(req["path"]),
                   "query": {str(k): str(v) for k, v in (req.get("query") or {}).items()}}
            token = str(req.get("token") or "").encode()
        except (ValueError, KeyError, TypeError, AttributeError):
            return {}, (400, {"error": "malformed request on the engine's socket",
                              "code": "bad_request"})
        if not same_token(token, self.token):
            return {}, (403, {"error": "missing or wrong token (it is in the engine's runtime "
                                       "file)", "code": "forbidden"})
        return out, None
