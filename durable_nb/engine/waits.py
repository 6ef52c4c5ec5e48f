"""Durable waits: sleeps, approvals, events, child runs and step retry delays.

A wait key has one row and one resolution for ever. A worker that meets a wait is held
for a grace period (a quick resolution continues in place), then suspended; the run
waits without a worker and is queued again when the wait resolves. A worker goes past a
wait only once its resolution is durable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from ..core import serial as _serial
from ..core.errors import WaitConflict
from ..core.messages import Resolution, Resolved, SuspendRun
from ..core.status import RunStatus, WaitOutcome
from ..store.records import Insert, Update
from . import wait_order
from .model import Run, Wait, aid
from .scheduler import Scheduler
from .state import EngineState

TIMED_KINDS = ("sleep", "retry")  # waits a deadline resolves as ELAPSED, not TIMED_OUT


class Waits:
    """Creates, arms and resolves the waits of runs."""

    def __init__(self, state: EngineState, scheduler: Scheduler):
        self.s = state
        self.scheduler = scheduler

    def meet(self, run: Run, worker: Any, msg: dict) -> None:
        """The worker's ``wait`` message: record the wait (once), then resolve it now, let
        the worker go on if it is resolved, or hold the worker for the grace period."""
        s = self.s
        key = msg["key"]
        now = s.now()
        wait = self.record(run, msg)
        if wait.resolution is not None:  # resolved since this attempt started: go on
            self.send_resolution(run, worker, wait)
            return
        run.current_wait = key
        self.try_resolve_now(run, wait)
        if wait.resolution is None:
            s.arm(run, now + s.config.wait_grace, lambda: self.suspend(run, worker, key),
                  attempt=True)

    def record(self, run: Run, msg: dict) -> Wait:
        """The wait a ``wait`` message names, recorded once (a later attempt meeting it
        again arms its deadline again, after a restart)."""
        wait = run.waits.get(msg["key"])
        if wait is not None:
            self.arm(run, wait)
            return wait
        return self._create(run, msg, self.s.now())

    def _create(self, run: Run, msg: dict, now: float) -> Wait:
        run.progress += 1
        timeout = msg.get("timeout")
        wait = Wait(msg["key"], msg["kind"], msg["name"], now,
                    now + timeout if timeout is not None else None, msg.get("target"),
                    form=msg.get("form"))
        run.waits[wait.key] = wait
        self.s.write([Insert("waits", {
            "run_id": run.id, "wait_key": wait.key, "kind": wait.kind, "name": wait.name,
            "data": msg.get("data"), "preview": json.dumps(msg.get("preview")),
            "target": json.dumps(wait.target) if wait.target else None,
            "created_at": now, "deadline": wait.deadline,
            "form": json.dumps(wait.form) if wait.form else None})])
        self.s.emit({"type": "wait", "run_id": run.id, "key": wait.key, "kind": wait.kind,
                     "name": wait.name, "state": "pending", "at": now})
        self.arm(run, wait)
        return wait

    def arm(self, run: Run, wait: Wait) -> None:
        """Arm the wait's deadline once (again after a restart)."""
        if wait.deadline is not None and wait.resolution is None and wait.timer is None:
            outcome = WaitOutcome.ELAPSED if wait.kind in TIMED_KINDS else WaitOutcome.TIMED_OUT
            wait.timer = self.s.arm(run, wait.deadline,
                                    lambda: self.resolve(run, wait, {"outcome": outcome}))

    def try_resolve_now(self, run: Run, wait: Wait) -> None:
        """Resolve ``wait`` if what it waits for already happened."""
        s = self.s
        if wait.kind == "event" and wait.name in s.events:
            self.resolve(run, wait, {"outcome": WaitOutcome.EVENT, "data": s.events[wait.name]})
        elif wait.kind == "child" and wait.target:
            if all(cid in s.child_results for cid in wait.target):
                self.resolve(run, wait, {"outcome": WaitOutcome.COMPLETED, "results": [
                    (cid, *s.child_results[cid]) for cid in wait.target]})
        elif (wait.kind in TIMED_KINDS and wait.deadline is not None
              and wait.deadline <= s.now()):
            self.resolve(run, wait, {"outcome": WaitOutcome.ELAPSED})

    def send_resolution(self, run: Run, worker: Any, wait: Wait) -> None:
        """Let the worker go on past ``wait`` once its resolution is durable (a worker
        acting on a decision a crash could still undo might take the other branch)."""
        attempt = aid(run)
        numbered = wait_order.stamp(run, wait)  # the order the attempts hear of them
        msg: Resolved = {"op": "resolved", "aid": attempt, "key": wait.key,
                         "resolution": cast(Resolution, wait.resolution)}

        def send() -> None:
            if run.worker is worker and aid(run) == attempt:
                worker.send(msg)

        self.s.write(numbered, send)

    def suspend(self, run: Run, worker: Any, key: str) -> None:
        """The grace period is over: ask the worker to give the run up."""
        wait = run.waits.get(key)
        if (run.worker is worker and wait is not None and wait.resolution is None
                and not run.suspending):
            run.suspending = True
            msg: SuspendRun = {"op": "suspend", "aid": aid(run), "key": key}
            worker.send(msg)

    def resolve(self, run: Run, wait: Wait, resolution: dict, by: str | None = None,
                then: Callable[[], None] | None = None) -> None:
        """Resolve a wait exactly once, and resume the run (in place or by re-queueing)."""
        if wait.resolution is not None:
            return
        s = self.s
        now = s.now()
        resolution = {**resolution, "at": now, "by": by}
        wait.resolution = resolution
        needed = run.current_wait == wait.key or wait.key in run.idle_waits
        live = run.worker is not None and not run.suspending
        if not live or needed or wait.key in run.async_waits:
            wait_order.number(run, wait)  # an attempt hears of it now, or the next one first
        if wait.timer is not None:
            wait.timer.cancel()
        s.write([
            Update("waits", {"run_id": run.id, "wait_key": wait.key}, {
                "resolved_at": now, "outcome": resolution["outcome"],
                "result": _serial.dumps(resolution, "resolution"),
                "comment": resolution.get("comment"), "resolved_by": by}),
            Insert("span_records", {
                "span_id": f"{run.id}/w/{wait.key}", "run_id": run.id, "parent_id": run.id,
                "kind": "wait" if wait.kind != "retry" else "retry_delay", "name": wait.name,
                "start_at": wait.created_at, "end_at": now, "status": resolution["outcome"],
                "attributes": json.dumps({"key": wait.key, "kind": wait.kind})}),
        ], then)
        s.emit({"type": "wait", "run_id": run.id, "key": wait.key, "kind": wait.kind,
                "name": wait.name, "state": resolution["outcome"], "by": by, "at": now})
        if live:
            if needed:  # the worker goes on: a grace timer of its idle report is void
                run.current_wait = None
                run.idle_waits = set()
                run.idle_epoch += 1
            if needed or wait.key in run.async_waits:
                self.send_resolution(run, run.worker, wait)
        elif needed and run.status == RunStatus.WAITING:
            run.current_wait = None
            run.idle_waits = set()
            s.set_status(run, RunStatus.QUEUED, f"{wait.kind} '{wait.name}' resolved")
            s.enqueue(run)
            self.scheduler.dispatch()

    def still_waiting(self, run: Run) -> list[Wait]:
        """The waits a run whose attempt gave it up waits for: none when one of them has
        resolved meanwhile (then it is queued again), or when it waited for nothing."""
        keys = set(run.idle_waits) | ({run.current_wait} if run.current_wait else set())
        waits = [run.waits[k] for k in sorted(keys) if k in run.waits]
        if not waits or any(w.resolution is not None for w in waits):
            run.current_wait = None
            run.idle_waits = set()
            return []
        return waits

    def send_event(self, key: str, data: bytes | None) -> int:
        """Record event ``key`` (once) and resolve the waits on it; returns how many."""
        s = self.s
        if key in s.events:
            raise WaitConflict(f"event '{key}' was already sent; each event key resolves once")
        s.events[key] = data
        s.write([Insert("events", {"key": key, "data": data, "sent_at": s.now()})])
        n = 0
        for run in list(s.runs.values()):
            for wait in list(run.waits.values()):
                if wait.kind == "event" and wait.name == key and wait.resolution is None:
                    self.resolve(run, wait, {"outcome": WaitOutcome.EVENT, "data": data})
                    n += 1
        return n

    def pending_approval(self, run: Run, name: str | None) -> Wait:
        """The approval of ``run`` a decision is for; WaitConflict when there is none."""
        approvals = [w for w in run.waits.values() if w.kind == "approval"
                     and (name is None or w.name == name)]
        pending = [w for w in approvals if w.resolution is None]
        if pending:
            return pending[0]
        if approvals:
            w = approvals[-1]
            r = w.resolution or {}
            raise WaitConflict(
                f"approval '{w.name}' of run {run.id} was already resolved "
                f"({r['outcome']}{' by ' + r['by'] if r.get('by') else ''}); "
                "a wait resolves exactly once")
        what = f"an approval named '{name}'" if name else "an approval"
        raise WaitConflict(f"run {run.id} is {run.status}, not waiting on {what}")
