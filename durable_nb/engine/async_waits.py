"""Awaitable waits (``dn.approval_async``, ``dn.wait_for_event_async``,
``dn.sleep_async``): registered by a worker without blocking, several at once.

A ``wait`` message with ``mode: "async"`` records the wait as the blocking form does, but
holds nothing: its resolution goes to the attempt whenever it happens
(``Waits.resolve``). When the attempt's event loop has nothing left to do but such waits,
the worker reports their keys (``waits_idle``); after the grace period, unless one of
them resolved meanwhile, the engine asks it to suspend. The run then waits without a
worker, and the first of those waits to resolve queues it again
(``Waits.still_waiting``, ``Waits.resolve``); the new attempt replays with every
resolution so far, numbered in the order attempts heard of them (``wait_order``).
"""

from __future__ import annotations

from typing import Any

from ..core.messages import SuspendRun
from .model import Run, aid
from .state import EngineState
from .waits import Waits


class AsyncWaits:
    """Handles the ``wait`` messages of workers (blocking or not) and ``waits_idle``."""

    def __init__(self, state: EngineState, waits: Waits):
        self.s = state
        self.waits = waits

    def meet(self, run: Run, worker: Any, msg: dict) -> None:
        """A ``wait`` message: a blocking one goes to ``Waits.meet``; an awaitable one is
        recorded (once) and its resolution sent as soon as there is one."""
        if msg.get("mode") != "async":
            self.waits.meet(run, worker, msg)
            return
        wait = self.waits.record(run, msg)
        run.async_waits.add(wait.key)
        if wait.resolution is not None:  # resolved since this attempt started
            self.waits.send_resolution(run, worker, wait)
        else:
            self.waits.try_resolve_now(run, wait)  # an event sent before, a past deadline

    def idle(self, run: Run, worker: Any, msg: dict) -> None:
        """``waits_idle``: the attempt's loop waits for these waits only. Suspend it after
        the grace period unless one of them resolves first."""
        keys = msg.get("keys")
        if not isinstance(keys, list):
            return
        waits = [run.waits[k] for k in keys if isinstance(k, str) and k in run.waits]
        if not waits or run.suspending:
            return
        if any(w.resolution is not None for w in waits):
            return  # its resolution is on its way to the worker, which goes on
        run.idle_waits = {w.key for w in waits}
        run.idle_epoch += 1
        epoch = run.idle_epoch
        s = self.s
        s.arm(run, s.now() + s.config.wait_grace, lambda: self.suspend(run, worker, epoch),
              attempt=True)

    def suspend(self, run: Run, worker: Any, epoch: int) -> None:
        """The grace period of idle report ``epoch`` is over: ask the worker to give the
        run up, unless it went on meanwhile."""
        if (run.worker is not worker or run.suspending or run.idle_epoch != epoch
                or not run.idle_waits):
            return
        if any(run.waits[k].resolution is not None for k in run.idle_waits):
            return
        run.suspending = True
        msg: SuspendRun = {"op": "suspend", "aid": aid(run), "key": min(run.idle_waits)}
        worker.send(msg)
