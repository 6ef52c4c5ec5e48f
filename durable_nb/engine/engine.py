"""The engine: sole owner of the store, scheduler of runs, supervisor of workers.

Runs move QUEUED -> EXECUTING -> (WAITING | DELAYED -> QUEUED)* -> a terminal status.
All state changes are journal records (see ``store.store``); in memory the engine keeps
only the runs that are not finished, which is what scheduling needs. It runs on one
asyncio loop: the standalone server's, or the Jupyter server's.

``Engine`` is a facade over its parts, each in its own module: ``writer`` (group commit),
``scheduler`` (queues, runs, attempts), ``waits``, ``lifecycle`` (how attempts and runs
end), ``messages`` (what workers report), ``recovery`` and ``queries``. Time comes from
an injected ``clock.Clock`` and workers from an injected ``pool.WorkerPool``, so the
in-process harness of ``durable_nb.testing`` drives it deterministically.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Callable
from typing import Any

from ..core.config import EngineConfig as EngineConfig  # re-exported for hosts and tests
from ..core.errors import WaitConflict
from ..core.forms import checked_values
from ..core.hooks import check_children
from ..core.status import RESUMABLE, RunStatus, WaitOutcome
from ..core.status import STATUSES as STATUSES  # re-exported: tests and tools import them here
from ..core.status import TERMINAL as TERMINAL
from ..core.tracecontext import checked_traceparent
from ..store.records import Update
from ..store.store import Store
from . import recovery
from .cancellation import TREE_SQL, has_finished_children
from .clock import Clock, SystemClock
from .debounce import Debouncer
from .forks import Forks
from .hooks import Hooks
from .hooks import owed as owed_hooks
from .lifecycle import Lifecycle
from .messages import WorkerMessages
from .model import TaskInfo
from .model import summarize as summarize
from .pool import PoolEvents, PoolFactory, WorkerPool
from .processes import ProcessPool
from .queries import Queries
from .retention import Pruner
from .scheduler import KEEP as KEEP
from .scheduler import RunOptions, Scheduler
from .schedules import Schedules
from .state import EngineState
from .waits import Waits
from .writer import JournalWriter, settle

MODULE_FILE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}\.(py|zip)")


class Engine:
    """Schedules runs of one database. Public coroutine methods back the HTTP API.

    ``clock`` (default: wall time on the loop) and ``pool`` (default: worker
    subprocesses) are injected for in-process tests (``durable_nb.testing``)."""

    def __init__(self, config: EngineConfig, *, clock: Clock | None = None,
                 pool: PoolFactory | None = None):
        self.config = config
        self.store = Store(config.db_path)
        self.clock = clock or SystemClock()
        self.started_at = self.clock.now()
        self.instance = uuid.uuid4().hex
        self.worker_env: dict[str, str] = dict(os.environ)
        self._pool_factory = pool or self._process_pool
        self.writer = JournalWriter(self.store, self.clock)
        s = self.state = EngineState(config, self.store, self.clock, self.writer)
        self.scheduler = Scheduler(s)
        self.waits = Waits(s, self.scheduler)
        self.lifecycle = Lifecycle(s, self.scheduler, self.waits)
        self.scheduler.finish = self.lifecycle.finish
        self.hooks = Hooks(s, self.scheduler)  # lifecycle hooks: runs started as runs end
        self.lifecycle.on_finish.append(self.hooks.run_finished)
        self.messages = WorkerMessages(s, self.scheduler, self.waits, self.lifecycle)
        self.queries = Queries(s)
        self.pruner = Pruner(s)
        self.debouncer = Debouncer(s, self.scheduler)
        self.schedules = Schedules(s, self.scheduler)  # cron and interval ticks
        # runs forked from a finished run's recorded steps (not from one being pruned)
        self.forks = Forks(s, self.scheduler, lambda run_id: run_id in self.pruner.pruning)
        self.otlp: Any = None  # the OTLP exporter (``otlp``), with otlp_endpoint only

    def _process_pool(self, events: PoolEvents) -> WorkerPool:
        """Local worker processes; with the Dask executor, Dask beside them (the local
        ones then start only for the runs that must run locally)."""
        c = self.config
        if c.executor != "dask":
            return ProcessPool(c.max_workers, c.min_idle_workers, self.worker_env, events)
        from .dask_pool import DaskPool  # loads Dask only when it is used
        from .executors import Executors

        return Executors(ProcessPool(c.max_workers, 0, self.worker_env, events),
                         DaskPool(c, events))

    @property
    def pool(self) -> WorkerPool | None:
        return self.state.pool

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the store, recover unfinished runs, start the worker pool."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.store.open)
        self.writer.start(loop)
        self.state.pool = self._pool_factory(PoolEvents(
            on_ready=lambda w: self.scheduler.dispatch(),
            on_message=self.messages.receive, on_exit=self.lifecycle.worker_exited,
            on_placed=self.messages.placed))
        start = getattr(self.state.pool, "start", None)
        if start is not None:
            await start()
        await loop.run_in_executor(None, recovery.load, self.state)
        await loop.run_in_executor(None, self.debouncer.load)
        recovery.resume(self.state, self.scheduler, self.waits)
        await self.schedules.start()  # after recovery: missed ticks, then the timers
        self.hooks.fire(await loop.run_in_executor(None, owed_hooks, self.state))
        self.state.pool.ensure(0)
        self.scheduler.dispatch()
        self.pruner.start()
        if self.config.otlp_endpoint:
            from .otlp import OtlpExporter  # loads opentelemetry only when it is used

            self.otlp = OtlpExporter(self.state, self.config.otlp_endpoint)
            self.otlp.start()

    async def stop(self) -> None:
        """Stop workers and close the store; executing runs resume on the next start."""
        if self.state.stopped:
            return
        self.state.emit({"type": "stopping", "instance": self.instance,
                         "at": self.clock.now()})  # event streams close
        self.state.stopped = self.writer.stopped = True
        self.schedules.stop()
        await self.pruner.stop()
        if self.otlp is not None:
            await self.otlp.stop()
        for run in self.state.runs.values():
            for t in run.timers + run.attempt_timers:
                t.cancel()
        if self.state.pool is not None:
            await self.state.pool.close()
        await self.writer.close()
        await asyncio.get_running_loop().run_in_executor(None, self.store.close)

    def subscribe(self, fn: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``fn(event)`` for every run event; returns the unsubscribe function."""
        return self.state.subscribe(fn)

    # ------------------------------------------------------------------ tasks and runs

    def register_task(self, spec: dict) -> TaskInfo:
        """Store a task's code (idempotent by content hash)."""
        return self.scheduler.register_task(spec)

    def set_queue(self, name: str, limit: int | None, rate: Any = KEEP) -> dict:
        """Set a queue's concurrency limit and (unless ``KEEP``) its rate limit, None or
        {"limit": n, "per": seconds}; applies at once to queued runs."""
        return self.scheduler.set_queue(name, limit, rate)

    def queues(self) -> list[dict]:
        return self.scheduler.queues()

    async def trigger(self, task_hash: str, payload: bytes, *,
                      idempotency_key: str | None = None, delay: float | None = None,
                      tags: list | tuple = (), concurrency_key: str | None = None,
                      ttl: float | None = None,
                      parent_run_id: str | None = None,
                      origin: dict | None = None,
                      priority: int | None = None, debounce: Any = None,
                      traceparent: str | None = None) -> tuple[str, bool]:
        """Create a run; returns (run id, created). Durable before it returns. ``origin``
        names the notebook cell that started it; ``priority`` (higher first) orders it in
        its queue, with aging (``model.queue_key``). ``debounce`` ({key, delay, mode})
        collapses triggers into one run (``debounce``); ``traceparent`` is the trace its
        exported spans continue."""
        self.writer.check_writable()
        opts = RunOptions.checked(idempotency_key, delay, tags, concurrency_key, ttl,
                                  parent_run_id, origin, priority)
        opts.traceparent = checked_traceparent(traceparent)
        if debounce is not None:
            run_id, made = self.debouncer.trigger(task_hash, payload, opts, debounce)
            await self.writer.write_durable([])
            return run_id, made
        await self._recall_idempotent(task_hash, opts.idempotency_key)
        ids, created = self.scheduler.create_runs(task_hash, [payload], opts)
        await self.writer.write_durable([])
        return ids[0], created[0]

    async def _recall_idempotent(self, task_hash: str, key: str | None) -> None:
        """Memory holds the idempotency keys of unfinished runs only: a key it lacks is
        looked up in the store, so a finished run's key still names that run."""
        task = self.state.tasks.get(task_hash)
        if key is None or task is None or (task.task_id, key) in self.state.idem:
            return
        found = await asyncio.get_running_loop().run_in_executor(
            None, recovery.idempotent_run, self.state, task.task_id, key)
        if found is not None:
            self.state.idem.setdefault((task.task_id, key), found)

    async def cancel(self, run_id: str, children: str | None = "cancel") -> list[str]:
        """Cancel an unfinished run and, with ``children="cancel"`` (the default), every
        unfinished run below it, in one durable write; "abandon" leaves them running.
        Returns the ids of the descendants canceled."""
        self.writer.check_writable()
        mode = check_children(children)
        run = self.state.runs.get(run_id)
        via: list[str] = []
        if run is not None and mode == "cancel" and has_finished_children(self.state, run):
            via = [r["id"] for r in await self.queries.query(TREE_SQL, [run_id])]
            run = self.state.runs.get(run_id)  # it may have ended meanwhile
        if run is None:
            row = await self.queries.row(run_id)
            raise WaitConflict(f"run {run_id} already finished ({row['status']}); "
                               "nothing to cancel")
        below = self.lifecycle.cancel(run, mode, via)
        await self.writer.write_durable([])
        return below

    async def replay(self, run_id: str) -> str:
        """A new run of the same task with the same payload."""
        self.writer.check_writable()
        await self.queries.row(run_id)
        row = (await self.queries.query("SELECT * FROM runs WHERE id = ?", [run_id]))[0]
        if row["task_hash"] not in self.state.tasks:
            raise WaitConflict(f"the code of run {run_id}'s task is not in the store")
        opts = RunOptions.checked(None, None, list(row["tags"] or []),
                                  row["concurrency_key"], origin=row.get("origin"),
                                  priority=row.get("priority") or 0)
        ids, _ = self.scheduler.create_runs(row["task_hash"], [row["payload"]], opts)
        self.state.write([Update("runs", {"id": ids[0]}, {"replay_of": run_id})])
        if ids[0] in self.state.runs:
            self.state.runs[ids[0]].replay_of = run_id
        await self.writer.write_durable([])
        return ids[0]

    async def fork(self, run_id: str, from_step: str | None = None,
                   task_hash: str | None = None, *, payload: bytes | None = None,
                   fresh: Any = None, origin: Any = None) -> dict:
        """A new run linked to the finished run ``run_id`` that reuses what it recorded
        before ``from_step`` (a step key; a cell: the statement whose checkpoint is
        restored) and runs the rest with the code of ``task_hash`` (default: the newest
        version of its task id; a cell's own); ``payload`` replaces the source's (a cell's
        new text), ``fresh`` names checkpoint variables taken from it instead
        (``forks``). Returns {id, fork_of, fork_step, task_hash}, durable."""
        return await self.forks.fork(run_id, from_step, task_hash, payload=payload,
                                     fresh=fresh, origin=origin)

    async def resume(self, run_id: str, by: str | None = None) -> dict:
        """Continue a FAILED, CRASHED, CANCELED or TIMED_OUT run in a new attempt, from its
        last recorded step or checkpoint (``Lifecycle.resume``); returns its row."""
        self.writer.check_writable()
        row = await self.queries.row(run_id)
        if row["status"] not in RESUMABLE:
            raise WaitConflict(
                f"run {run_id} is {row['status']}; only a {', '.join(sorted(RESUMABLE))} "
                "run can be resumed" + ("" if row["status"] != RunStatus.COMPLETED else
                                        " (replay() starts a completed one again)"))
        self._not_pruning(run_id)
        loaded = await asyncio.get_running_loop().run_in_executor(
            None, recovery.read_run, self.state, run_id)
        self._not_pruning(run_id)
        if loaded is None:
            raise WaitConflict(f"the code of run {run_id}'s task is not in the store")
        run, children_of, child_results = loaded
        active = self.state.runs.get(run_id)
        if active is not None:
            raise WaitConflict(f"run {run_id} was resumed meanwhile; it is {active.status}")
        self.state.children_of.update(children_of)
        self.state.child_results.update(child_results)
        self.lifecycle.resume(run, by)
        await self.writer.write_durable([])
        return run.row()

    def _not_pruning(self, run_id: str) -> None:
        if run_id in self.pruner.pruning:
            raise WaitConflict(f"run {run_id} is being pruned (deleted as an old finished "
                               "run); it cannot be resumed")

    async def upload_module(self, filename: str, data: bytes) -> dict:
        """Ship a module (``name.py``) or a package (``name.zip``) to the Dask workers."""
        if not MODULE_FILE.fullmatch(filename):
            raise ValueError(f"a module upload is NAME.py or NAME.zip (a package), not "
                             f"{filename!r:.100}")
        upload = getattr(self.state.pool, "upload", None)
        if upload is None:
            raise WaitConflict("this engine runs attempts on its own worker processes, which "
                               "import modules from this machine; upload_module ships modules "
                               "to Dask workers (start the engine with --executor dask)")
        try:
            return dict(await upload(filename, data))
        except ConnectionError as exc:
            raise WaitConflict(f"cannot upload {filename}: {exc}") from None

    async def prune(self, older_than: str | float, status: str | list[str] | None = None,
                    dry_run: bool = False) -> dict:
        """Delete finished runs older than ``older_than`` (``retention.Pruner``)."""
        return await self.pruner.prune(older_than, status, dry_run)

    # ------------------------------------------------------------------ decisions

    async def resolve_approval(self, run_id: str, approved: bool, name: str | None = None,
                               comment: str | None = None, by: str | None = None,
                               note: str | None = None, values: dict | None = None) -> dict:
        """Approve or reject a pending approval; refused when it is already resolved.

        ``by`` is the identity the host authenticated; ``note`` a name the client gave
        (kept beside it in the resolution, never in its place). ``values`` fill the
        approval's typed form: FormInvalid (nothing resolved) when they do not match it."""
        self.writer.check_writable()
        run = self.state.runs.get(run_id)
        if run is None:
            raise await self._not_waiting(run_id, name)
        wait = self.waits.pending_approval(run, name)
        checked = checked_values(wait.form, values, approved)
        fut = asyncio.get_running_loop().create_future()
        res: dict[str, Any] = {"outcome": WaitOutcome.APPROVED if approved
                               else WaitOutcome.REJECTED, "comment": comment}
        if checked is not None:
            res["values"] = checked
        if note and note != by:
            res["note"] = note
        self.waits.resolve(run, wait, res, by=by,
                           then=lambda: settle(fut))
        await fut
        return {"run_id": run_id, "wait": wait.name,
                "outcome": (wait.resolution or {})["outcome"]}

    async def _not_waiting(self, run_id: str, name: str | None) -> WaitConflict:
        """Why a finished run takes no decision (its approval's outcome, if it had one)."""
        row = await self.queries.row(run_id)
        done = await self.queries.query(
            "SELECT name, outcome, resolved_by FROM waits WHERE run_id = ? AND kind = "
            "'approval' AND (? IS NULL OR name = ?) ORDER BY created_at DESC LIMIT 1",
            [run_id, name, name])
        if done and done[0]["outcome"]:
            w = done[0]
            by = f" by {w['resolved_by']}" if w["resolved_by"] else ""
            return WaitConflict(
                f"approval '{w['name']}' of run {run_id} was already resolved "
                f"({w['outcome']}{by}); a wait resolves exactly once. The run is "
                f"{row['status']}.")
        return WaitConflict(f"run {run_id} is {row['status']}, not waiting on an approval")

    async def send_event(self, key: str, data: bytes | None) -> int:
        """Send event ``key`` (once); returns how many waits it resolved."""
        self.writer.check_writable()
        n = self.waits.send_event(key, data)
        await self.writer.write_durable([])
        return n

    # ------------------------------------------------------------------ schedules

    async def put_schedule(self, schedule_id: str, spec: dict) -> dict:
        """Create or replace a schedule (``schedules.Schedules.put``); durable on return."""
        out = self.schedules.put(schedule_id, spec)
        await self.writer.write_durable([])
        return out

    async def pause_schedule(self, schedule_id: str, paused: bool = True) -> dict:
        """Pause a schedule, or resume it with ``paused=False``; durable on return."""
        out = self.schedules.set_paused(schedule_id, paused)
        await self.writer.write_durable([])
        return out

    async def delete_schedule(self, schedule_id: str) -> dict:
        out = self.schedules.delete(schedule_id)
        await self.writer.write_durable([])
        return out

    def list_schedules(self) -> list[dict]:
        return self.schedules.listing()

    def get_schedule(self, schedule_id: str) -> dict:
        return self.schedules.get(schedule_id)

    async def schedule_runs(self, schedule_id: str, limit: int = 100, offset: int = 0) -> dict:
        return await self.schedules.runs(schedule_id, limit, offset)

    # ------------------------------------------------------------------ state and reads

    def workers(self) -> list[dict]:
        pool = self.state.pool
        return [{"pid": w.pid, "run_id": w.run.id if w.run else None, "ready": w.ready,
                 "kind": getattr(w, "kind", "local"), "address": getattr(w, "address", None)}
                for w in (pool.workers if pool else [])]

    def executor(self) -> dict:
        """Where attempts run: local processes, or Dask (its scheduler, dashboard, size)."""
        describe = getattr(self.state.pool, "describe", None)
        if describe is not None:
            return dict(describe())
        return {"kind": "local", "scheduler": None, "dashboard": None,
                "workers": self.config.max_workers, "threads": self.config.max_workers}

    def health(self) -> dict:
        store = {**self.store.health(), **self.writer.stats()}
        runs = self.state.runs.values()
        return {"ok": store["problem"] is None, "problem": store["problem"], "store": store,
                "pid": os.getpid(), "db": str(self.config.db_path),
                "instance": self.instance, "started_at": self.started_at,
                "active_runs": len(self.state.runs), "max_payload": self.config.max_payload,
                "executing": sum(1 for r in runs if r.status == RunStatus.EXECUTING),
                "executor": self.executor(),
                "otlp": self.otlp.stats() if self.otlp is not None else None}

    async def wait_result(self, run_id: str, timeout: float) -> dict:
        """Wait up to ``timeout`` seconds for the run to finish; returns its row."""
        return await self.queries.wait_result(run_id, timeout)

    async def run_detail(self, run_id: str) -> dict:
        return await self.queries.run_detail(run_id)

    async def list_runs(self, status: str | None = None, task: str | None = None,
                        limit: int = 100, offset: int = 0, q: str | None = None,
                        tags: list[str] | None = None,
                        since: float | None = None) -> list[dict]:
        return await self.queries.list_runs(status, task, limit, offset, q, tags, since)

    async def count_runs(self, status: str | None = None, task: str | None = None,
                         q: str | None = None, tags: list[str] | None = None,
                         since: float | None = None) -> int:
        return await self.queries.count_runs(status, task, q, tags, since)

    async def checkpoint(self, run_id: str, names: list[str] | None = None,
                         values: bool = False) -> dict:
        return await self.queries.checkpoint(run_id, names, values)

    async def piece(self, run_id: str, h: str) -> bytes:
        return await self.queries.piece(run_id, h)

    async def spans(self, run_id: str) -> list[dict]:
        return await self.queries.spans(run_id)

    async def step_tries(self, run_id: str, step_key: str, values: bool = False) -> list[dict]:
        return await self.queries.step_tries(run_id, step_key, values)

    async def logs(self, run_id: str, limit: int = 1000) -> list[dict]:
        return await self.queries.logs(run_id, limit)

    async def sql(self, query: str, limit: int = 10_000) -> tuple[list[str], list[tuple]]:
        return await self.queries.sql(query, limit)
