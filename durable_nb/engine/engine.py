"""The engine: sole owner of the store, scheduler of runs, supervisor of workers.

Runs move QUEUED -> EXECUTING -> (WAITING | DELAYED -> QUEUED)* -> a terminal status.
All state changes are journal records (see ``_store``); in memory the engine keeps only
the runs that are not finished, which is what scheduling needs. It runs on one asyncio
loop: the standalone server's, or the Jupyter server's.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import os
import time
import uuid
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..core import serial as _serial
from ..core.config import EngineConfig  # defined with every setting in _config
from ..core.durations import parse_duration
from ..core.errors import (
    DurableError,
    PayloadTooLarge,
    RunNotFound,
    StoreUnavailable,
    WaitConflict,
)
from ..core.retry import Retry
from ..core.serial import clean_text
from ..core.status import STATUSES as STATUSES  # re-exported: tests and tools import them here
from ..core.status import TERMINAL as TERMINAL
from ..core.status import AttemptOutcome, RunStatus, StepStatus, WaitOutcome, sql_list
from ..store.store import EXTERNAL_BLOB_BYTES, Store
from .processes import WorkerPool, WorkerProc

DEFAULT_RETRY = Retry()
MAX_INT32 = 2**31 - 1  # INTEGER columns (queue limits, attempt numbers)
# Journal batches up to this size are written and synced on the event loop itself;
# larger ones (checkpoint blobs, big outputs) go to the syncing thread.
INLINE_SYNC_BYTES = 256 * 1024
# Seconds between tries to write a batch the journal refused (a full disk).
WRITE_RETRY = 0.5


@dataclass
class TaskInfo:
    hash: str
    task_id: str
    code: bytes
    sys_path: list[str]
    options: dict

    @property
    def retry(self) -> Retry:
        r = self.options.get("retry")
        return Retry.from_dict(r) if r else DEFAULT_RETRY


@dataclass
class Wait:
    key: str
    kind: str
    name: str
    created_at: float
    deadline: float | None = None
    target: list | None = None
    resolution: dict | None = None
    timer: asyncio.TimerHandle | None = None


@dataclass
class Run:
    id: str
    task: TaskInfo
    status: str
    queue: str
    ckey: str | None
    payload: bytes
    created_at: float
    seq: int
    parent_run_id: str | None = None
    attempts: int = 0
    failures: int = 0
    generation: int = 0
    started_at: float | None = None
    delay_until: float | None = None
    steps: dict = field(default_factory=dict)
    step_failures: dict = field(default_factory=dict)
    waits: dict = field(default_factory=dict)
    worker: WorkerProc | None = None
    attempt_started: float = 0.0
    current_wait: str | None = None
    suspending: bool = False
    stopping: str | None = None  # CANCELED / TIMED_OUT when the engine kills the worker
    timers: list = field(default_factory=list)  # delay, ttl and wait deadlines
    attempt_timers: list = field(default_factory=list)  # grace, max_duration, kill_after
    duration_warning: bool = False
    checkpoint: dict | None = None  # cells: statement, manifest, counts of the latest
    tags: list = field(default_factory=list)
    idempotency_key: str | None = None
    replay_of: str | None = None
    ttl: float | None = None
    error: str | None = None
    finished_at: float | None = None
    output: bytes | None = None
    children: list = field(default_factory=list)  # ids of child runs triggered by this one

    def row(self) -> dict:
        """The run as its row in the runs table would read (without the payload)."""
        return {
            "id": self.id, "kind": self.task.options.get("kind", "task"),
            "task_id": self.task.task_id, "task_hash": self.task.hash, "status": self.status,
            "queue": self.queue, "concurrency_key": self.ckey,
            "idempotency_key": self.idempotency_key, "tags": self.tags,
            "parent_run_id": self.parent_run_id, "replay_of": self.replay_of,
            "created_at": self.created_at, "started_at": self.started_at,
            "finished_at": self.finished_at, "delay_until": self.delay_until, "ttl": self.ttl,
            "attempts": self.attempts, "output": self.output, "error": self.error,
            "duration_warning": self.duration_warning, "generation": self.generation,
        }


def _now() -> float:
    return time.time()


def _aid(run: Run) -> str:
    """The id of the run's current attempt; every engine <-> worker message carries it."""
    return f"{run.id}/{run.attempts}"


def _reply(w: WorkerProc, msg: dict, body: dict) -> None:
    """Answer the worker's request ``msg``; the reply names its attempt and request."""
    w.send({**body, "aid": msg.get("aid"), "re": msg.get("req")})


def _error_json(error: dict | None) -> str | None:
    if not error:
        return None
    return json.dumps({k: error.get(k) for k in ("type", "message", "traceback")})


class Engine:
    """Schedules runs of one database. Public coroutine methods back the HTTP API."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.store = Store(config.db_path)
        self.started_at = _now()
        self.instance = uuid.uuid4().hex
        self.worker_env: dict[str, str] = dict(os.environ)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[str, TaskInfo] = {}
        self._runs: dict[str, Run] = {}
        self._groups: dict[tuple, deque] = defaultdict(deque)
        self._executing: dict[tuple, int] = defaultdict(int)
        self._queues: dict[str, int | None] = {}
        self._idem: dict[tuple[str, str], str] = {}
        self._events: dict[str, bytes | None] = {}
        self._child_results: dict[str, tuple] = {}
        self._finished: OrderedDict[str, dict] = OrderedDict()  # recent final rows
        self._finished_bytes = 0
        self._children_of: dict[str, list[str]] = defaultdict(list)
        self._result_waiters: dict[str, list[asyncio.Future]] = defaultdict(list)
        self._subscribers: list[Callable[[dict], None]] = []
        self._seq = itertools.count()
        self._log_seq = itertools.count()
        self.pool: WorkerPool | None = None
        self._stopped = False
        self._commit_scheduled = False
        self._syncing = False
        self._retry_armed = False
        self._durable_waiters: set[asyncio.Future] = set()
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="durable-journal")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the store, recover unfinished runs, start the worker pool."""
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(None, self.store.open)
        self.pool = WorkerPool(
            self.config.max_workers, self.config.min_idle_workers, self.worker_env,
            self._on_worker_message, self._on_worker_exit, lambda w: self._dispatch(),
        )
        await self._loop.run_in_executor(None, self._recover)
        if self.store.write_problem is not None:  # e.g. started on a nearly full disk
            self._arm_retry()
        self.pool.ensure(0)
        self._dispatch()

    async def stop(self) -> None:
        """Stop workers and close the store; executing runs resume on the next start."""
        if self._stopped:
            return
        self._stopped = True
        for run in self._runs.values():
            for t in run.timers + run.attempt_timers:
                t.cancel()
        if self.pool:
            await self.pool.close()
        while self._syncing:
            await asyncio.sleep(0.005)
        try:
            self.store.commit()
        except OSError as exc:  # nothing in it was acknowledged
            self.store.hold([], [], exc)
        self._sync_thread.shutdown()
        await asyncio.get_running_loop().run_in_executor(None, self.store.close)

    def _recover(self) -> None:
        """Load tasks, queues and unfinished runs; re-queue runs that were executing."""
        q = self.store.query
        for row in q("SELECT * FROM tasks", sync=False):
            self._tasks[row["hash"]] = TaskInfo(
                row["hash"], row["task_id"], row["code"], json.loads(row["sys_path"]),
                json.loads(row["options"]),
            )
        for row in q("SELECT name, concurrency_limit FROM queues", sync=False):
            self._queues[row["name"]] = row["concurrency_limit"]
        for row in q(
            "SELECT task_id, idempotency_key, id FROM runs WHERE idempotency_key IS NOT NULL",
            sync=False,
        ):
            self._idem[(row["task_id"], row["idempotency_key"])] = row["id"]
        for row in q("SELECT key, data FROM events", sync=False):
            self._events[row["key"]] = row["data"]
        rows = q(
            f"SELECT * FROM runs WHERE status NOT IN ({sql_list(TERMINAL)}) ORDER BY created_at",
            sync=False,
        )
        if not rows:
            return
        for row in rows:
            task = self._tasks.get(row["task_hash"])
            if task is None:
                continue
            run = Run(
                id=row["id"], task=task, status=row["status"], queue=row["queue"],
                ckey=row["concurrency_key"], payload=row["payload"],
                created_at=row["created_at"], seq=next(self._seq),
                parent_run_id=row["parent_run_id"], attempts=row["attempts"] or 0,
                started_at=row["started_at"], delay_until=row["delay_until"],
                generation=row["generation"] or 0, tags=list(row["tags"] or []),
                idempotency_key=row["idempotency_key"], replay_of=row["replay_of"],
                ttl=row["ttl"], error=row["error"],
                duration_warning=bool(row["duration_warning"]),
            )
            self._runs[run.id] = run
        for run in self._runs.values():
            if run.parent_run_id in self._runs:
                self._runs[run.parent_run_id].children.append(run.id)
        ids = list(self._runs)
        marks = ",".join("?" * len(ids))
        for row in q(
            f"SELECT run_id, step_key, status, output, attempt, generation FROM steps "
            f"WHERE run_id IN ({marks}) ORDER BY started_at", ids, sync=False,
        ):
            run = self._runs[row["run_id"]]
            if row["status"] == StepStatus.COMPLETED:
                run.steps[row["step_key"]] = ("ok", row["output"])
            elif row["generation"] == run.generation:
                if row["status"] == StepStatus.ERRORED:
                    run.steps[row["step_key"]] = ("err", row["output"])
                else:
                    run.step_failures[row["step_key"]] = max(
                        run.step_failures.get(row["step_key"], 0), row["attempt"]
                    )
        for row in q(
            f"SELECT run_id, outcome, count(*) AS n FROM attempts WHERE run_id IN ({marks}) "
            "GROUP BY ALL", ids, sync=False,
        ):
            if row["outcome"] in (AttemptOutcome.FAILED, AttemptOutcome.CRASHED):
                self._runs[row["run_id"]].failures += row["n"]
        for row in q(f"SELECT * FROM waits WHERE run_id IN ({marks}) "
                     "ORDER BY resolved_at NULLS LAST, created_at", ids, sync=False):
            run = self._runs[row["run_id"]]
            if row["wait_key"] in run.waits:
                continue  # an earlier release could leave a second row of the same key
            w = Wait(row["wait_key"], row["kind"], row["name"], row["created_at"],
                     row["deadline"], json.loads(row["target"]) if row["target"] else None)
            if row["resolved_at"] is not None:
                w.resolution = _serial.loads(row["result"])
            run.waits[w.key] = w
        for row in q(
            f"SELECT run_id, statement, manifest FROM checkpoints WHERE run_id IN ({marks}) "
            "QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY seq DESC) = 1",
            ids, sync=False,
        ):
            m = json.loads(row["manifest"])
            self._runs[row["run_id"]].checkpoint = {
                "statement": row["statement"], "manifest": m["vars"], "counts": m["counts"],
                "seq": m["seq"]}
        for row in q(
            f"SELECT id, parent_run_id, status, output, error FROM runs WHERE parent_run_id IN "
            f"({marks}) AND status IN ({sql_list(TERMINAL)})", ids, sync=False,
        ):
            self._children_of[row["parent_run_id"]].append(row["id"])
            self._child_results[row["id"]] = (
                row["status"], row["output"], json.loads(row["error"]) if row["error"] else None,
            )
        self._loop.call_soon_threadsafe(self._resume_recovered)

    def _resume_recovered(self) -> None:
        now = _now()
        for run in list(self._runs.values()):
            # deadlines of pending waits run whatever the run's status: a run killed in a
            # wait's grace period was EXECUTING, and its sleep or timeout must still fire
            for w in run.waits.values():
                self._arm_wait(run, w)
            if run.ttl and run.attempts == 0 and run.status in (RunStatus.QUEUED, RunStatus.DELAYED):
                self._arm(run, run.created_at + run.ttl, lambda r=run: self._expire(r))
            if run.status == RunStatus.EXECUTING:
                self._write([
                    ("upd", "attempts", {"run_id": run.id, "number": run.attempts},
                     {"ended_at": now, "outcome": AttemptOutcome.INTERRUPTED,
                      "error_message": "the engine stopped during this attempt"}),
                ])
                self._set_status(run, RunStatus.QUEUED, "engine restarted; resuming")
                self._enqueue(run)
            elif run.status == RunStatus.QUEUED:
                self._enqueue(run)
            elif run.status == RunStatus.DELAYED:
                self._arm(run, run.delay_until or now, lambda r=run: self._undelay(r))
            elif run.status == RunStatus.WAITING:
                pending = [w for w in run.waits.values() if w.resolution is None]
                if not pending:
                    self._set_status(run, RunStatus.QUEUED, "wait resolved")
                    self._enqueue(run)
                for w in pending:
                    run.current_wait = w.key
                    self._try_resolve_now(run, w)

    # ------------------------------------------------------------------ writing

    def _write(self, records: list, then: Callable[[], None] | None = None) -> None:
        """Journal records; ``then`` runs on the loop once they are durable.

        Group commit, pipelined: at the end of a loop turn the buffered records go to the
        syncing thread (one write + fdatasync); whatever arrives meanwhile is buffered and
        goes in the next sync, started as soon as this one completes."""
        self.store.write(records, then)
        if not self._commit_scheduled and not self._syncing:
            self._commit_scheduled = True
            self._loop.call_soon(self._commit)

    def _commit(self) -> None:
        self._commit_scheduled = False
        if self._syncing or not self.store.pending:
            return
        batch, done = self.store.take()
        data = self.store.encode_batch(batch)
        if len(data) <= INLINE_SYNC_BYTES:
            # A small batch syncs right here: handing it to a thread and back costs two
            # wake-ups, more than the fdatasync itself. What arrives meanwhile waits in the
            # sockets and goes into the next batch.
            try:
                self.store.write_batch(batch, data)
            except OSError as exc:
                self._write_failed(batch, done, exc)
                return
            self.store.committed(batch, done)
            return
        self._syncing = True
        fut = self._loop.run_in_executor(self._sync_thread, self.store.write_batch, batch, data)
        fut.add_done_callback(lambda f: self._synced(f, batch, done))

    def _synced(self, fut: asyncio.Future, batch: list, done: list) -> None:
        self._syncing = False
        exc = fut.exception()
        if exc is not None:
            self._write_failed(batch, done, exc)
            return
        self.store.committed(batch, done)
        if self.store.pending:
            self._commit()

    def _write_failed(self, batch: list, done: list, exc: BaseException) -> None:
        """The journal could not write (a full disk): nothing in ``batch`` is acknowledged.
        It is held and written first when the disk takes it again, tried every
        ``WRITE_RETRY`` s; callers waiting on a write hear why at once."""
        if self.store.hold(batch, done, exc):  # the reserve was released: try again now
            self._loop.call_soon(self._retry_write)
            return
        err = self._unavailable()
        for fut in list(self._durable_waiters):
            if not fut.done():
                fut.set_exception(err)
        self._arm_retry()

    def _arm_retry(self) -> None:
        if not self._stopped and not self._retry_armed:
            self._retry_armed = True
            self._loop.call_later(WRITE_RETRY, self._retry_tick)

    def _retry_tick(self) -> None:
        self._retry_armed = False
        self._retry_write()

    def _retry_write(self) -> None:
        """Write what is held; once that works and the disk has room, accept writes."""
        if self._stopped:
            return
        if not self._syncing and self.store.pending:
            self._commit()
        if self.store.write_problem is not None and not self.store.try_restore():
            self._arm_retry()

    def _unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(
            f"{self.store.problem}. This request is not durable: if it changed something, the "
            "change is kept in memory and written when the disk takes it again (lost if the "
            "engine stops first). Nothing acknowledged earlier is lost and reads still work. "
            "Free space there; the engine resumes writing by itself.")

    def _check_writable(self) -> None:
        """Refuse a write request at once while the journal cannot write."""
        if self.store.write_problem is not None:
            raise StoreUnavailable(
                f"the engine refuses writes for now: {self.store.write_problem}. Nothing "
                "acknowledged is lost and reads still work. Free space on that disk; the "
                "engine resumes writing by itself within a second of it.")

    async def _write_durable(self, records: list) -> None:
        fut = self._loop.create_future()
        self._durable_waiters.add(fut)
        try:
            self._write(records, lambda: fut.done() or fut.set_result(None))
            await fut
        finally:
            self._durable_waiters.discard(fut)

    def subscribe(self, fn: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``fn(event)`` for every run event; returns the unsubscribe function."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def _emit(self, event: dict) -> None:
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:
                pass

    def _set_status(self, run: Run, status: str, reason: str = "", **changes: Any) -> list:
        now = _now()
        old, run.status = run.status, status
        changes.update(status=status, updated_at=now)
        records = [
            ("upd", "runs", {"id": run.id}, changes),
            ("ins", "transitions", {"run_id": run.id, "created_at": now, "from_status": old,
                                     "to_status": status, "reason": reason}),
        ]
        self._write(records)
        self._emit({"type": "run", "run_id": run.id, "task_id": run.task.task_id,
                    "status": status, "from": old, "reason": reason, "at": now})
        return records

    # ------------------------------------------------------------------ tasks and triggers

    def register_task(self, spec: dict) -> TaskInfo:
        """Store a task's code (idempotent by content hash)."""
        h = spec["hash"]
        info = self._tasks.get(h)
        if info is None:
            self._check_writable()
            code = spec["code"]
            if _serial.task_hash(code, spec["task_id"], dict(spec.get("options") or {})) != h:
                raise ValueError("task hash does not match its code and options")
            info = TaskInfo(h, spec["task_id"], code, list(spec.get("sys_path") or []),
                            dict(spec.get("options") or {}))
            self._tasks[h] = info
            self._write([("ins_ignore", "tasks", {
                "hash": h, "task_id": info.task_id, "code": code,
                "sys_path": json.dumps(info.sys_path), "options": json.dumps(info.options),
                "created_at": _now()})])
        return info

    def set_queue(self, name: str, limit: int | None) -> dict:
        """Set a queue's concurrency limit; applies at once to queued runs."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or not 1 <= limit <= MAX_INT32):
            raise ValueError(f"concurrency_limit must be an integer from 1 to {MAX_INT32} or "
                             f"null, got {limit!r}")
        if self._queues.get(name, "unset") != limit:
            self._check_writable()
            self._queues[name] = limit
            self._write([("upsert", "queues", {"name": name, "concurrency_limit": limit,
                                                "updated_at": _now()})])
            self._dispatch()
        return {"name": name, "concurrency_limit": limit}

    def queues(self) -> list[dict]:
        counts: dict[str, int] = defaultdict(int)
        queued: dict[str, int] = defaultdict(int)
        for (qname, _), n in self._executing.items():
            counts[qname] += n
        for run in self._runs.values():
            if run.status == RunStatus.QUEUED:
                queued[run.queue] += 1
        names = set(self._queues) | set(counts) | set(queued)
        return [{"name": n, "concurrency_limit": self._queues.get(n), "executing": counts[n],
                 "queued": queued[n]} for n in sorted(names)]

    async def trigger(self, task_hash: str, payload: bytes, *, idempotency_key: str | None = None,
                      delay: float | None = None, tags: list | tuple = (),
                      concurrency_key: str | None = None, ttl: float | None = None,
                      parent_run_id: str | None = None) -> tuple[str, bool]:
        """Create a run; returns (run id, created). Durable before it returns."""
        self._check_writable()
        ids, created = self._create_runs(task_hash, [payload], idempotency_key, delay, tags,
                                         concurrency_key, ttl, parent_run_id)
        await self._write_durable([])
        return ids[0], created[0]

    def _create_runs(self, task_hash, payloads, idempotency_key, delay, tags, concurrency_key,
                     ttl, parent_run_id, idem_suffixes=None) -> tuple[list[str], list[bool]]:
        task = self._tasks.get(task_hash)
        if task is None:
            raise LookupError(f"unknown task hash {task_hash}")
        # the API validates its requests; runs triggered from workers come here directly
        delay = parse_duration(delay) if delay is not None else None
        ttl = parse_duration(ttl) if ttl is not None else None
        tags = [clean_text(str(t)) for t in tags or ()]
        if not all(isinstance(v, (str, type(None))) for v in (idempotency_key,
                                                              concurrency_key)):
            raise ValueError("idempotency_key and concurrency_key must be text")
        idempotency_key = clean_text(idempotency_key) if idempotency_key else idempotency_key
        concurrency_key = clean_text(concurrency_key) if concurrency_key else concurrency_key
        for p in payloads:
            if len(p) > self.config.max_payload:
                raise PayloadTooLarge(
                    f"payload of task '{task.task_id}' is {_serial.fmt_size(len(p))}, over the "
                    f"limit of {_serial.fmt_size(self.config.max_payload)} (max_payload_bytes)"
                )
        qspec = task.options.get("queue") or {}
        qname = qspec.get("name") or f"task:{task.task_id}"
        if qspec:
            self.set_queue(qname, qspec.get("concurrency_limit"))
        ids, created = [], []
        for i, payload in enumerate(payloads):
            ikey = idempotency_key
            if ikey is not None and idem_suffixes is not None:
                ikey = f"{ikey}:{idem_suffixes[i]}"
            if ikey is not None and (task.task_id, ikey) in self._idem:
                ids.append(self._idem[(task.task_id, ikey)])
                created.append(False)
                continue
            now = _now()
            run = Run(
                id="run_" + uuid.uuid4().hex[:20], task=task, status=RunStatus.QUEUED, queue=qname,
                ckey=concurrency_key, payload=payload, created_at=now, seq=next(self._seq),
                parent_run_id=parent_run_id, tags=[str(t) for t in tags],
                idempotency_key=ikey, ttl=ttl,
            )
            if ikey is not None:
                self._idem[(task.task_id, ikey)] = run.id
            self._runs[run.id] = run
            if parent_run_id in self._runs:
                self._runs[parent_run_id].children.append(run.id)
            delay_until = now + delay if delay else None
            self._write([
                ("ins", "runs", {
                    "id": run.id, "kind": task.options.get("kind", "task"),
                    "task_id": task.task_id, "task_hash": task.hash,
                    "status": RunStatus.DELAYED if delay_until else RunStatus.QUEUED, "queue": qname,
                    "concurrency_key": concurrency_key, "idempotency_key": ikey,
                    "tags": [str(t) for t in tags], "payload": payload,
                    "parent_run_id": parent_run_id, "created_at": now, "delay_until": delay_until,
                    "ttl": ttl, "attempts": 0, "duration_warning": False, "updated_at": now,
                }),
                ("ins", "transitions", {"run_id": run.id, "created_at": now, "from_status": None,
                                         "to_status": RunStatus.DELAYED if delay_until else RunStatus.QUEUED,
                                         "reason": "triggered"}),
            ])
            self._emit({"type": "run", "run_id": run.id, "task_id": task.task_id,
                        "status": RunStatus.DELAYED if delay_until else RunStatus.QUEUED, "from": None,
                        "reason": "triggered", "at": now})
            if ttl:
                self._arm(run, now + ttl, lambda r=run: self._expire(r))
            if delay_until:
                run.status = RunStatus.DELAYED
                run.delay_until = delay_until
                self._arm(run, delay_until, lambda r=run: self._undelay(r))
            else:
                self._enqueue(run)
            ids.append(run.id)
            created.append(True)
        self._dispatch()
        return ids, created

    # ------------------------------------------------------------------ scheduling

    def _arm(self, run: Run, at: float, fn: Callable[[], None],
             attempt: bool = False) -> asyncio.TimerHandle:
        """Call ``fn`` at ``at``; attempt timers end with the attempt, others with the run."""
        h = self._loop.call_later(max(0.0, at - _now()), fn)
        (run.attempt_timers if attempt else run.timers).append(h)
        return h

    def _enqueue(self, run: Run) -> None:
        self._groups[(run.queue, run.ckey)].append(run)

    def _undelay(self, run: Run) -> None:
        if run.status == RunStatus.DELAYED:
            self._set_status(run, RunStatus.QUEUED, "delay elapsed", delay_until=None)
            run.delay_until = None
            self._enqueue(run)
            self._dispatch()

    def _expire(self, run: Run) -> None:
        if run.status in (RunStatus.QUEUED, RunStatus.DELAYED) and run.attempts == 0:
            self._finish(run, RunStatus.EXPIRED, error={"type": "Expired", "message":
                         "the run was not started before its ttl elapsed", "traceback": None})

    def _capacity(self, group: tuple) -> bool:
        limit = self._queues.get(group[0])
        return limit is None or self._executing[group] < limit

    def _dispatch(self) -> None:
        """Start queued runs, oldest first, where their queue has room and a worker is idle."""
        if self.pool is None or self._stopped:
            return
        idle = self.pool.idle()
        waiting = 0
        heads: list = []
        for group, dq in self._groups.items():
            while dq and dq[0].status != RunStatus.QUEUED:
                dq.popleft()
            if dq and self._capacity(group):
                heapq.heappush(heads, (dq[0].seq, group))
        while heads:
            _, group = heapq.heappop(heads)
            dq = self._groups[group]
            if not idle:
                waiting += min(len(dq), 1 if self._queues.get(group[0]) else len(dq))
                continue
            run = dq.popleft()
            self._start_attempt(run, idle.pop())
            while dq and dq[0].status != RunStatus.QUEUED:
                dq.popleft()
            if dq and self._capacity(group):
                heapq.heappush(heads, (dq[0].seq, group))
        for group in [g for g, dq in self._groups.items() if not dq]:
            del self._groups[group]
        self.pool.ensure(waiting)

    def _start_attempt(self, run: Run, worker: WorkerProc) -> None:
        now = _now()
        run.attempts += 1
        run.worker = worker
        run.attempt_started = now
        run.suspending = False
        run.current_wait = None
        worker.run = run
        self._executing[(run.queue, run.ckey)] += 1
        first = run.started_at is None
        if first:
            run.started_at = now
        self._set_status(run, RunStatus.EXECUTING, f"attempt {run.attempts}", attempts=run.attempts,
                         **({"started_at": now} if first else {}))
        msg = {
            "op": "run", "run_id": run.id, "attempt": run.attempts, "aid": _aid(run),
            "task_id": run.task.task_id,
            "task_hash": run.task.hash, "code": run.task.code, "sys_path": run.task.sys_path, "payload": run.payload,
            "generation": run.generation,
            "steps": dict(run.steps), "step_failures": dict(run.step_failures),
            "waits": {k: w.resolution for k, w in run.waits.items() if w.resolution is not None},
            "max_payload": self.config.max_payload, "max_checkpoint": self.config.max_checkpoint,
        }
        aid = msg["aid"]

        def send() -> None:  # the attempt goes to the worker once its record is durable
            if run.worker is not worker or _aid(run) != aid:
                return
            if run.checkpoint is None:
                worker.send(msg)
            else:
                asyncio.ensure_future(self._send_with_checkpoint(run, worker, msg))

        self._write([("ins", "attempts", {"run_id": run.id, "number": run.attempts,
                                           "worker_pid": worker.pid, "started_at": now})], send)
        opts = run.task.options
        if opts.get("max_duration"):
            self._arm(run, now + opts["max_duration"], lambda: self._warn_duration(run, worker),
                      attempt=True)
        if opts.get("kill_after"):
            self._arm(run, now + opts["kill_after"], lambda: self._kill(run, worker, RunStatus.TIMED_OUT),
                      attempt=True)

    async def _send_with_checkpoint(self, run: Run, worker: WorkerProc, msg: dict) -> None:
        """Resume a cell: send the attempt with the blobs of its latest checkpoint."""
        cp = run.checkpoint
        hashes = sorted(set(cp["manifest"].values()))
        rows = await self._loop.run_in_executor(None, self.store.blobs, hashes)
        blobs = {h: r["data"] for h, r in rows.items()}
        if run.worker is worker:
            worker.send({**msg, "checkpoint": {**cp, "blobs": blobs}})

    def _warn_duration(self, run: Run, worker: WorkerProc) -> None:
        if run.worker is not worker or run.duration_warning:
            return
        run.duration_warning = True
        now = _now()
        limit = run.task.options["max_duration"]
        self._write([
            ("upd", "runs", {"id": run.id}, {"duration_warning": True}),
            ("ins", "span_records", {"span_id": f"{run.id}/warn", "run_id": run.id,
                              "parent_id": f"{run.id}/a{run.attempts}", "kind": "warning",
                              "name": "max_duration exceeded", "start_at": now, "end_at": now,
                              "status": "WARNING",
                              "attributes": json.dumps({"max_duration": limit})}),
        ])
        self._emit({"type": "warning", "run_id": run.id, "message":
                    f"run exceeded max_duration of {limit:g} s", "at": now})

    def _kill(self, run: Run, worker: WorkerProc, why: str) -> None:
        if run.worker is worker and run.stopping is None:
            run.stopping = why
            worker.kill()

    # ------------------------------------------------------------------ worker messages

    def _on_worker_message(self, w: WorkerProc, msg: dict) -> None:
        run = w.run
        if run is None or msg.get("aid") != _aid(run):
            return  # from an attempt that already ended: stale, dropped
        op = msg["op"]
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            _reply(w, msg, {"error": f"unknown op {op}"})
            return
        handler(run, w, msg)
        if w.run is None:  # the attempt ended: the worker is free
            self._dispatch()

    def _op_log(self, run: Run, w: WorkerProc, msg: dict) -> None:
        recs = [("ins", "logs", {"run_id": run.id, "seq": next(self._log_seq),
                                 "created_at": msg["at"],
                                 "stream": msg["stream"], "line": line})
                for line in msg["lines"]]
        self._write(recs)
        self._emit({"type": "log", "run_id": run.id, "stream": msg["stream"],
                    "lines": msg["lines"], "at": msg["at"]})

    def _op_step(self, run: Run, w: WorkerProc, msg: dict) -> None:
        key = msg["key"]
        run.steps[key] = ("ok", msg["output"])
        self._write([
            ("ins", "steps", {"run_id": run.id, "step_key": key, "name": msg["name"],
                              "attempt": msg["attempt"], "generation": run.generation,
                              "status": StepStatus.COMPLETED, "started_at": msg["start"],
                              "ended_at": msg["end"], "output": msg["output"],
                              "run_attempt": run.attempts}),
        ], lambda: _reply(w, msg, {"ok": True}))
        self._emit({"type": "step", "run_id": run.id, "key": key, "name": msg["name"],
                    "status": StepStatus.COMPLETED, "attempt": msg["attempt"], "at": msg["end"]})

    def _op_step_failed(self, run: Run, w: WorkerProc, msg: dict) -> None:
        key, err = msg["key"], msg["error"]
        status = StepStatus.ERRORED if msg["final"] else StepStatus.FAILED
        if msg["final"]:
            run.steps[key] = ("err", msg["exc"])
        else:
            run.step_failures[key] = msg["attempt"]
        self._write([
            ("ins", "steps", {"run_id": run.id, "step_key": key, "name": msg["name"],
                              "attempt": msg["attempt"], "generation": run.generation,
                              "status": status, "started_at": msg["start"],
                              "ended_at": msg["end"], "output": msg["exc"],
                              "error_type": err["type"], "error_message": err["message"],
                              "traceback": err["traceback"], "run_attempt": run.attempts,
                              "retry_delay": msg["delay"]}),
        ], lambda: _reply(w, msg, {"ok": True}))
        self._emit({"type": "step", "run_id": run.id, "key": key, "name": msg["name"],
                    "status": status, "attempt": msg["attempt"], "at": msg["end"],
                    "error": {"type": err["type"], "message": err["message"]}})

    def _op_checkpoint(self, run: Run, w: WorkerProc, msg: dict) -> None:
        big = {h: d for h, d in msg["blobs"].items() if len(d) >= EXTERNAL_BLOB_BYTES}
        if not big:
            self._record_checkpoint(run, w, msg, big)
            return
        # large values become files first, then the rows that refer to them are journaled
        fut = self._loop.run_in_executor(self._sync_thread, self.store.put_blob_files, big)

        def written(f: asyncio.Future) -> None:
            if f.exception() is not None:
                _reply(w, msg, {"error": f"the checkpoint could not be stored: {f.exception()}"})
            elif run.worker is w:
                self._record_checkpoint(run, w, msg, big)

        fut.add_done_callback(written)

    def _record_checkpoint(self, run: Run, w: WorkerProc, msg: dict, big: dict) -> None:
        now = _now()
        seq = (run.checkpoint or {}).get("seq", 0) + 1
        run.checkpoint = {"statement": msg["statement"], "manifest": msg["manifest"],
                          "counts": msg["counts"], "seq": seq}
        records: list = [("ins_ignore", "blobs", {"hash": h, "data": None if h in big else data,
                                                  "size": len(data), "created_at": now,
                                                  "external": h in big})
                         for h, data in msg["blobs"].items()]
        records.append(("ins", "checkpoints", {
            "run_id": run.id, "seq": seq, "statement": msg["statement"], "created_at": now,
            "manifest": json.dumps({"vars": msg["manifest"], "counts": msg["counts"],
                                    "seq": seq, "total": msg["total"]}),
            "size": msg["size"]}))
        records.append(("ins", "span_records", {
            "span_id": f"{run.id}/c{seq}", "run_id": run.id,
            "parent_id": f"{run.id}/a{run.attempts}", "kind": "checkpoint",
            "name": f"statement {msg['statement']}", "start_at": now, "end_at": now,
            "status": StepStatus.COMPLETED, "attributes": json.dumps({
                "statement": msg["statement"], "total": msg["total"], "size": msg["size"],
                "new_bytes": sum(len(b) for b in msg["blobs"].values()),
                "variables": sorted(msg["manifest"])})}))
        self._write(records, lambda: _reply(w, msg, {"ok": True}))
        self._emit({"type": "checkpoint", "run_id": run.id, "statement": msg["statement"],
                    "total": msg["total"], "size": msg["size"], "at": now})

    def _op_trigger(self, run: Run, w: WorkerProc, msg: dict) -> None:
        try:
            task = self.register_task(msg["task"])
            opts = msg["options"]
            ids, _ = self._create_runs(
                task.hash, msg["payloads"], f"{run.id}:{msg['key']}", opts.get("delay"),
                opts.get("tags") or (), opts.get("concurrency_key"), opts.get("ttl"), run.id,
                idem_suffixes=list(range(len(msg["payloads"]))),
            )
        except (DurableError, LookupError, ValueError) as exc:
            _reply(w, msg, {"error": str(exc)})
            return
        run.steps[msg["key"]] = ("ok", _serial.dumps(ids, "run ids"))
        now = _now()
        self._write([("ins", "steps", {
            "run_id": run.id, "step_key": msg["key"], "name": msg["key"].split("#")[0],
            "attempt": 1, "generation": run.generation, "status": StepStatus.COMPLETED,
            "started_at": now, "ended_at": now, "output": run.steps[msg["key"]][1],
            "run_attempt": run.attempts})],
            lambda: _reply(w, msg, {"run_ids": ids}))

    def _op_send_event(self, run: Run, w: WorkerProc, msg: dict) -> None:
        try:
            n = self._send_event(msg["key"], msg["data"])
        except WaitConflict as exc:
            _reply(w, msg, {"error": str(exc)})
            return
        self._write([], lambda: _reply(w, msg, {"resumed": n}))

    def _op_wait(self, run: Run, w: WorkerProc, msg: dict) -> None:
        key = msg["key"]
        now = _now()
        timeout = msg.get("timeout")
        wait = run.waits.get(key)
        if wait is not None:
            self._arm_wait(run, wait)  # the same wait met again by a later attempt
        else:
            wait = Wait(key, msg["kind"], msg["name"], now,
                        now + timeout if timeout is not None else None, msg.get("target"))
            run.waits[key] = wait
            self._write([("ins", "waits", {
                "run_id": run.id, "wait_key": key, "kind": wait.kind, "name": wait.name,
                "data": msg.get("data"), "preview": json.dumps(msg.get("preview")),
                "target": json.dumps(wait.target) if wait.target else None,
                "created_at": now, "deadline": wait.deadline})])
            self._emit({"type": "wait", "run_id": run.id, "key": key, "kind": wait.kind,
                        "name": wait.name, "state": "pending", "at": now})
            self._arm_wait(run, wait)
        if wait.resolution is not None:  # resolved since this attempt started: go on
            self._send_resolution(run, w, wait)
            return
        run.current_wait = key
        self._try_resolve_now(run, wait)
        if wait.resolution is None:
            # hold the worker for a grace period: a quick resolution continues in place
            self._arm(run, now + self.config.wait_grace, lambda: self._suspend(run, w, key),
                      attempt=True)

    def _arm_wait(self, run: Run, wait: Wait) -> None:
        """Arm the wait's deadline once (again after a restart)."""
        if wait.deadline is not None and wait.resolution is None and wait.timer is None:
            outcome = WaitOutcome.ELAPSED if wait.kind in ("sleep", "retry") else WaitOutcome.TIMED_OUT
            wait.timer = self._arm(run, wait.deadline,
                                   lambda: self._resolve(run, wait, {"outcome": outcome}))

    def _try_resolve_now(self, run: Run, wait: Wait) -> None:
        if wait.kind == "event" and wait.name in self._events:
            self._resolve(run, wait, {"outcome": WaitOutcome.EVENT, "data": self._events[wait.name]})
        elif wait.kind == "child" and wait.target:
            if all(cid in self._child_results for cid in wait.target):
                self._resolve(run, wait, {"outcome": WaitOutcome.COMPLETED, "results": [
                    (cid, *self._child_results[cid]) for cid in wait.target]})
        elif wait.kind in ("sleep", "retry") and wait.deadline is not None and wait.deadline <= _now():
            self._resolve(run, wait, {"outcome": WaitOutcome.ELAPSED})

    def _send_resolution(self, run: Run, w: WorkerProc, wait: Wait) -> None:
        """Let the worker go on past ``wait`` once its resolution is durable (a worker
        acting on a decision a crash could still undo might take the other branch)."""
        aid = _aid(run)
        msg = {"op": "resolved", "aid": aid, "key": wait.key, "resolution": wait.resolution}

        def send() -> None:
            if run.worker is w and _aid(run) == aid:
                w.send(msg)

        self._write([], send)

    def _suspend(self, run: Run, w: WorkerProc, key: str) -> None:
        wait = run.waits.get(key)
        if run.worker is w and wait is not None and wait.resolution is None and not run.suspending:
            run.suspending = True
            w.send({"op": "suspend", "aid": _aid(run), "key": key})

    def _resolve(self, run: Run, wait: Wait, resolution: dict, by: str | None = None,
                 then: Callable[[], None] | None = None) -> None:
        """Resolve a wait exactly once, and resume the run (in place or by re-queueing)."""
        if wait.resolution is not None:
            return
        now = _now()
        resolution = {**resolution, "at": now, "by": by}
        wait.resolution = resolution
        if wait.timer is not None:
            wait.timer.cancel()
        self._write([
            ("upd", "waits", {"run_id": run.id, "wait_key": wait.key}, {
                "resolved_at": now, "outcome": resolution["outcome"],
                "result": _serial.dumps(resolution, "resolution"),
                "comment": resolution.get("comment"), "resolved_by": by}),
            ("ins", "span_records", {"span_id": f"{run.id}/w/{wait.key}", "run_id": run.id,
                              "parent_id": run.id, "kind": "wait" if wait.kind != "retry" else "retry_delay",
                              "name": wait.name, "start_at": wait.created_at, "end_at": now,
                              "status": resolution["outcome"],
                              "attributes": json.dumps({"key": wait.key, "kind": wait.kind})}),
        ], then)
        self._emit({"type": "wait", "run_id": run.id, "key": wait.key, "kind": wait.kind,
                    "name": wait.name, "state": resolution["outcome"], "by": by, "at": now})
        if run.current_wait != wait.key:
            return
        if run.worker is not None and not run.suspending:
            run.current_wait = None
            self._send_resolution(run, run.worker, wait)
        elif run.status == RunStatus.WAITING:
            run.current_wait = None
            self._set_status(run, RunStatus.QUEUED, f"{wait.kind} '{wait.name}' resolved")
            self._enqueue(run)
            self._dispatch()

    # ------------------------------------------------------------------ attempt ends

    def _op_done(self, run: Run, w: WorkerProc, msg: dict) -> None:
        self._end_attempt(run, w, AttemptOutcome.COMPLETED)
        self._finish(run, RunStatus.COMPLETED, output=msg["output"])

    def _op_failed(self, run: Run, w: WorkerProc, msg: dict) -> None:
        self._end_attempt(run, w, AttemptOutcome.FAILED, msg["error"])
        self._after_failure(run, AttemptOutcome.FAILED, msg["error"])

    def _op_suspended(self, run: Run, w: WorkerProc, msg: dict) -> None:
        self._end_attempt(run, w, AttemptOutcome.SUSPENDED)
        wait = run.waits.get(run.current_wait) if run.current_wait else None
        if wait is None or wait.resolution is not None:
            run.current_wait = None
            self._set_status(run, RunStatus.QUEUED, "resuming")
            self._enqueue(run)
        else:
            self._set_status(run, RunStatus.WAITING, f"{wait.kind} '{wait.name}'")
        self._dispatch()

    def _on_worker_exit(self, w: WorkerProc) -> None:
        run = w.run
        if run is not None and run.worker is w:
            why = run.stopping
            if why == RunStatus.CANCELED:
                self._end_attempt(run, w, AttemptOutcome.CANCELED)
                self._finish(run, RunStatus.CANCELED)
            elif why == RunStatus.TIMED_OUT:
                limit = run.task.options.get("kill_after")
                err = {"type": "TimedOut", "message": f"the attempt ran longer than kill_after "
                       f"({limit:g} s) and its worker was killed", "traceback": None}
                self._end_attempt(run, w, AttemptOutcome.TIMED_OUT, err)
                self._finish(run, RunStatus.TIMED_OUT, error=err)
            elif not self._stopped:
                code = w.proc.returncode
                err = {"type": "WorkerCrashed", "message": f"the worker process (pid {w.pid}) "
                       f"died (exit code {code}) while executing the run", "traceback": None}
                self._end_attempt(run, w, AttemptOutcome.CRASHED, err)
                self._after_failure(run, AttemptOutcome.CRASHED, err)
        if not self._stopped:
            self._dispatch()

    def _end_attempt(self, run: Run, w: WorkerProc, outcome: str, error: dict | None = None) -> None:
        now = _now()
        run.worker = None
        run.stopping = None
        run.suspending = False
        w.run = None
        for t in run.attempt_timers:
            t.cancel()
        run.attempt_timers = []
        self._executing[(run.queue, run.ckey)] -= 1
        err = error or {}
        self._write([
            ("upd", "attempts", {"run_id": run.id, "number": run.attempts}, {
                "ended_at": now, "outcome": outcome, "error_type": err.get("type"),
                "error_message": err.get("message"), "traceback": err.get("traceback")}),
        ])

    def _after_failure(self, run: Run, outcome: str, error: dict) -> None:
        run.failures += 1
        delay = None if error.get("abort") else run.task.retry.delay(run.failures)
        if delay is None:
            self._finish(run, RunStatus.CRASHED if outcome == AttemptOutcome.CRASHED else RunStatus.FAILED, error=error)
            return
        run.current_wait = None
        for w in list(run.waits.values()):  # step tries of this generation will not resume
            if w.kind == "retry" and w.resolution is None:
                self._resolve(run, w, {"outcome": WaitOutcome.ABANDONED})
        run.generation += 1
        run.step_failures.clear()
        run.steps = {k: v for k, v in run.steps.items() if v[0] == "ok"}
        # pending waits stay: a wait key has one row and one resolution for ever, so the next
        # attempt meets the same wait (and its deadline) again instead of a second one
        run.current_wait = None
        until = _now() + delay
        run.delay_until = until
        run.error = _error_json(error)
        self._set_status(run, RunStatus.DELAYED, f"retry in {delay:g} s after {outcome.lower()} "
                         f"attempt {run.attempts}", delay_until=until,
                         error=run.error, generation=run.generation)
        self._arm(run, until, lambda: self._undelay(run))

    def _finish(self, run: Run, status: str, output: bytes | None = None,
                error: dict | None = None) -> None:
        now = _now()
        for t in run.timers + run.attempt_timers:
            t.cancel()
        run.timers, run.attempt_timers = [], []
        run.current_wait = None
        for w in list(run.waits.values()):  # every wait row gets its one resolution
            if w.resolution is None:
                self._resolve(run, w, {"outcome": WaitOutcome.CANCELED if status == RunStatus.CANCELED
                                       else WaitOutcome.ABANDONED})
        self._runs.pop(run.id, None)
        run.finished_at, run.output = now, output
        run.error = _error_json(error) if error else (None if status == RunStatus.COMPLETED else run.error)
        self._set_status(run, status, "finished", finished_at=now, output=output,
                         error=run.error)
        self._remember(run.row())
        self._write([], lambda: self._notify_done(run.id))
        for cid in self._children_of.pop(run.id, []):
            self._child_results.pop(cid, None)
        if status == RunStatus.CANCELED:
            for child in [self._runs[c] for c in run.children if c in self._runs]:
                self._cancel_run(child)
        if run.parent_run_id and run.parent_run_id in self._runs:
            self._children_of[run.parent_run_id].append(run.id)
            self._child_results[run.id] = (status, output, error)
            parent = self._runs.get(run.parent_run_id)
            if parent is not None:
                for wait in parent.waits.values():
                    if wait.kind == "child" and wait.resolution is None and run.id in (wait.target or []):
                        self._try_resolve_now(parent, wait)

    def _remember(self, row: dict) -> None:
        """Keep recent final rows in memory so result() needs no database read."""
        self._finished[row["id"]] = row
        self._finished_bytes += len(row["output"] or b"")
        while len(self._finished) > 5000 or self._finished_bytes > 64 * 1024 * 1024:
            _, old = self._finished.popitem(last=False)
            self._finished_bytes -= len(old["output"] or b"")

    def _notify_done(self, run_id: str) -> None:
        for fut in self._result_waiters.pop(run_id, []):
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------------ user operations

    def _active(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    async def _row(self, run_id: str) -> dict:
        run = self._runs.get(run_id)
        if run is not None:
            return run.row()
        if run_id in self._finished:
            return self._finished[run_id]
        rows = await self._query("SELECT * FROM runs WHERE id = ?", [run_id])
        if not rows:
            raise RunNotFound(f"no run with id '{run_id}' in {self.config.db_path}; "
                              "list runs with `durable-nb runs` or dn.runs()")
        return rows[0]

    async def _query(self, sql: str, params: list | tuple = ()) -> list[dict]:
        return await self._loop.run_in_executor(None, self.store.query, sql, params)

    async def wait_result(self, run_id: str, timeout: float) -> dict:
        """Wait up to ``timeout`` seconds for the run to finish; returns its row."""
        if run_id in self._runs:
            fut = self._loop.create_future()
            self._result_waiters[run_id].append(fut)
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout)
            except asyncio.TimeoutError:
                pass
            finally:
                if fut in self._result_waiters.get(run_id, []):
                    self._result_waiters[run_id].remove(fut)
        return await self._row(run_id)

    async def cancel(self, run_id: str) -> None:
        self._check_writable()
        run = self._active(run_id)
        if run is None:
            row = await self._row(run_id)
            raise WaitConflict(f"run {run_id} already finished ({row['status']}); nothing to cancel")
        self._cancel_run(run)
        await self._write_durable([])

    def _cancel_run(self, run: Run) -> None:
        if run.worker is not None:
            self._kill(run, run.worker, RunStatus.CANCELED)
        else:
            self._finish(run, RunStatus.CANCELED)
            self._dispatch()

    async def replay(self, run_id: str) -> str:
        self._check_writable()
        await self._row(run_id)
        row = (await self._query("SELECT * FROM runs WHERE id = ?", [run_id]))[0]
        if row["task_hash"] not in self._tasks:
            raise WaitConflict(f"the code of run {run_id}'s task is not in the store")
        ids, _ = self._create_runs(row["task_hash"], [row["payload"]], None, None,
                                   list(row["tags"] or []), row["concurrency_key"], None, None)
        self._write([("upd", "runs", {"id": ids[0]}, {"replay_of": run_id})])
        if ids[0] in self._runs:
            self._runs[ids[0]].replay_of = run_id
        await self._write_durable([])
        return ids[0]

    async def resolve_approval(self, run_id: str, approved: bool, name: str | None = None,
                               comment: str | None = None, by: str | None = None,
                               note: str | None = None) -> dict:
        """Approve or reject a pending approval; refused when it is already resolved.

        ``by`` is the identity the host authenticated; ``note`` a name the client gave
        (kept beside it in the resolution, never in its place)."""
        self._check_writable()
        run = self._active(run_id)
        if run is None:
            row = await self._row(run_id)
            done = await self._query(
                "SELECT name, outcome, resolved_by FROM waits WHERE run_id = ? AND kind = "
                "'approval' AND (? IS NULL OR name = ?) ORDER BY created_at DESC LIMIT 1",
                [run_id, name, name])
            if done and done[0]["outcome"]:
                w = done[0]
                by = f" by {w['resolved_by']}" if w["resolved_by"] else ""
                raise WaitConflict(
                    f"approval '{w['name']}' of run {run_id} was already resolved "
                    f"({w['outcome']}{by}); a wait resolves exactly once. The run is "
                    f"{row['status']}.")
            raise WaitConflict(f"run {run_id} is {row['status']}, not waiting on an approval")
        approvals = [w for w in run.waits.values() if w.kind == "approval"
                     and (name is None or w.name == name)]
        pending = [w for w in approvals if w.resolution is None]
        if not pending:
            if approvals:
                w = approvals[-1]
                r = w.resolution
                raise WaitConflict(
                    f"approval '{w.name}' of run {run_id} was already resolved "
                    f"({r['outcome']}{' by ' + r['by'] if r.get('by') else ''}); "
                    "a wait resolves exactly once")
            what = f"an approval named '{name}'" if name else "an approval"
            raise WaitConflict(f"run {run_id} is {run.status}, not waiting on {what}")
        wait = pending[0]
        fut = self._loop.create_future()
        res = {"outcome": WaitOutcome.APPROVED if approved else WaitOutcome.REJECTED, "comment": comment}
        if note and note != by:
            res["note"] = note
        self._resolve(run, wait, res, by=by,
                      then=lambda: fut.done() or fut.set_result(None))
        await fut
        return {"run_id": run_id, "wait": wait.name, "outcome": wait.resolution["outcome"]}

    def _send_event(self, key: str, data: bytes | None) -> int:
        if key in self._events:
            raise WaitConflict(f"event '{key}' was already sent; each event key resolves once")
        self._events[key] = data
        self._write([("ins", "events", {"key": key, "data": data, "sent_at": _now()})])
        n = 0
        for run in list(self._runs.values()):
            for wait in list(run.waits.values()):
                if wait.kind == "event" and wait.name == key and wait.resolution is None:
                    self._resolve(run, wait, {"outcome": WaitOutcome.EVENT, "data": data})
                    n += 1
        return n

    async def send_event(self, key: str, data: bytes | None) -> int:
        self._check_writable()
        n = self._send_event(key, data)
        await self._write_durable([])
        return n

    def workers(self) -> list[dict]:
        return [{"pid": w.pid, "run_id": w.run.id if w.run else None, "ready": w.ready}
                for w in (self.pool.workers if self.pool else [])]

    def health(self) -> dict:
        store = self.store.health()
        return {"ok": store["problem"] is None, "problem": store["problem"], "store": store,
                "pid": os.getpid(), "db": str(self.config.db_path),
                "instance": self.instance, "started_at": self.started_at,
                "active_runs": len(self._runs), "max_payload": self.config.max_payload,
                "executing": sum(1 for r in self._runs.values() if r.status == RunStatus.EXECUTING)}

    # ------------------------------------------------------------------ reads

    async def run_detail(self, run_id: str) -> dict:
        row = await self._row(run_id)
        attempts = await self._query(
            "SELECT number, worker_pid, started_at, ended_at, outcome, error_type, "
            "error_message, traceback FROM attempts WHERE run_id = ? ORDER BY number", [run_id])
        steps = await self._query(
            "SELECT step_key, name, attempt, status, started_at, ended_at, error_type, "
            "error_message, traceback FROM steps WHERE run_id = ? ORDER BY started_at, attempt",
            [run_id])
        waits = await self._query(
            "SELECT wait_key, kind, name, preview, target, created_at, deadline, resolved_at, "
            "outcome, comment, resolved_by FROM waits WHERE run_id = ? ORDER BY created_at",
            [run_id])
        children = await self._query(
            "SELECT id, task_id, status FROM runs WHERE parent_run_id = ? ORDER BY created_at",
            [run_id])
        for w in waits:
            w["preview"] = json.loads(w["preview"]) if w["preview"] else None
            w["target"] = json.loads(w["target"]) if w["target"] else None
        return {**summarize(row), "attempt_list": attempts, "steps": steps, "waits": waits,
                "children": children}

    async def list_runs(self, status: str | None = None, task: str | None = None,
                        limit: int = 100, offset: int = 0) -> list[dict]:
        where, params = [], []
        if status:
            statuses = [s.strip().upper() for s in status.split(",")]
            bad = [s for s in statuses if s not in STATUSES]
            if bad:
                raise ValueError(f"unknown status {bad[0]!r}; one of {', '.join(STATUSES)}")
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(statuses)
        if task:
            where.append("task_id = ?")
            params.append(task)
        sql = ("SELECT * EXCLUDE (payload, output) , output IS NOT NULL AS has_output FROM runs"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY created_at DESC LIMIT ? OFFSET ?")
        rows = await self._query(sql, [*params, int(limit), int(offset)])
        return [summarize(r) for r in rows]

    async def checkpoint(self, run_id: str, names: list[str] | None = None,
                         values: bool = False) -> dict:
        """The latest checkpoint of a cell run: variables with sizes, values if asked."""
        await self._row(run_id)
        rows = await self._query(
            "SELECT seq, statement, created_at, manifest, size FROM checkpoints "
            "WHERE run_id = ? ORDER BY seq DESC LIMIT 1", [run_id])
        if not rows:
            return {"run_id": run_id, "statement": 0, "variables": {}, "values": {}}
        row = rows[0]
        manifest = json.loads(row["manifest"])
        wanted = {n: h for n, h in manifest["vars"].items() if names is None or n in names}
        missing = sorted(set(names or ()) - set(wanted))
        if missing:
            raise ValueError(f"no variable {', '.join(map(repr, missing))} in the checkpoint of "
                             f"run {run_id}; it has {', '.join(sorted(manifest['vars']))}")
        hashes = sorted(set(wanted.values()))
        blobs = await self._loop.run_in_executor(None, self.store.blobs, hashes, values)
        return {
            "run_id": run_id, "seq": row["seq"], "statement": row["statement"],
            "total": manifest.get("total"), "created_at": row["created_at"], "size": row["size"],
            "variables": {n: {"size": blobs[h]["size"], "hash": h} for n, h in wanted.items()},
            "values": {n: blobs[h]["data"] for n, h in wanted.items()} if values else {},
        }

    async def spans(self, run_id: str) -> list[dict]:
        await self._row(run_id)
        rows = await self._query(
            "SELECT * FROM spans WHERE run_id = ? ORDER BY start_at", [run_id])
        for r in rows:
            r["attributes"] = json.loads(r["attributes"]) if r["attributes"] else {}
        return rows

    async def logs(self, run_id: str, limit: int = 1000) -> list[dict]:
        await self._row(run_id)
        return await self._query(
            "SELECT created_at AS at, stream, line FROM logs WHERE run_id = ? ORDER BY seq DESC LIMIT ?",
            [run_id, int(limit)])

    async def sql(self, query: str, limit: int = 10_000) -> tuple[list[str], list[tuple]]:
        return await self._loop.run_in_executor(None, self.store.read_only, query, limit)


def summarize(row: dict) -> dict:
    """The JSON view of a run row (no payload or output bytes)."""
    out = {k: v for k, v in row.items() if k not in ("payload", "output")}
    out["error"] = json.loads(row["error"]) if row.get("error") else None
    out["tags"] = list(row.get("tags") or [])
    if "has_output" not in out:
        out["has_output"] = row.get("output") is not None
    created, finished = row.get("created_at"), row.get("finished_at")
    out["duration"] = (finished - row["started_at"]) if finished and row.get("started_at") else None
    out["queued_for"] = (row["started_at"] - created) if row.get("started_at") and created else None
    return out
