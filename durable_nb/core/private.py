"""Files private from their first byte, created by code we do not control (DuckDB).

DuckDB creates ``<db>`` and ``<db>.wal`` with mode 0666 minus the umask, and deletes the
WAL at every checkpoint and creates it again at the next write, so neither pre-creating
it nor a chmod afterwards closes the window in which it is readable by others. The umask
is what decides, but it is shared by the whole process: a Jupyter server's notebooks must
keep theirs. On Linux a thread can have its own umask (``unshare(CLONE_FS)`` gives it a
private copy of the process's umask and working folder), so the threads that write
through DuckDB run with umask 077 and nothing else in the process changes.

Where that is not possible (another OS, or a sandbox that forbids ``unshare``) a block
sets the process's umask for its duration, and a thread that must stay private for
good reports False so that the caller can fall back to chmod after the fact.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

CLONE_FS = 0x00000200
PRIVATE_UMASK = 0o077

_state = threading.local()
_process_lock = threading.Lock()
T = TypeVar("T")


def _unshare_fs() -> bool:
    """Give the calling thread its own umask (Linux); True when it has one."""
    if getattr(_state, "own_fs", None) is not None:
        return _state.own_fs
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            ok = libc.unshare(CLONE_FS) == 0
        except (OSError, AttributeError):
            ok = False
    _state.own_fs = ok
    return ok


def private_thread() -> bool:
    """Make every file the calling thread (and threads it starts later) creates private,
    for the rest of its life. False when this platform cannot do it per thread."""
    if not _unshare_fs():
        return False
    os.umask(PRIVATE_UMASK)
    return True


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files created by the calling thread inside the block are private. Per thread where
    possible; else the process's umask is 077 for the block (keep it short)."""
    if _unshare_fs():
        old = os.umask(PRIVATE_UMASK)
        try:
            yield
        finally:
            os.umask(old)
        return
    with _process_lock:
        old = os.umask(PRIVATE_UMASK)
        try:
            yield
        finally:
            os.umask(old)


def call_private(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a short-lived thread of its own under `private_umask`, so that
    whatever it creates is private and no other thread is affected; returns its result."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            with private_umask():
                out["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the caller
            out["error"] = exc

    t = threading.Thread(target=run, name="durable-private")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]  # run() sets it whenever it sets no error


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the entries of ``folder`` durable (a new, renamed or deleted file's name)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
