"""Scheduling: tasks and their queues, creating runs, and starting attempts.

Queued runs wait in one FIFO per group (queue, concurrency key); ``dispatch`` starts the
oldest heads first wherever a queue has room and the pool has an idle worker, and asks the
pool for more workers when runs are left waiting. Delays and ttls are timers of the
injected clock.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..core import serial as _serial
from ..core.checkpoints import manifest_blobs
from ..core.durations import parse_duration
from ..core.errors import PayloadTooLarge
from ..core.hooks import check_hook_tasks
from ..core.messages import Resolution, RunAttempt
from ..core.placement import check_executor, check_resources
from ..core.serial import clean_text
from ..core.status import RunStatus
from ..core.versions import checked_source
from ..store.records import Insert, InsertIgnore, Update, Upsert
from . import step_calls, wait_order
from .model import MAX_INT32, MAX_PRIORITY, ORIGIN_FIELDS, Run, TaskInfo, aid
from .state import EngineState


@dataclass
class RunOptions:
    """How runs are created (validated here too: runs triggered by workers skip the API)."""

    idempotency_key: str | None = None
    delay: float | None = None
    tags: list[str] | None = None
    concurrency_key: str | None = None
    ttl: float | None = None
    parent_run_id: str | None = None
    origin: str | None = None  # JSON {notebook, cell_id, execution_count}
    priority: int = 0
    schedule_id: str | None = None  # set by the engine, never by a request
    schedule_tick: float | None = None
    hook_of: str | None = None
    hook_kind: str | None = None
    traceparent: str | None = None  # checked by ``checked_traceparent``
    fork_of: str | None = None  # set by the engine's fork, never by a request
    fork_step: str | None = None
    # set by the engine's fork: fills the new run's recorded steps, waits and checkpoint
    # (and journals their rows) before anything can start it
    prepare: Callable[[Run], None] | None = None

    @classmethod
    def checked(cls, idempotency_key: Any = None, delay: Any = None, tags: Any = (),
                concurrency_key: Any = None, ttl: Any = None,
                parent_run_id: str | None = None, origin: Any = None,
                priority: Any = None) -> RunOptions:
        if not all(isinstance(v, (str, type(None))) for v in (idempotency_key,
                                                              concurrency_key)):
            raise ValueError("idempotency_key and concurrency_key must be text")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)
                                     or not -MAX_PRIORITY <= priority <= MAX_PRIORITY):
            raise ValueError(f"priority must be a whole number from {-MAX_PRIORITY} to "
                             f"{MAX_PRIORITY}, got {priority!r:.50}")
        return cls(
            idempotency_key=clean_text(idempotency_key) if idempotency_key else idempotency_key,
            delay=parse_duration(delay) if delay is not None else None,
            tags=[clean_text(str(t)) for t in tags or ()],
            concurrency_key=clean_text(concurrency_key) if concurrency_key else concurrency_key,
            ttl=parse_duration(ttl) if ttl is not None else None,
            parent_run_id=parent_run_id, origin=origin_json(origin), priority=priority or 0)




def origin_json(origin: Any) -> str | None:
    """The stored form of a run's origin (a JSON object of ``ORIGIN_FIELDS``); ValueError
    when it is not one. A stored origin (JSON text, as a replay passes it) is kept."""
    if origin is None or origin == {}:
        return None
    if isinstance(origin, str):
        origin = json.loads(origin)
    if not isinstance(origin, dict) or set(origin) - set(ORIGIN_FIELDS):
        raise ValueError(f"origin must be an object with the fields {', '.join(ORIGIN_FIELDS)}")
    for key, kind in ORIGIN_FIELDS.items():
        v = origin.get(key)
        if v is not None and (not isinstance(v, kind) or isinstance(v, bool)
                              or (isinstance(v, str) and len(v) > 1024)
                              or (isinstance(v, int) and not 0 <= v <= MAX_INT32)):
            raise ValueError(f"origin.{key} must be {kind.__name__} (text of at most 1024 "
                             "characters, or a count from 0)")
    return json.dumps({k: clean_text(v) if isinstance(v, str) else v
                       for k in ORIGIN_FIELDS if (v := origin.get(k)) is not None})


KEEP = object()  # set_queue: leave the rate limit as it is
MAX_RATE_PER = 366 * 86400.0


def rate_of(spec: Any) -> tuple[int, float] | None:
    """(limit, per seconds) of a rate limit given as {"limit": n, "per": "1m" or seconds},
    or None; ValueError naming what is wrong."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - {"limit", "per"}:
        raise ValueError(f"rate_limit must be {{'limit': n, 'per': duration}} or null, got "
                         f"{spec!r:.100}")
    n, per = spec.get("limit"), parse_duration(spec.get("per"))
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_INT32:
        raise ValueError(f"rate_limit.limit must be a whole number from 1 to {MAX_INT32}, "
                         f"got {n!r:.50}")
    if per is None or not 0 < per <= MAX_RATE_PER:
        raise ValueError(f"rate_limit.per must be a duration above 0 and at most a year, got "
                         f"{spec.get('per')!r:.50}")
    return n, float(per)


def _unwired(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("the scheduler is used outside an engine")


class Scheduler:
    """Creates runs and starts their attempts on the pool's idle workers."""

    def __init__(self, state: EngineState):
        self.s = state
        # ends a run; the engine plugs in ``lifecycle.Lifecycle.finish`` (which needs us)
        self.finish: Callable[..., None] = _unwired

    # ------------------------------------------------------------------ tasks and queues

    def register_task(self, spec: dict) -> TaskInfo:
        """Store a task's code (idempotent by content hash)."""
        s = self.s
        h = spec["hash"]
        info = s.tasks.get(h)
        if info is None:
            s.writer.check_writable()
            code = spec["code"]
            options = dict(spec.get("options") or {})
            check_resources(options.get("resources"))
            check_executor(options.get("executor"))
            for hook in spec.get("hook_specs") or ():  # a child's hooks, sent by a worker
                self.register_task(hook)
            check_hook_tasks(options.get("hooks"), s.tasks)
            if _serial.task_hash(code, spec["task_id"], options) != h:
                raise ValueError("task hash does not match its code and options")
            info = TaskInfo(h, spec["task_id"], code, list(spec.get("sys_path") or []),
                            options)
            s.tasks[h] = info
            s.write([InsertIgnore("tasks", {
                "hash": h, "task_id": info.task_id, "code": code,
                "sys_path": json.dumps(info.sys_path), "options": json.dumps(info.options),
                "created_at": s.now(), "source": checked_source(spec.get("source"))})])
        return info

    def set_queue(self, name: str, limit: int | None, rate: Any = KEEP) -> dict:
        """Set a queue's concurrency limit and, unless ``KEEP``, its rate limit (None, or
        {"limit": n, "per": seconds or a duration}); applies at once to queued runs."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or not 1 <= limit <= MAX_INT32):
            raise ValueError(f"concurrency_limit must be an integer from 1 to {MAX_INT32} or "
                             f"null, got {limit!r}")
        s = self.s
        new_rate = s.rates.get(name) if rate is KEEP else rate_of(rate)
        if s.queues.get(name, "unset") != limit or s.rates.get(name) != new_rate:
            s.writer.check_writable()
            s.queues[name] = limit
            if new_rate is None:
                s.rates.pop(name, None)
            else:
                s.rates[name] = new_rate
            s.write([Upsert("queues", {
                "name": name, "concurrency_limit": limit, "updated_at": s.now(),
                "rate_limit": new_rate[0] if new_rate else None,
                "rate_per": new_rate[1] if new_rate else None})])
            self.dispatch()
        return self._queue_info(name, limit)

    def _queue_info(self, name: str, limit: int | None) -> dict:
        rate = self.s.rates.get(name)
        return {"name": name, "concurrency_limit": limit,
                "rate_limit": {"limit": rate[0], "per": rate[1]} if rate else None}

    def queues(self) -> list[dict]:
        """Each queue with its limit and how many of its runs execute and wait."""
        counts: dict[str, int] = defaultdict(int)
        queued: dict[str, int] = defaultdict(int)
        for (qname, _), n in self.s.executing.items():
            counts[qname] += n
        for run in self.s.runs.values():
            if run.status == RunStatus.QUEUED:
                queued[run.queue] += 1
        names = set(self.s.queues) | set(counts) | set(queued)
        return [{**self._queue_info(n, self.s.queues.get(n)), "executing": counts[n],
                 "queued": queued[n]} for n in sorted(names)]

    # ------------------------------------------------------------------ runs

    def create_runs(self, task_hash: str, payloads: list[bytes], opts: RunOptions,
                    idem_suffixes: list | None = None) -> tuple[list[str], list[bool]]:
        """Create one run per payload (or find it by idempotency key); returns their ids
        and whether each was created."""
        s = self.s
        task = s.tasks.get(task_hash)
        if task is None:
            raise LookupError(f"unknown task hash {task_hash}")
        for p in payloads:
            if len(p) > s.config.max_payload:
                raise PayloadTooLarge(
                    f"payload of task '{task.task_id}' is {_serial.fmt_size(len(p))}, over "
                    f"the limit of {_serial.fmt_size(s.config.max_payload)} "
                    "(max_payload_bytes)")
        qspec = task.options.get("queue") or {}
        qname = qspec.get("name") or f"task:{task.task_id}"
        if qspec:
            self.set_queue(qname, qspec.get("concurrency_limit"),
                           qspec.get("rate_limit", KEEP))  # declared in code: applied again
        ids, created = [], []
        for i, payload in enumerate(payloads):
            ikey = opts.idempotency_key
            if ikey is not None and idem_suffixes is not None:
                ikey = f"{ikey}:{idem_suffixes[i]}"
            if ikey is not None and (task.task_id, ikey) in s.idem:
                ids.append(s.idem[(task.task_id, ikey)])
                created.append(False)
                continue
            ids.append(self._new_run(task, qname, payload, ikey, opts).id)
            created.append(True)
        self.dispatch()
        return ids, created

    def _new_run(self, task: TaskInfo, qname: str, payload: bytes, ikey: str | None,
                 opts: RunOptions) -> Run:
        s = self.s
        now = s.now()
        tags = list(opts.tags or [])
        run = Run(id="run_" + uuid.uuid4().hex[:20], task=task, status=RunStatus.QUEUED,
                  queue=qname, ckey=opts.concurrency_key, payload=payload, created_at=now,
                  seq=next(s.seq), parent_run_id=opts.parent_run_id, tags=tags,
                  idempotency_key=ikey, ttl=opts.ttl, origin=opts.origin,
                  priority=opts.priority, schedule_id=opts.schedule_id,
                  schedule_tick=opts.schedule_tick, hook_of=opts.hook_of,
                  hook_kind=opts.hook_kind, traceparent=opts.traceparent,
                  fork_of=opts.fork_of, fork_step=opts.fork_step)
        if ikey is not None:
            s.idem[(task.task_id, ikey)] = run.id
        s.runs[run.id] = run
        if opts.parent_run_id in s.runs:
            s.runs[opts.parent_run_id].children.append(run.id)
        delay_until = now + opts.delay if opts.delay else None
        status = RunStatus.DELAYED if delay_until else RunStatus.QUEUED
        s.write([
            Insert("runs", {
                "id": run.id, "kind": task.options.get("kind", "task"),
                "task_id": task.task_id, "task_hash": task.hash, "status": status,
                "queue": qname, "concurrency_key": opts.concurrency_key,
                "idempotency_key": ikey, "tags": tags, "payload": payload,
                "parent_run_id": opts.parent_run_id, "created_at": now,
                "delay_until": delay_until, "ttl": opts.ttl, "attempts": 0,
                "duration_warning": False, "updated_at": now, "origin": opts.origin,
                "priority": opts.priority, "schedule_id": opts.schedule_id,
                "schedule_tick": opts.schedule_tick, "hook_of": opts.hook_of,
                "hook_kind": opts.hook_kind, "traceparent": opts.traceparent,
                "fork_of": opts.fork_of, "fork_step": opts.fork_step}),
            Insert("transitions", {"run_id": run.id, "created_at": now, "from_status": None,
                                    "to_status": status, "reason": "triggered"}),
        ])
        s.emit({"type": "run", "run_id": run.id, "task_id": task.task_id, "status": status,
                "from": None, "reason": "triggered", "at": now})
        if opts.prepare is not None:
            opts.prepare(run)
        if opts.ttl:
            s.arm(run, now + opts.ttl, lambda: self.expire(run))
        if delay_until:
            run.status = RunStatus.DELAYED
            run.delay_until = delay_until
            s.arm(run, delay_until, lambda: self.undelay(run))
        else:
            s.enqueue(run)
        return run

    def undelay(self, run: Run) -> None:
        """A delay (or a retry's back-off) elapsed: queue the run again."""
        if run.status == RunStatus.DELAYED:
            self.s.set_status(run, RunStatus.QUEUED, "delay elapsed", delay_until=None)
            run.delay_until = None
            self.s.enqueue(run)
            self.dispatch()

    def expire(self, run: Run) -> None:
        """A run's ttl elapsed: it ends EXPIRED unless it started."""
        if run.status in (RunStatus.QUEUED, RunStatus.DELAYED) and run.attempts == 0:
            self.finish(run, RunStatus.EXPIRED, error={
                "type": "Expired", "message": "the run was not started before its ttl elapsed",
                "traceback": None})

    # ------------------------------------------------------------------ dispatching

    def _capacity(self, group: tuple) -> bool:
        limit = self.s.queues.get(group[0])
        if limit is not None and self.s.executing[group] >= limit:
            return False
        return self._rate_allows(group)

    def _rate_allows(self, group: tuple) -> bool:
        """Whether the group's sliding window has room for one more start; if not, a timer
        dispatches again when its oldest start leaves the window."""
        rate = self.s.rates.get(group[0])
        if rate is None:
            return True
        n, per = rate
        starts, now = self.s.starts[group], self.s.now()
        while starts and starts[0] <= now - per:
            starts.popleft()
        if len(starts) < n:
            return True
        at = starts[-n] + per  # when the window holds n - 1 of these starts
        timer = self.s.rate_timers.get(group)
        if timer is None:
            def wake() -> None:
                self.s.rate_timers.pop(group, None)
                self.dispatch()

            self.s.rate_timers[group] = self.s.clock.call_at(at, wake)
        return False

    def _push_head(self, heads: list, group: tuple) -> None:
        """Drop runs no longer queued from the group's front; push its head if it may start."""
        dq = self.s.groups[group]
        while dq and dq[0][2].status != RunStatus.QUEUED:
            heapq.heappop(dq)
        if dq and self._capacity(group):
            heapq.heappush(heads, (dq[0][:2], group))

    def dispatch(self) -> None:
        """Start queued runs, oldest first, where their queue has room and a worker is idle."""
        s = self.s
        if s.pool is None or s.stopped:
            return
        route = getattr(s.pool, "route", None)  # a pool of several kinds of workers
        idle: dict[str, list] = defaultdict(list)
        for w in s.pool.idle():
            idle[getattr(w, "kind", "local")].append(w)
        waiting = 0
        heads: list = []
        for group in list(s.groups):
            self._push_head(heads, group)
        while heads:
            _, group = heapq.heappop(heads)
            dq = s.groups[group]
            kind = route(dq[0][2]) if route is not None else "local"
            free = idle[kind]
            if not free:
                if kind == "local":  # the local pool starts workers; Dask sizes itself
                    waiting += min(len(dq), 1 if s.queues.get(group[0]) else len(dq))
                continue
            self.start_attempt(heapq.heappop(dq)[2], free.pop())
            self._push_head(heads, group)
        for group in [g for g, dq in s.groups.items() if not dq]:
            del s.groups[group]
        s.pool.ensure(waiting)

    def start_attempt(self, run: Run, worker: Any) -> None:
        """Give ``run``'s next attempt to ``worker``, once the attempt's record is durable."""
        s = self.s
        now = s.now()
        run.attempts += 1
        run.attempt_progress = run.progress
        run.worker = worker
        run.attempt_started = now
        run.suspending = False
        run.current_wait = None
        run.async_waits, run.idle_waits = set(), set()
        worker.run = run
        s.executing[run.group] += 1
        if run.queue in s.rates:
            s.starts[run.group].append(now)
        first = run.started_at is None
        if first:
            run.started_at = now
        s.set_status(run, RunStatus.EXECUTING, f"attempt {run.attempts}",
                     attempts=run.attempts, **({"started_at": now} if first else {}))
        numbered = wait_order.stamp_all(run)  # before the attempt hears of them
        msg = self._run_message(run)

        def send() -> None:
            if run.worker is not worker or aid(run) != msg["aid"]:
                return
            if run.checkpoint is None:
                worker.send(msg)
            else:
                asyncio.ensure_future(self._send_with_checkpoint(run, worker, msg))

        s.write([Insert("attempts", {"run_id": run.id, "number": run.attempts,
                                      "worker_pid": worker.pid, "started_at": now}),
                 *numbered], send)
        opts = run.task.options
        if opts.get("max_duration"):
            s.arm(run, now + opts["max_duration"], lambda: self.warn_duration(run, worker),
                  attempt=True)
        if opts.get("kill_after"):
            s.arm(run, now + opts["kill_after"],
                  lambda: self.kill(run, worker, RunStatus.TIMED_OUT), attempt=True)

    def _run_message(self, run: Run) -> RunAttempt:
        """The ``run`` message: the task, its payload and what earlier attempts recorded."""
        return {
            "op": "run", "run_id": run.id, "attempt": run.attempts, "aid": aid(run),
            "task_id": run.task.task_id, "task_hash": run.task.hash, "code": run.task.code,
            "sys_path": run.task.sys_path, "payload": run.payload,
            "generation": run.generation,
            "steps": dict(run.steps), "step_failures": dict(run.step_failures),
            "waits": {k: cast(Resolution, w.resolution) for k, w in run.waits.items()
                      if w.resolution is not None},
            "max_payload": self.s.config.max_payload,
            "max_checkpoint": self.s.config.max_checkpoint,
            "blob_dir": str(self.s.store.blob_dir),
            # replay checks (``worker.divergence``)
            "step_calls": step_calls.for_worker(run),
            "on_divergence": run.task.options.get("on_divergence") or "raise",
        }

    async def _send_with_checkpoint(self, run: Run, worker: Any, msg: RunAttempt) -> None:
        """Resume a cell: send the attempt with its latest checkpoint's small pieces and
        the size of each piece; the worker reads the large ones from their files."""
        cp = run.checkpoint or {}
        hashes = sorted(manifest_blobs(cp["manifest"]))
        rows = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.s.store.blobs(hashes, files=False))
        blobs = {h: r["data"] for h, r in rows.items() if not r["external"]}
        sizes = {h: r["size"] for h, r in rows.items()}
        if run.worker is worker:
            worker.send({**msg, "checkpoint": {**cp, "blobs": blobs, "sizes": sizes}})

    def warn_duration(self, run: Run, worker: Any) -> None:
        """The attempt ran past the task's max_duration: record a warning (once)."""
        if run.worker is not worker or run.duration_warning:
            return
        s = self.s
        run.duration_warning = True
        now = s.now()
        limit = run.task.options["max_duration"]
        s.write([
            Update("runs", {"id": run.id}, {"duration_warning": True}),
            Insert("span_records", {
                "span_id": f"{run.id}/warn", "run_id": run.id,
                "parent_id": f"{run.id}/a{run.attempts}", "kind": "warning",
                "name": "max_duration exceeded", "start_at": now, "end_at": now,
                "status": "WARNING", "attributes": json.dumps({"max_duration": limit})}),
        ])
        s.emit({"type": "warning", "run_id": run.id, "message":
                f"run exceeded max_duration of {limit:g} s", "at": now})

    def kill(self, run: Run, worker: Any, why: str) -> None:
        """Kill the attempt's worker; its exit ends the run as ``why`` says."""
        if run.worker is worker and run.stopping is None:
            run.stopping = why
            worker.kill()
