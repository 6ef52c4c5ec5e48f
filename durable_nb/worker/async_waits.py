"""Awaitable durable waits (``dn.approval_async``, ``dn.wait_for_event_async``,
``dn.sleep_async``) on the event loop of an async task or a ``%%durable`` cell.

Each call registers its wait with the engine at once (its own key, as the blocking forms
have) and returns an asyncio Future, so waits compose with ``asyncio.gather`` and
``asyncio.wait``. The engine sends each resolution when it happens. A resolution is
handed to its future only when the loop has nothing else ready, one at a time, in the
order the engine first delivered them (their ``seq``): ``asyncio.wait(...,
FIRST_COMPLETED)`` sees one winner, and a replay, which starts with every resolution
recorded, hands them over in the same order and so sees the same one.

When the loop would block with nothing to wait for but durable waits (no timer, no
other file descriptor, no executor job), the worker tells the engine which ones are
pending (``waits_idle``); after the grace period the engine asks it to suspend, the
attempt unwinds and the run waits without a worker until one of them resolves. The loop
hooks into the selector of asyncio's default (selector) event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..core import serial as _serial
from ..core.errors import DurableError
from ..core.messages import EngineMessage, Resolution, Resolved, WaitFor
from ..core.serial import clean_text
from . import context as _context

# kinds of the awaitable waits: recorded resolutions of other kinds (retry delays, child
# runs) never hold the hand-over order
ASYNC_KINDS = ("approval", "event", "sleep")

Convert = Callable[[Resolution], Any]  # a resolution -> the value the future gets


@dataclass
class _Pending:
    future: asyncio.Future
    convert: Convert


def wait(ctx: _context.RunContext, kind: str, name: str, convert: Convert, data: Any = None,
         timeout: float | None = None, preview: Any = None,
         form: dict | None = None) -> asyncio.Future:
    """Register a durable wait of ``ctx``'s run and return the future of its value
    (``convert`` of its resolution). Called from code running on the loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise DurableError(
            f"dn.{_NAMES.get(kind, kind)}() returns an awaitable: call it in async code (an "
            "async def task, or a %%durable cell using await); in plain code use the "
            "blocking form, without _async") from None
    return manager(ctx, loop).wait(kind, name, convert, data, timeout, preview, form)


_NAMES = {"approval": "approval_async", "event": "wait_for_event_async",
          "sleep": "sleep_async"}


def manager(ctx: _context.RunContext, loop: asyncio.AbstractEventLoop) -> AsyncWaits:
    """The async waits of ``ctx``'s attempt on ``loop``: the one taking the attempt's
    messages (made, and hooked into the loop, at the first wait)."""
    found = getattr(ctx.on_message, "__self__", None)
    if isinstance(found, AsyncWaits) and not found.closed:
        if found.loop is loop:
            return found
        if found.loop.is_running():
            raise DurableError(
                "the awaitable waits of one run go on one event loop; this one is already "
                "used by another loop running in another thread")
        found.close()
    return AsyncWaits(ctx, loop)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still on ``loop`` (a suspended cell's statement), let them unwind,
    and close it, as ``asyncio.run`` does at its end."""
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


class AsyncWaits:
    """The awaitable waits of one attempt on one event loop."""

    def __init__(self, ctx: _context.RunContext, loop: asyncio.AbstractEventLoop):
        real = getattr(loop, "_selector", None)
        if real is None:
            raise DurableError(
                f"awaitable durable waits need asyncio's default event loop, not "
                f"{type(loop).__name__}; use the blocking forms (dn.approval, ...) there")
        self.ctx = ctx
        self.loop = loop
        self.thread = threading.get_ident()
        self.pending: dict[str, _Pending] = {}  # registered, not handed over yet
        self.queue: list[tuple[int, float, str]] = []  # (seq, at, key): a heap
        self.queued: set[str] = set()
        self.closed = False
        self.suspend_asked = False
        self.lost: BaseException | None = None  # the channel failed while reading it
        self.reported: tuple[str, ...] | None = None  # the idle keys last told
        self.jobs = 0  # executor jobs in flight (``run_in_executor``, ``to_thread``)
        for key in list(ctx.waits):
            self._push(key)
        self.fd = ctx.channel.sock.fileno()
        own = getattr(loop, "_ssock", None)  # the loop's self-pipe
        self.baseline = {self.fd} | ({own.fileno()} if own is not None else set(real.get_map()))
        self.selector = _Selector(real, self)
        loop._selector = self.selector  # type: ignore[attr-defined]
        original = loop.run_in_executor

        def run_in_executor(executor: Any, func: Callable[..., Any], *args: Any) -> Any:
            fut = original(executor, func, *args)
            self.jobs += 1
            fut.add_done_callback(self._job_done)
            return fut

        setattr(loop, "run_in_executor", run_in_executor)  # noqa: B010 (an instance's own)
        loop.add_reader(self.fd, self.drain)
        ctx.on_message = self.take

    # -- registering -------------------------------------------------------------------

    def wait(self, kind: str, name: str, convert: Convert, data: Any, timeout: float | None,
             preview: Any, form: dict | None) -> asyncio.Future:
        ctx = self.ctx
        key = ctx.next_key(f"{kind}:{name}")
        fut = self.loop.create_future()
        if self.closed:  # met while the attempt unwinds: it goes no further
            fut.set_exception(_context.Suspend())
            return fut
        self.pending[key] = _Pending(fut, convert)
        self.reported = None
        if key in ctx.waits:  # recorded: handed over in its turn
            self._push(key)
            return fut
        blob = None if data is None else _serial.dumps(
            data, f"data of {kind} '{name}'", ctx.max_payload)
        msg: WaitFor = {"op": "wait", "key": key, "kind": kind, "name": clean_text(name),
                        "data": blob, "preview": preview, "timeout": timeout, "target": None,
                        "mode": "async"}
        if form is not None:
            msg["form"] = form
        ctx.reports.flush()  # a progress value held back goes first
        ctx.send(msg)
        return fut

    def _push(self, key: str) -> None:
        res = self.ctx.waits.get(key)
        if res is None or key in self.queued or key.split(":", 1)[0] not in ASYNC_KINDS:
            return
        self.queued.add(key)
        heapq.heappush(self.queue, (int(res.get("seq") or 0), float(res.get("at") or 0), key))

    # -- messages ----------------------------------------------------------------------

    def take(self, msg: EngineMessage) -> None:
        """A message of the attempt no request asked for (from any thread)."""
        if threading.get_ident() != self.thread:
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.take, msg)
            return
        op = msg.get("op")
        if op == "resolved":
            resolved = cast(Resolved, msg)
            self.ctx.waits[resolved["key"]] = resolved["resolution"]
            self._push(resolved["key"])
        elif op == "suspend":
            self.suspend_asked = True

    def drain(self) -> None:
        """Read what the engine sent (the loop's reader callback, and before each select)."""
        if self.closed or self.lost is not None:
            return
        try:
            self.ctx.poll()
        except (EOFError, OSError) as exc:  # the engine is gone: stop reading the channel
            self.lost = exc
            self._unhook()

    # -- handing resolutions over ------------------------------------------------------

    def release(self, idle: bool) -> bool:
        """Hand the next resolution to its future; True when one was. The next in order
        may belong to a wait not met yet (a replay before that call): the ones behind it
        wait, unless the loop is idle (code that no longer makes the same calls)."""
        while self.queue:
            _, _, key = self.queue[0]
            if key in self.pending:
                heapq.heappop(self.queue)
                self._deliver(key)
                return True
            if not self.ctx.reached(key):
                break
            heapq.heappop(self.queue)  # met by a blocking wait, or handed over already
        if idle:
            ready = [e for e in self.queue if e[2] in self.pending]
            if ready:
                first = min(ready)
                self.queue.remove(first)
                heapq.heapify(self.queue)
                self._deliver(first[2])
                return True
        return False

    def _deliver(self, key: str) -> None:
        pending = self.pending.pop(key)
        fut = pending.future
        if fut.done():  # canceled by the code (the loser of a first-completed wait)
            return
        self.reported = None  # the code goes on: the next idle report is a new one
        try:
            fut.set_result(pending.convert(self.ctx.waits[key]))
        except Exception as exc:  # e.g. WaitTimeout of an event that did not come
            fut.set_exception(exc)

    # -- the loop's selector ---------------------------------------------------------

    def select(self, real: Any, timeout: float | None) -> list:
        """The loop's select: hand a resolution over whenever nothing else is ready,
        report the pending waits when the loop would block for nothing else, unwind the
        attempt when the engine asks."""
        if self.closed:
            return list(real.select(timeout))
        if timeout != 0:
            self.drain()
        if self.lost is not None:
            self.close()
            raise self.lost
        if self.suspend_asked:
            self.close()
            raise _context.Suspend()
        if timeout == 0:  # callbacks are ready: the loop has not settled yet
            return list(real.select(timeout))
        idle = timeout is None and self.jobs == 0 and set(real.get_map()) <= self.baseline
        if self.release(idle):
            return []
        if idle:
            self._report()
        return list(real.select(timeout))

    def _report(self) -> None:
        keys = tuple(sorted(k for k, p in self.pending.items() if not p.future.done()))
        if keys and keys != self.reported:
            self.reported = keys
            self.ctx.send({"op": "waits_idle", "keys": list(keys)})

    def _job_done(self, _: Any) -> None:
        self.jobs -= 1

    def _unhook(self) -> None:
        try:
            self.loop.remove_reader(self.fd)
        except (ValueError, OSError, RuntimeError):
            pass
        if self.ctx.on_message == self.take:
            self.ctx.on_message = None

    def close(self) -> None:
        """Stop taking part in the loop (the attempt unwinds, or another loop took over)."""
        if not self.closed:
            self.closed = True
            self._unhook()


class _Selector:
    """The loop's selector, with ``select`` going through ``AsyncWaits.select``."""

    def __init__(self, real: Any, waits: AsyncWaits):
        self.real = real
        self.waits = waits

    def select(self, timeout: float | None = None) -> list:
        return self.waits.select(self.real, timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
