"""One attempt as one Dask task: connect back to the engine, execute, stop with it.

The engine submits ``run`` (through ``core.remote.call``) with where to connect, the
attempt's slot and its token, and the certificate to trust. The task opens a TCP channel
(TLS when a certificate is given), proves itself with the token, receives the attempt and
executes it in this Dask worker thread with the same worker code and protocol as a local
worker process: each step is durable before the code goes on, and a wait that suspends
the run ends the task, which frees the Dask slot.

A task never outlives its engine's interest in it: when the channel closes (the engine
died, or it cancelled or killed the attempt), ``RemoteChannel`` stops the attempt: no step
starts after that (``SyncChannel.check``), and the code between steps is interrupted by
an exception raised into its thread. A task that finds the engine gone, or its token
spent (Dask ran it again after its worker was lost), returns at once doing nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import socket
import ssl
import threading
from collections.abc import Iterator

from ..core.protocol import FRAME_HEADER, ChannelLost, SyncChannel, keepalive
from ..worker import threadout
from ..worker.main import Worker

CONNECT_TIMEOUT = 30.0
_HANGUP = select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL


def run(address: tuple[str, int], slot: str, token: str, cert: str | None) -> str:
    """Execute the attempt of ``slot``; returns how it went (for Dask's records only: the
    engine learns everything through the channel)."""
    where = _worker_address()
    try:
        sock = connect(address, cert)
    except OSError as exc:
        return f"engine unreachable: {exc}"  # a task of an engine that is gone
    channel = RemoteChannel(sock)
    try:
        hello = json.dumps({"op": "hello", "slot": slot, "token": token, "pid": os.getpid(),
                            "worker": where, "host": socket.gethostname()}).encode()
        sock.sendall(FRAME_HEADER.pack(len(hello)) + hello)  # JSON: the engine unpickles
        # nothing from a peer before it proved itself
        msg = channel.recv()
        if msg.get("op") != "run":
            return "refused"
        worker = Worker(channel, capture_output=False, where=where)
        threadout.OUTPUT.acquire()  # once per thread, never released: cheap and idempotent
        threadout.OUTPUT.route(worker.stdout, worker.stderr)
        try:
            with channel.stops(threading.get_ident()):
                worker.run_attempt(msg)  # type: ignore[arg-type]
        finally:
            threadout.OUTPUT.route(None, None)
        return "ended"
    except (ChannelLost, OSError, EOFError):
        return "engine gone"
    finally:
        channel.close()


def connect(address: tuple[str, int], cert: str | None) -> socket.socket:
    """A TCP connection to the engine with keepalive on, wrapped in TLS that trusts
    exactly ``cert`` (PEM) when one is given."""
    sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT)
    keepalive(sock)
    if cert:
        ctx = ssl.create_default_context(cadata=cert)
        ctx.check_hostname = False  # the certificate itself is pinned: it is the only anchor
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        sock = ctx.wrap_socket(sock)
    sock.settimeout(None)
    return sock


class RemoteChannel(SyncChannel):
    """The attempt's end of a TCP channel, which notices when the engine's end is gone."""

    def __init__(self, sock: socket.socket):
        super().__init__(sock)
        self.lost = False
        self._poll = select.poll()  # the attempt's thread's; the watcher makes its own
        self._poll.register(sock.fileno(), _HANGUP)

    def check(self) -> None:
        if not self.lost and self._poll.poll(0):
            self.lost = True
        if self.lost:
            raise ChannelLost("the engine is gone or stopped this attempt: it ends here")

    @contextlib.contextmanager
    def stops(self, thread_id: int) -> Iterator[None]:
        """While inside, a hang-up raises ChannelLost in thread ``thread_id`` (between
        steps too); on leaving, nothing can be raised there any more."""
        lock, inside = threading.Lock(), [True]
        done = threading.Event()

        poll = select.poll()
        poll.register(self.sock.fileno(), _HANGUP)

        def watch() -> None:
            while not done.is_set():
                if poll.poll(200):
                    self.lost = True
                    with lock:
                        if inside[0]:
                            _raise_in(thread_id, ChannelLost)
                    return

        watcher = threading.Thread(target=watch, daemon=True, name="durable-engine-watch")
        watcher.start()
        try:
            yield
        finally:
            with lock:
                inside[0] = False
                _raise_in(thread_id, None)  # cancel one raised but not delivered yet
            done.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else ctypes.c_void_p(0))


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return socket.gethostname()
