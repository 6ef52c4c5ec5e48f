"""Recovery at start: the engine's memory is rebuilt from the store, and every unfinished
run continues from where the store says it was.

``load`` reads (in a thread, before the loop schedules anything); ``resume`` acts on the
loop: EXECUTING runs were interrupted (their attempt is recorded INTERRUPTED, not counted
against retries) and are queued again; every pending wait's deadline, delay and ttl is
armed again whatever the run's status.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Callable
from functools import partial

from ..core import serial as _serial
from ..core.status import TERMINAL, AttemptOutcome, RunStatus, StepStatus, sql_list
from ..store.records import Update
from . import step_calls
from .model import Run, TaskInfo, Wait, json_or
from .scheduler import Scheduler
from .state import EngineState
from .waits import Waits


def load(s: EngineState) -> None:
    """Load tasks, queues, idempotency keys, events and the unfinished runs."""
    q = s.store.query
    for row in q("SELECT * FROM tasks", sync=False):
        s.tasks[row["hash"]] = TaskInfo(row["hash"], row["task_id"], row["code"],
                                        json.loads(row["sys_path"]), json.loads(row["options"]))
    for row in q("SELECT name, concurrency_limit, rate_limit, rate_per FROM queues",
                 sync=False):
        s.queues[row["name"]] = row["concurrency_limit"]
        if row["rate_limit"]:
            s.rates[row["name"]] = (row["rate_limit"], row["rate_per"])
    _load_rate_windows(s, q)
    for row in q("SELECT key, data FROM events", sync=False):
        s.events[row["key"]] = row["data"]
    # log lines keep their order across restarts: numbering goes on after the last one
    (last,) = q("SELECT coalesce(max(seq), -1) AS n FROM logs", sync=False)
    s.log_seq = itertools.count(int(last["n"]) + 1)
    # sorted here: DuckDB sorting the wide rows (payloads) costs more than the query
    rows = q(f"SELECT * FROM runs WHERE status NOT IN ({sql_list(TERMINAL)})", sync=False)
    rows.sort(key=lambda r: r["created_at"])
    for row in rows:
        task = s.tasks.get(row["task_hash"])
        if task is not None:
            s.runs[row["id"]] = _run_of(s, row, task)
    del rows
    if not s.runs:
        return
    ids = [list(s.runs)]
    # idempotency keys of unfinished runs and of their children; a finished run's key is
    # looked up in the store when a trigger names it (``idempotent_run``)
    for run in s.runs.values():
        if run.idempotency_key is not None:
            s.idem[(run.task.task_id, run.idempotency_key)] = run.id
    for row in q("SELECT task_id, idempotency_key, id FROM runs WHERE parent_run_id IS NOT NULL "
                 "AND idempotency_key IS NOT NULL AND parent_run_id IN "
                 "(SELECT unnest(?::VARCHAR[]))", ids, sync=False):
        s.idem[(row["task_id"], row["idempotency_key"])] = row["id"]
    for run in s.runs.values():
        if run.parent_run_id in s.runs:
            s.runs[run.parent_run_id].children.append(run.id)
    # the ids as one list parameter: binding thousands of parameters costs far more
    _fill(partial(q, sync=False), s.runs, s.children_of, s.child_results,
          ("SELECT unnest(?::VARCHAR[])", ids))


def read_run(s: EngineState, run_id: str) -> tuple[Run, dict, dict] | None:
    """A finished run as recovery would load it (for a resume; in a thread, touching no
    shared state): the run, and its finished children by id and their results. None when
    its task's code is not in the store."""
    (row,) = s.store.query("SELECT * FROM runs WHERE id = ?", [run_id])
    task = s.tasks.get(row["task_hash"])
    if task is None:
        return None
    run = _run_of(s, row, task)
    children_of: dict[str, list[str]] = defaultdict(list)
    child_results: dict[str, tuple] = {}
    _fill(s.store.query, {run.id: run}, children_of, child_results, ("?", [run.id]))
    return run, children_of, child_results


def idempotent_run(s: EngineState, task_id: str, key: str) -> str | None:
    """The run of ``task_id`` created with idempotency key ``key``, from the store (in a
    thread): the engine keeps only the keys of unfinished runs in memory."""
    rows = s.store.query("SELECT id FROM runs WHERE task_id = ? AND idempotency_key = ? "
                         "ORDER BY created_at LIMIT 1", [task_id, key])
    return rows[0]["id"] if rows else None


Scope = tuple[str, list]  # SQL giving run ids (for ``run_id IN (...)``) and its parameters


def _fill(q: Query, runs: dict[str, Run], children_of: dict, child_results: dict,
          scope: Scope) -> None:
    """Steps, attempts, waits, the latest checkpoint and finished children of ``runs``
    (the runs ``scope`` selects)."""
    _load_steps(q, runs, scope)
    _load_waits(q, runs, scope)
    _load_checkpoints_and_children(q, runs, scope, children_of, child_results)


Query = Callable[..., list[dict]]  # Store.query, with or without syncing first


def _load_rate_windows(s: EngineState, q: Query) -> None:
    """The attempt starts still inside each rate-limited queue's window: a rate limit holds
    across restarts."""
    if not s.rates:
        return
    since = s.now() - max(per for _, per in s.rates.values())
    rows = q(f"SELECT r.queue, r.concurrency_key, a.started_at FROM attempts a JOIN runs r "
             f"ON r.id = a.run_id WHERE a.started_at >= ? AND r.queue IN "
             f"({', '.join('?' * len(s.rates))}) ORDER BY a.started_at",
             [since, *s.rates], sync=False)
    for row in rows:
        s.starts[(row["queue"], row["concurrency_key"])].append(row["started_at"])


def _run_of(s: EngineState, row: dict, task: TaskInfo) -> Run:
    return Run(
        id=row["id"], task=task, status=row["status"], queue=row["queue"],
        ckey=row["concurrency_key"], payload=row["payload"], created_at=row["created_at"],
        seq=next(s.seq), parent_run_id=row["parent_run_id"], attempts=row["attempts"] or 0,
        started_at=row["started_at"], delay_until=row["delay_until"],
        generation=row["generation"] or 0, tags=list(row["tags"] or []),
        idempotency_key=row["idempotency_key"], replay_of=row["replay_of"], ttl=row["ttl"],
        error=row["error"], duration_warning=bool(row["duration_warning"]),
        origin=row.get("origin"), priority=row.get("priority") or 0,
        metadata=json_or(row.get("metadata"), {}),
        metadata_calls=json_or(row.get("metadata_calls"), {}),
        progress_report=json_or(row.get("progress"), None),
        schedule_id=row.get("schedule_id"), schedule_tick=row.get("schedule_tick"),
        hook_of=row.get("hook_of"), hook_kind=row.get("hook_kind"),
        debounce_key=row.get("debounce_key"), debounce_until=row.get("debounce_until"),
        traceparent=row.get("traceparent"), fork_of=row.get("fork_of"),
        fork_step=row.get("fork_step"))


def _load_steps(q: Query, runs: dict[str, Run], scope: Scope) -> None:
    """Completed steps of any generation; failed tries and errors of the current one; and
    how many attempts raised (the retry policy counts them) and crashed in a row."""
    for row in q(f"SELECT run_id, step_key, status, output, attempt, generation, "
                 f"{step_calls.COLUMNS} FROM steps "
                 f"WHERE run_id IN ({scope[0]}) ORDER BY started_at", scope[1]):
        run = runs.get(row["run_id"])
        if run is None:  # a run whose task's code is not in the store
            continue
        step_calls.note_row(run, row, row["status"] != StepStatus.FAILED)
        if row["status"] == StepStatus.COMPLETED:
            run.steps[row["step_key"]] = ("ok", row["output"])
        elif row["generation"] == run.generation:
            if row["status"] == StepStatus.ERRORED:
                run.steps[row["step_key"]] = ("err", row["output"])
            else:
                run.step_failures[row["step_key"]] = max(
                    run.step_failures.get(row["step_key"], 0), row["attempt"])
    for row in q(f"SELECT run_id, list(outcome ORDER BY number) AS outcomes FROM attempts "
                 f"WHERE run_id IN ({scope[0]}) GROUP BY run_id", scope[1]):
        run = runs.get(row["run_id"])
        if run is None:
            continue
        outcomes = list(row["outcomes"])
        run.failures = outcomes.count(AttemptOutcome.FAILED)
        while outcomes and outcomes[-1] == AttemptOutcome.CRASHED:  # a crash loop goes on
            run.crashes += 1
            outcomes.pop()


def _load_waits(q: Query, runs: dict[str, Run], scope: Scope) -> None:
    for row in q(f"SELECT * FROM waits WHERE run_id IN ({scope[0]}) "
                 "ORDER BY resolved_at NULLS LAST, created_at", scope[1]):
        run = runs.get(row["run_id"])
        if run is None:
            continue
        if row["wait_key"] in run.waits:
            continue  # an earlier release could leave a second row of the same key
        w = Wait(row["wait_key"], row["kind"], row["name"], row["created_at"],
                 row["deadline"], json.loads(row["target"]) if row["target"] else None,
                 form=json.loads(row["form"]) if row.get("form") else None)
        if row["resolved_at"] is not None:
            w.resolution = _serial.loads(row["result"])
        run.waits[w.key] = w


def _load_checkpoints_and_children(q: Query, runs: dict[str, Run], scope: Scope,
                                   children_of: dict, child_results: dict) -> None:
    for row in q(f"SELECT run_id, statement, manifest FROM checkpoints "
                 f"WHERE run_id IN ({scope[0]}) "
                 "QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY seq DESC) = 1",
                 scope[1]):
        if row["run_id"] not in runs:
            continue
        m = json.loads(row["manifest"])
        runs[row["run_id"]].checkpoint = {
            "statement": row["statement"], "manifest": m["vars"], "counts": m["counts"],
            "seq": m["seq"]}
    for row in q(f"SELECT id, parent_run_id, status, output, error FROM runs "
                 f"WHERE parent_run_id IS NOT NULL AND parent_run_id IN ({scope[0]}) "
                 f"AND status IN ({sql_list(TERMINAL)})", scope[1]):
        children_of[row["parent_run_id"]].append(row["id"])
        child_results[row["id"]] = (
            row["status"], row["output"], json.loads(row["error"]) if row["error"] else None)


def _bind(fn: Callable[[Run], None], run: Run) -> Callable[[], None]:
    return lambda: fn(run)


def resume(s: EngineState, scheduler: Scheduler, waits: Waits) -> None:
    """Continue every loaded run from its status (on the loop, once ``load`` is done)."""
    now = s.now()
    for run in list(s.runs.values()):
        # deadlines of pending waits run whatever the run's status: a run killed in a
        # wait's grace period was EXECUTING, and its sleep or timeout must still fire
        for w in run.waits.values():
            waits.arm(run, w)
        if run.ttl and run.attempts == 0 and run.status in (RunStatus.QUEUED,
                                                             RunStatus.DELAYED):
            s.arm(run, run.created_at + run.ttl, _bind(scheduler.expire, run))
        if run.status == RunStatus.EXECUTING:
            s.write([Update("attempts", {"run_id": run.id, "number": run.attempts},
                      {"ended_at": now, "outcome": AttemptOutcome.INTERRUPTED,
                       "error_message": "the engine stopped during this attempt"})])
            s.set_status(run, RunStatus.QUEUED, "engine restarted; resuming")
            s.enqueue(run, since=-math.inf)  # it was running: it resumes before any queued run
        elif run.status == RunStatus.QUEUED:
            s.enqueue(run, since=run.created_at)  # its wait so far counts for aging
        elif run.status == RunStatus.DELAYED:
            s.arm(run, run.delay_until or now, _bind(scheduler.undelay, run))
        elif run.status == RunStatus.WAITING:
            pending = [w for w in run.waits.values() if w.resolution is None]
            if not pending:
                s.set_status(run, RunStatus.QUEUED, "wait resolved")
                s.enqueue(run)
            # which of them its attempt needed is not kept: any of them resolving resumes
            # it (an awaitable wait no longer needed costs a replay that suspends again)
            run.idle_waits = {w.key for w in pending}
            for w in pending:
                run.current_wait = w.key
                waits.try_resolve_now(run, w)
