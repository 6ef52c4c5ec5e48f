"""A running engine as other processes find it: its runtime file, its process, its URLs.

The engine that owns a database (``durable-nb serve``, or a Jupyter server hosting it)
writes a runtime file naming its URL, token, pid and Unix socket; clients, proxying hosts,
``durable-nb stop`` and ``durable-nb doctor`` read it. The file is 0600 from its first
byte (it holds the token), replaced atomically (a reader sees the old file or the new one,
never half of one), and removed at shutdown only by the engine it names.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import urllib.parse
from pathlib import Path
from typing import TypedDict

from .auth import same_token
from .paths import runtime_file, write_private

API_PREFIX = "durable/api"  # the REST API's root below a server's base URL
EVENTS_PATH = "/events"  # the events WebSocket, below API_PREFIX
# Frames on the engine's Unix socket (server.unix): two little-endian uint32.
FRAME = struct.Struct("<II")


class RuntimeInfo(TypedDict, total=False):
    """What a runtime file says; ``url``, ``token`` and ``pid`` are always there."""

    url: str
    token: str
    pid: int
    db: str
    started_at: float
    socket: str
    host: str  # "jupyter-server" when a Jupyter server hosts the engine


def path(db: Path) -> Path:
    """The runtime file of the engine owning ``db``."""
    return runtime_file(db)


def lock_path(db: Path) -> Path:
    """The lock beside the runtime file under which clients start an engine for ``db``."""
    return runtime_file(db).with_suffix(".lock")


def valid(info: object) -> bool:
    """Whether ``info`` has what a reader relies on: a url string, a token, an int pid."""
    return (isinstance(info, dict) and isinstance(info.get("url"), str)
            and isinstance(info.get("token"), str) and bool(info["token"])
            and type(info.get("pid")) is int)


def read(db: Path) -> RuntimeInfo | None:
    """The runtime file of ``db``'s engine; None when there is none or it is malformed."""
    try:
        info = json.loads(runtime_file(db).read_text())
    except (OSError, ValueError):
        return None
    return info if valid(info) else None


def write(db: Path, info: RuntimeInfo) -> Path:
    """Publish ``info`` as ``db``'s runtime file: private from its first byte, atomic."""
    if not valid(info):
        raise ValueError("a runtime file needs a url string, a token and an int pid")
    rt = runtime_file(db)
    write_private(rt, json.dumps(info))
    return rt


def remove(db: Path, token: str, pid: int | None = None) -> bool:
    """Remove ``db``'s runtime file if it still names this engine (``pid``, by default this
    process, and ``token``): an engine that took the database over meanwhile keeps its own.
    True when removed."""
    pid = os.getpid() if pid is None else pid
    rt = runtime_file(db)
    try:
        with open(rt, "rb") as f:
            info = json.loads(f.read())
            ours = os.fstat(f.fileno())
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict):
        return False
    given = info.get("token")
    if not (info.get("pid") == pid and isinstance(given, str) and same_token(given, token)):
        return False
    with contextlib.suppress(OSError):
        now = os.stat(rt)
        if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino):  # not replaced meanwhile
            rt.unlink()
            return True
    return False


def pid_alive(pid: object) -> bool:
    """Whether a process with this pid exists (a malformed pid is not alive)."""
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def events_url(base_url: str, run_id: str | None = None) -> str:
    """The events WebSocket of the server at ``base_url`` (http -> ws, https -> wss), for
    one run or (``run_id`` None) all runs. Never carries a token: that goes in a header."""
    parts = urllib.parse.urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    where = parts.path.rstrip("/") + "/" + API_PREFIX + EVENTS_PATH
    query = urllib.parse.urlencode({"run_id": run_id}) if run_id else ""
    return urllib.parse.urlunsplit((scheme, parts.netloc, where, query, ""))
