"""Worker process: executes attempts sent by the engine, one at a time.

Started by the engine as ``python -m durable_nb.worker.main FD`` with one end of a socket
pair. It dies with the engine (PR_SET_PDEATHSIG on Linux, and a parent watch), so an
engine restart never races with stale workers.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import io
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core import serial as _serial
from ..core.messages import AttemptEnd, RunAttempt
from ..core.protocol import SyncChannel
from . import context as _context
from . import display as _display
from . import tqdm_feed


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


class _LogStream(io.TextIOBase):
    """Sends each line the user prints to the engine's log table. A segment ended by "\\r"
    (a line redrawn in place: tqdm, ``print(..., end="\\r")``) is a progress bar instead,
    one display record updated in place (``display.Progress``) until a newline ends it."""

    encoding = "utf-8"  # what is written is text; tqdm draws its bar in Unicode blocks

    def __init__(self, channel_getter: Callable[[], _context.RunContext | None], stream: str):
        self._get = channel_getter
        self._stream = stream
        self._buf = ""
        self._after_cr = False  # the text in _buf follows a "\\r": it redraws the bar
        self._lock = threading.RLock()
        self.progress = _display.Progress(stream, self._send_record, self._lock)

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        with self._lock:
            self._buf += s
            if "\n" in s or "\r" in s:
                self._split()
        return len(s)

    def _split(self) -> None:
        *parts, self._buf = _LINE_ENDS.split(self._buf)
        lines: list[str] = []
        for text, end in zip(parts[::2], parts[1::2], strict=True):
            if end == "\r":
                if text:
                    self._emit(lines)
                    lines = []
                    self.progress.update(text)
                self._after_cr = True
                continue
            if self.progress.active:  # the newline ends the bar; the text is its last state
                if text:
                    self.progress.update(text)
                self.progress.end()
            else:
                lines.append(text)
            self._after_cr = False
        self._emit(lines)

    def flush(self) -> None:
        with self._lock:
            if self._buf and self._after_cr:
                self.progress.update(self._buf)
            elif self._buf:
                self._emit([self._buf])
            self._buf = ""

    def end_attempt(self) -> None:
        """Send what is buffered, and the final state of a bar still drawn."""
        with self._lock:
            self.flush()
            self.progress.end()
            self._after_cr = False

    def _emit(self, lines: list[str]) -> None:
        ctx = self._get()
        if ctx is not None and lines:
            ctx.send({"op": "log", "stream": self._stream, "lines": lines,
                      "at": _display.stamp()})

    def _send_record(self, record: dict) -> None:
        ctx = self._get()
        if ctx is not None:
            ctx.send(_display.log_message(record))  # type: ignore[arg-type]


_LINE_ENDS = re.compile(r"(\r\n|\r|\n)")


class Worker:
    def __init__(self, sock: socket.socket | SyncChannel, capture_output: bool = True,
                 where: str | None = None):
        """``sock``: the channel to the engine (or its socket). ``capture_output``: make
        ``sys.stdout``/``sys.stderr`` the run's logs (a worker process); workers in threads
        (in-process tests, a Dask worker's threads) route their thread's writes to
        ``self.stdout``/``self.stderr`` instead. ``where`` names the machine in errors about
        what it lacks (a Dask worker's address)."""
        self.channel = sock if isinstance(sock, SyncChannel) else SyncChannel(sock)
        self.where = where
        self.ctx: _context.RunContext | None = None
        self._paths: set[str] = set()
        self._functions: dict[str, Callable[..., Any]] = {}  # task hash -> function, loaded once
        self.stdout = _LogStream(lambda: self.ctx, "stdout")
        self.stderr = _LogStream(lambda: self.ctx, "stderr")
        if capture_output:
            sys.stdout, sys.stderr = self.stdout, self.stderr
            _display.OWN_PROCESS = True

    def serve(self) -> None:
        self.channel.send({"op": "hello", "pid": os.getpid()})
        while True:
            try:
                msg = self.channel.recv()
            except EOFError:
                return
            if "op" in msg and msg["op"] == "run":
                self.run_attempt(msg)

    def _extend_path(self, paths: list[str]) -> None:
        for p in paths:
            if p not in self._paths and p not in sys.path:
                sys.path.append(p)
            self._paths.add(p)

    def run_attempt(self, msg: RunAttempt) -> None:
        self._extend_path(msg.get("sys_path") or [])
        ctx = self.ctx = _context.RunContext(self.channel, msg)
        token = _context._current.set(ctx)
        tqdm_feed.install()  # tqdm bars of the run feed its progress
        reply: AttemptEnd
        try:
            func, args, kwargs = self._load(msg)
            fn = getattr(func, "__wrapped_task__", func)
            if inspect.iscoroutinefunction(fn):
                result = asyncio.run(fn(*args, **kwargs))
            else:
                result = fn(*args, **kwargs)
            ctx.replay.finish()  # a step that stood where a recorded one was expected
            out = _serial.dumps(
                result, f"return value of task '{msg['task_id']}'", ctx.max_payload
            )
            reply = {"op": "done", "output": out}
        except _context.Suspend:
            reply = {"op": "suspended"}
        except BaseException as exc:  # the user's error, reported with its traceback
            failure = ctx.replay.error or exc  # a divergence the code caught comes first
            reply = {"op": "failed", "error": _context.error_info(failure, with_exception=True)}
        finally:
            ctx.resources.close()  # dn.resource: made again by the next attempt
            self.stdout.end_attempt()
            self.stderr.end_attempt()
            ctx.reports.flush()  # the last progress value, before the attempt's end
            _context._current.reset(token)
            self.ctx = None
        reply["aid"] = ctx.aid
        self.channel.send(reply)


    def _load(self, msg: RunAttempt) -> tuple[Callable[..., Any], tuple, dict]:
        """The task's function (unpickled once per code version) and its arguments. A
        module the code names that this machine lacks is an error that names both."""
        try:
            func = self._functions.get(msg["task_hash"])
            if func is None:
                func = self._functions[msg["task_hash"]] = _serial.loads(msg["code"])
            args, kwargs = _serial.loads(msg["payload"])
        except ModuleNotFoundError as exc:
            if self.where is None:
                raise
            raise MissingModule(exc.name or str(exc), msg["task_id"], self.where) from exc
        return func, args, kwargs


class MissingModule(ModuleNotFoundError):
    """A module the task's code or arguments refer to is not importable where it runs."""

    def __init__(self, module: str, task_id: str, where: str):
        super().__init__(
            f"module '{module}' is not importable on Dask worker {where}, so task "
            f"'{task_id}' cannot be loaded there. Install it on the Dask workers, or ship "
            f"it from a machine that has it: dn.connect(...).upload_module({module!r}).",
            name=module)


def main() -> None:
    _die_with_parent()
    fd = int(sys.argv[1])
    sock = socket.socket(fileno=fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    Worker(sock).serve()
    os._exit(0)


if __name__ == "__main__":
    main()
