"""Standard streams that send each thread's writes where that thread says.

Attempts that run in a thread of a process they do not own (in-process test workers, a
Dask worker's threads) cannot replace ``sys.stdout`` for themselves alone: ``OUTPUT``
installs streams that look up the writing thread's own target, and every other thread
writes to the stream that was there before.
"""

from __future__ import annotations

import io
import sys
import threading
from typing import TextIO

Stream = TextIO | io.TextIOBase


class ByThread(io.TextIOBase):
    """A standard stream whose writes from a worker thread go to that thread's run log,
    and from any other thread to the stream it replaced."""

    def __init__(self, original: TextIO, local: threading.local, name: str):
        self.original = original
        self._local = local
        self._name = name

    def _target(self) -> Stream:
        return getattr(self._local, self._name, None) or self.original

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        return self._target().write(s)

    def flush(self) -> None:
        self._target().flush()


class ThreadOutput:
    """Installs ``ByThread`` streams while anything needs them (a count): worker threads of
    in-process tests, and attempts in the threads of a Dask worker, so that what a task
    prints reaches its run's log as in a worker process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._users = 0
        self._saved: tuple[TextIO, TextIO] | None = None

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._saved = (sys.stdout, sys.stderr)
                sys.stdout = ByThread(sys.stdout, self._local, "stdout")
                sys.stderr = ByThread(sys.stderr, self._local, "stderr")

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._saved is not None:
                sys.stdout, sys.stderr = self._saved
                self._saved = None

    def route(self, stdout: Stream | None, stderr: Stream | None) -> None:
        """Send this thread's writes to these streams (None: back to the originals)."""
        self._local.stdout, self._local.stderr = stdout, stderr


OUTPUT = ThreadOutput()
