"""What workers tell the engine during an attempt, and what the engine records for it:
steps (completed, or failed with the try's retry delay), logs, cell checkpoints, child
runs, events, waits, and the attempt's end.

Every message names its attempt (``aid``); one from an attempt that already ended is
dropped. A request is answered only once what it reported is durable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..core import serial as _serial
from ..core.errors import DurableError, WaitConflict
from ..core.status import StepStatus
from ..store.records import Insert, InsertIgnore, Record, Update
from . import step_calls
from .async_waits import AsyncWaits
from .lifecycle import Lifecycle
from .model import Run, aid, reply
from .run_info import RunReports
from .scheduler import RunOptions, Scheduler
from .state import EngineState
from .waits import Waits


class WorkerMessages:
    """Handles each op a worker sends (``core.protocol``)."""

    def __init__(self, state: EngineState, scheduler: Scheduler, waits: Waits,
                 lifecycle: Lifecycle):
        self.s = state
        self.scheduler = scheduler
        self.waits = waits
        self.lifecycle = lifecycle
        self.reports = RunReports(state)  # dn.metadata and dn.progress
        self.async_waits = AsyncWaits(state, waits)  # awaitable waits, idle attempts
        lifecycle.on_finish.append(lambda run, status: self.reports.flush(run))
        self.handlers: dict[str, Callable[[Run, Any, dict], None]] = {
            "log": self.log, "step": self.step, "step_failed": self.step_failed,
            "checkpoint": self.checkpoint, "trigger": self.trigger,
            "send_event": self.send_event, "wait": self.async_waits.meet,
            "waits_idle": self.async_waits.idle,
            "metadata": self.reports.metadata, "progress": self.reports.progress,
            "done": lambda run, w, msg: lifecycle.done(run, w, msg["output"]),
            "failed": lambda run, w, msg: lifecycle.failed(run, w, msg["error"]),
            "suspended": lambda run, w, msg: lifecycle.suspended(run, w),
        }

    def receive(self, worker: Any, msg: dict) -> None:
        """A message from ``worker``: handle it if it belongs to its current attempt."""
        run = worker.run
        if run is None or msg.get("aid") != aid(run):
            return  # from an attempt that already ended: stale, dropped
        handler = self.handlers.get(msg["op"])
        if handler is None:
            reply(worker, msg, {"error": f"unknown op {msg['op']}"})
            return
        handler(run, worker, msg)
        if worker.run is None:  # the attempt ended: the worker is free
            self.reports.flush(run)  # its last progress, in the batch of its end
            self.scheduler.dispatch()

    def placed(self, worker: Any) -> None:
        """An attempt on Dask connected: record the Dask worker it runs on."""
        run = worker.run
        if run is None:
            return
        self.s.write([Update("attempts", {"run_id": run.id, "number": run.attempts},
                             {"worker": worker.address, "worker_pid": worker.pid})])
        self.s.emit({"type": "attempt", "run_id": run.id, "attempt": run.attempts,
                     "worker": worker.address, "at": self.s.now()})

    def log(self, run: Run, worker: Any, msg: dict) -> None:
        s = self.s
        s.write([Insert("logs", {"run_id": run.id, "seq": next(s.log_seq),
                                  "created_at": msg["at"], "stream": msg["stream"],
                                  "line": line})
                 for line in msg["lines"]])
        s.emit({"type": "log", "run_id": run.id, "stream": msg["stream"],
                "lines": msg["lines"], "at": msg["at"]})

    def step(self, run: Run, worker: Any, msg: dict) -> None:
        key = msg["key"]
        run.steps[key] = ("ok", msg["output"])
        step_calls.note(run, key, msg["start"], msg["end"], msg.get("args_hash"),
                        msg.get("args_preview"), True)
        run.progress += 1
        self.s.write([
            Insert("steps", {"run_id": run.id, "step_key": key, "name": msg["name"],
                              "attempt": msg["attempt"], "generation": run.generation,
                              "status": StepStatus.COMPLETED, "started_at": msg["start"],
                              "ended_at": msg["end"], "output": msg["output"],
                              "run_attempt": run.attempts, **_call(msg, True)}),
        ], lambda: reply(worker, msg, {"ok": True}))
        self.s.emit({"type": "step", "run_id": run.id, "key": key, "name": msg["name"],
                     "status": StepStatus.COMPLETED, "attempt": msg["attempt"],
                     "at": msg["end"]})

    def step_failed(self, run: Run, worker: Any, msg: dict) -> None:
        key, err = msg["key"], msg["error"]
        status = StepStatus.ERRORED if msg["final"] else StepStatus.FAILED
        run.progress += 1
        if msg["final"]:
            run.steps[key] = ("err", msg["exc"])
        else:
            run.step_failures[key] = msg["attempt"]
        step_calls.note(run, key, msg["start"], msg["end"], msg.get("args_hash"),
                        msg.get("args_preview"), msg["final"])
        self.s.write([
            Insert("steps", {"run_id": run.id, "step_key": key, "name": msg["name"],
                              "attempt": msg["attempt"], "generation": run.generation,
                              "status": status, "started_at": msg["start"],
                              "ended_at": msg["end"], "output": msg["exc"],
                              "error_type": err["type"], "error_message": err["message"],
                              "traceback": err["traceback"], "run_attempt": run.attempts,
                              "retry_delay": msg["delay"], **_call(msg, False)}),
        ], lambda: reply(worker, msg, {"ok": True}))
        self.s.emit({"type": "step", "run_id": run.id, "key": key, "name": msg["name"],
                     "status": status, "attempt": msg["attempt"], "at": msg["end"],
                     "error": {"type": err["type"], "message": err["message"]}})

    def checkpoint(self, run: Run, worker: Any, msg: dict) -> None:
        """A cell's checkpoint. The worker wrote its new large pieces as durable files and
        checked the disk's room first (``worker.snapshot``); they are checked to be there,
        then the rows that refer to them are journaled, with the small pieces. One that
        refers to a blob a prune is deleting waits until the prune is done."""
        files: dict[str, int] = msg.get("files") or {}
        if self.s.blobs_in_deletion & (set(files) | set(msg["blobs"])):
            self.s.held_checkpoints.append(
                lambda: self.checkpoint(run, worker, msg) if run.worker is worker else None)
            return
        missing = self.s.store.missing_blob_files(files)
        if missing:  # removed meanwhile (a prune): the worker writes them again
            reply(worker, msg, {"missing": missing})
            return
        s = self.s
        now = s.now()
        seq = (run.checkpoint or {}).get("seq", 0) + 1
        run.progress += 1
        run.checkpoint = {"statement": msg["statement"], "manifest": msg["manifest"],
                          "counts": msg["counts"], "seq": seq}
        records: list[Record] = [
            InsertIgnore("blobs", {"hash": h, "data": data, "size": len(data),
                                   "created_at": now, "external": False})
            for h, data in msg["blobs"].items()]
        records += [InsertIgnore("blobs", {"hash": h, "data": None, "size": size,
                                           "created_at": now, "external": True})
                    for h, size in files.items()]
        records.append(Insert("checkpoints", {
            "run_id": run.id, "seq": seq, "statement": msg["statement"], "created_at": now,
            "manifest": json.dumps({"vars": msg["manifest"], "counts": msg["counts"],
                                    "seq": seq, "total": msg["total"]}),
            "size": msg["size"]}))
        new_bytes = sum(len(b) for b in msg["blobs"].values()) + sum(files.values())
        took = max(0.0, min(float(msg.get("took") or 0.0), 86_400.0))  # the worker's own time
        records.append(Insert("span_records", {
            "span_id": f"{run.id}/c{seq}", "run_id": run.id,
            "parent_id": f"{run.id}/a{run.attempts}", "kind": "checkpoint",
            "name": f"statement {msg['statement']}", "start_at": now - took, "end_at": now,
            "status": StepStatus.COMPLETED, "attributes": json.dumps({
                "statement": msg["statement"], "total": msg["total"], "size": msg["size"],
                "new_bytes": new_bytes, "seconds": round(took, 6),
                "variables": sorted(msg["manifest"])})}))
        s.write(records, lambda: reply(worker, msg, {"ok": True}))
        s.emit({"type": "checkpoint", "run_id": run.id, "statement": msg["statement"],
                "total": msg["total"], "size": msg["size"], "at": now})

    def trigger(self, run: Run, worker: Any, msg: dict) -> None:
        """Child runs started from a step: recorded as that step's output (their ids)."""
        try:
            task = self.scheduler.register_task(msg["task"])
            opts = msg["options"]
            ids, _ = self.scheduler.create_runs(
                task.hash, msg["payloads"], RunOptions.checked(
                    f"{run.id}:{msg['key']}", opts.get("delay"), opts.get("tags") or (),
                    opts.get("concurrency_key"), opts.get("ttl"), run.id,
                    priority=opts.get("priority")),
                idem_suffixes=list(range(len(msg["payloads"]))))
        except (DurableError, LookupError, ValueError) as exc:
            reply(worker, msg, {"error": str(exc)})
            return
        run.steps[msg["key"]] = ("ok", _serial.dumps(ids, "run ids"))
        run.progress += 1
        now = self.s.now()
        self.s.write([Insert("steps", {
            "run_id": run.id, "step_key": msg["key"], "name": msg["key"].split("#")[0],
            "attempt": 1, "generation": run.generation, "status": StepStatus.COMPLETED,
            "started_at": now, "ended_at": now, "output": run.steps[msg["key"]][1],
            "run_attempt": run.attempts})],
            lambda: reply(worker, msg, {"run_ids": ids}))

    def send_event(self, run: Run, worker: Any, msg: dict) -> None:
        try:
            n = self.waits.send_event(msg["key"], msg["data"])
        except WaitConflict as exc:
            reply(worker, msg, {"error": str(exc)})
            return
        self.s.write([], lambda: reply(worker, msg, {"resumed": n}))


def _call(msg: dict, completed: bool) -> dict:
    """A try's call and previews as the steps row keeps them (None from earlier workers)."""
    out = {"args": msg.get("args"), "args_preview": msg.get("args_preview"),
           "args_hash": msg.get("args_hash")}
    if completed:
        out["output_preview"] = msg.get("output_preview")
    return out
