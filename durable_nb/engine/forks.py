"""Forks: a new run, linked to a finished run (``runs.fork_of``, ``fork_step``), that reuses
what the source recorded before a step and runs everything from that step on anew, with
the code of a task version of its choice (by default the newest one of the same task id).

A task run is forked from a step key (``name#occurrence``; by default its failed step):
the source's steps that completed before that step's first try started (in the order of
their first tries), and its waits resolved by then, are copied as rows of the new run and
handed to its worker as recorded (``Run.steps``, ``Run.waits``), so they return their
recorded results without running. A cell run is forked from a statement number N (by
default its last checkpoint): the checkpoint after statement N is copied (its pieces are
shared by hash) and the cell's text, new or the source's, runs from statement N+1; what the
first N statements recorded (steps, waits) is copied by the occurrence counts that
checkpoint holds.

The source is read in a thread (``read_plan``); the run is made on the loop (``Forks``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.errors import RunNotFound, WaitConflict
from ..core.status import TERMINAL, RunStatus, StepStatus, WaitOutcome
from ..store.records import Insert, Record
from . import recovery
from .model import Run, Wait
from .scheduler import RunOptions, Scheduler
from .state import EngineState

MAX_FRESH = 1000  # cell variables a fork may take from its payload instead of the checkpoint
TREE_LIMIT = 200  # runs of a fork tree a view is given
_LISTED = 20  # step keys an error lists

_STEP_ORDER = (
    "SELECT step_key, min(started_at) AS first_at, min(rowid) AS first_row, "
    "bool_or(status = ?) AS completed, max(ended_at) FILTER (WHERE status = ?) AS done_at "
    "FROM steps WHERE run_id = ? GROUP BY step_key ORDER BY first_at, first_row")


@dataclass
class ForkPlan:
    """What a fork copies from its source, read from the store."""

    source: dict  # the source's runs row, payload included
    task_hash: str  # the code the fork runs
    fork_step: str | None  # a step key, or a cell's statement number; None: after the end
    step_rows: list[dict] = field(default_factory=list)
    wait_rows: list[dict] = field(default_factory=list)
    steps: dict = field(default_factory=dict)  # recorded steps, as ``Run.steps`` holds them
    step_calls: dict = field(default_factory=dict)  # their calls (``engine.step_calls``)
    waits: dict[str, Wait] = field(default_factory=dict)
    checkpoint: dict | None = None  # a cell: the copied checkpoint row, manifest parsed

    def apply(self, s: EngineState, run: Run) -> None:
        """Give the new run its recorded state and journal the copied rows (before
        anything can start the run: ``RunOptions.prepare``)."""
        run.steps.update(self.steps)
        run.step_calls.update({k: list(c) for k, c in self.step_calls.items()})
        for key, w in self.waits.items():
            run.waits[key] = replace(w, timer=None)
        records: list[Record] = [
            Insert("steps", {**r, "run_id": run.id, "generation": 0, "run_attempt": 1})
            for r in self.step_rows]
        records += [Insert("waits", {**r, "run_id": run.id}) for r in self.wait_rows]
        if self.checkpoint is not None:
            records += self._checkpoint_records(s, run)
        s.write(records)

    def _checkpoint_records(self, s: EngineState, run: Run) -> list[Record]:
        cp = self.checkpoint or {}
        now = s.now()
        run.checkpoint = {"statement": cp["statement"], "manifest": cp["vars"],
                          "counts": cp["counts"], "seq": 1}
        return [
            Insert("checkpoints", {
                "run_id": run.id, "seq": 1, "statement": cp["statement"], "created_at": now,
                "manifest": json.dumps({"vars": cp["vars"], "counts": cp["counts"], "seq": 1,
                                        "total": cp["total"]}),
                "size": cp["size"]}),
            Insert("span_records", {
                "span_id": f"{run.id}/c1", "run_id": run.id, "parent_id": f"{run.id}/a1",
                "kind": "checkpoint", "name": f"statement {cp['statement']}",
                "start_at": now, "end_at": now, "status": StepStatus.COMPLETED,
                "attributes": json.dumps({
                    "statement": cp["statement"], "total": cp["total"], "size": cp["size"],
                    "new_bytes": 0, "seconds": 0.0, "variables": sorted(cp["vars"]),
                    "copied_from": self.source["id"]})}),
        ]


# ---------------------------------------------------------------------- reading the source

def read_plan(s: EngineState, run_id: str, from_step: str | None, task_hash: str | None,
              fresh: list[str]) -> ForkPlan:
    """What a fork of ``run_id`` copies (in a thread). RunNotFound, WaitConflict (the run
    has not finished) or ValueError (a step or statement it never recorded)."""
    q = s.store.query
    rows = q("SELECT * FROM runs WHERE id = ?", [run_id])
    if not rows:
        raise RunNotFound(f"no run with id '{run_id}' in {s.config.db_path}; list runs "
                          "with `durable-nb runs` or dn.runs()")
    row = rows[0]
    if row["status"] not in TERMINAL:
        raise WaitConflict(
            f"run {run_id} is {row['status']}; only a finished run can be forked (what it "
            "recorded must be final). Wait for it to end, or cancel it first.")
    cell = row["kind"] == "cell"
    if fresh and not cell:
        raise ValueError("'fresh' names variables of a cell's checkpoint; run "
                         f"{run_id} is a task run")
    plan = ForkPlan(row, task_hash or _default_code(q, row), None)
    loaded = recovery.read_run(s, run_id)
    if loaded is None:
        raise LookupError(f"the code of run {run_id}'s task is not in the store")
    source = loaded[0]
    if cell:
        kept = _cell_plan(q, plan, from_step, fresh)
    else:
        kept = _task_plan(q, plan, from_step)
    keys = sorted(kept.keys)
    plan.step_rows = q(
        "SELECT * FROM steps WHERE run_id = ? AND status = ? AND step_key IN "
        "(SELECT unnest(?::VARCHAR[])) QUALIFY row_number() OVER "
        "(PARTITION BY step_key ORDER BY ended_at) = 1 ORDER BY started_at",
        [run_id, StepStatus.COMPLETED, keys])
    plan.steps = {k: source.steps[k] for k in keys if k in source.steps}
    plan.step_calls = {k: source.step_calls[k] for k in keys if k in source.step_calls}
    for w in q("SELECT * FROM waits WHERE run_id = ? AND resolved_at IS NOT NULL "
               "QUALIFY row_number() OVER (PARTITION BY wait_key ORDER BY resolved_at) = 1 "
               "ORDER BY created_at", [run_id]):
        mem = source.waits.get(w["wait_key"])
        if (mem is not None and mem.resolution is not None and kept.wait(w)
                and w["outcome"] not in (WaitOutcome.ABANDONED, WaitOutcome.CANCELED)):
            plan.wait_rows.append(w)
            plan.waits[w["wait_key"]] = mem
    return plan


def _default_code(q: Callable[..., list[dict]], row: dict) -> str:
    """The code a fork runs unless told: a cell's own (its text is in the payload); a
    task's newest registered version (the tasks row of its id registered last)."""
    if row["kind"] == "cell":
        return str(row["task_hash"])
    newest = q("SELECT hash FROM tasks WHERE task_id = ? ORDER BY created_at DESC LIMIT 1",
               [row["task_id"]])
    return str(newest[0]["hash"]) if newest else str(row["task_hash"])


class _Kept:
    """Which recorded keys and waits a fork copies."""

    def __init__(self, keys: set[str], wait: Callable[[dict], bool]):
        self.keys = keys
        self.wait = wait


def _task_plan(q: Callable[..., list[dict]], plan: ForkPlan, from_step: str | None) -> _Kept:
    """The steps before ``from_step`` (default: the first step that never completed) that
    had completed when it first started, and the waits resolved by then."""
    run_id = plan.source["id"]
    order = q(_STEP_ORDER, [StepStatus.COMPLETED, StepStatus.COMPLETED, run_id])
    keys = [r["step_key"] for r in order]
    if from_step is None:
        failed = [r["step_key"] for r in order if not r["completed"]]
        if failed:
            from_step = failed[0]
        elif plan.source["status"] == RunStatus.COMPLETED:
            raise ValueError(
                f"run {run_id} completed and has no failed step to fork from; name the step "
                f"to run anew from: {_listing(keys)}")
    plan.fork_step = from_step
    if from_step is None:  # it ended outside any step: every completed step is reused
        until = math.inf
        kept = {r["step_key"] for r in order if r["completed"]}
    else:
        if from_step not in keys:
            raise ValueError(f"run {run_id} has no step {from_step!r}; its steps, in the "
                             f"order they first ran: {_listing(keys)}")
        at = keys.index(from_step)
        until = order[at]["first_at"]
        kept = {r["step_key"] for r in order[:at]
                if r["completed"] and r["done_at"] is not None and r["done_at"] <= until}
    return _Kept(kept, lambda w: w["created_at"] < until and w["resolved_at"] <= until)


def _listing(keys: list[str]) -> str:
    if not keys:
        return "it recorded none"
    more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


def _cell_plan(q: Callable[..., list[dict]], plan: ForkPlan, from_step: str | None,
               fresh: list[str]) -> _Kept:
    """The checkpoint after statement ``from_step`` (default: the latest), less the
    variables in ``fresh``, and what the statements before it recorded."""
    run_id = plan.source["id"]
    if from_step is not None and not (from_step.isascii() and from_step.isdigit()):
        raise ValueError(f"a cell run is forked from a statement number N (the checkpoint "
                         f"after statement N is restored), not {from_step!r}")
    n = None if from_step is None else int(from_step)
    rows = q("SELECT * FROM checkpoints WHERE run_id = ? AND (? IS NULL OR statement = ?) "
             "ORDER BY seq DESC LIMIT 1", [run_id, n, n])
    if not rows and n:
        have = [r["statement"] for r in q(
            "SELECT DISTINCT statement FROM checkpoints WHERE run_id = ? ORDER BY statement",
            [run_id])]
        listing = ", ".join(map(str, have)) if have else "none"
        raise ValueError(f"run {run_id} has no checkpoint after statement {n}; it has "
                         f"checkpoints after statements: {listing} (0 runs the cell from "
                         "its start)")
    counts: dict[str, int] = {}
    if rows:
        m = json.loads(rows[0]["manifest"])
        counts = dict(m.get("counts") or {})
        plan.checkpoint = {"statement": rows[0]["statement"], "counts": counts,
                           "vars": {k: v for k, v in m["vars"].items() if k not in fresh},
                           "total": m.get("total"), "size": rows[0]["size"]}
    plan.fork_step = str(rows[0]["statement"] if rows else 0)

    def before(key: str) -> bool:
        name, _, occurrence = key.rpartition("#")
        return occurrence.isdigit() and int(occurrence) <= counts.get(name, 0)

    order = q(_STEP_ORDER, [StepStatus.COMPLETED, StepStatus.COMPLETED, run_id])
    kept = {r["step_key"] for r in order if r["completed"] and before(r["step_key"])}
    return _Kept(kept, lambda w: before(w["wait_key"]))


def checked_fresh(fresh: Any) -> list[str]:
    """The variable names of a fork's ``fresh`` (a list of identifiers)."""
    if fresh is None:
        return []
    if (not isinstance(fresh, (list, tuple)) or len(fresh) > MAX_FRESH
            or not all(isinstance(n, str) and n.isidentifier() for n in fresh)):
        raise ValueError(f"fresh must be a list of at most {MAX_FRESH} variable names, got "
                         f"{fresh!r:.100}")
    return list(fresh)


# ---------------------------------------------------------------------- making the fork

class Forks:
    """``Engine.fork``: a new run from a finished run's recorded prefix."""

    def __init__(self, state: EngineState, scheduler: Scheduler,
                 pruning: Callable[[str], bool] = lambda run_id: False):
        self.s = state
        self.scheduler = scheduler
        self.pruning = pruning  # whether a prune in flight is deleting the run

    def _not_pruned(self, run_id: str) -> None:
        if self.pruning(run_id):
            raise WaitConflict(f"run {run_id} is being pruned (deleted as an old finished "
                               "run); it cannot be forked")

    async def fork(self, run_id: str, from_step: str | None = None,
                   task_hash: str | None = None, *, payload: bytes | None = None,
                   fresh: Any = None, origin: Any = None) -> dict:
        """Create the fork; durable when it returns {id, fork_of, fork_step, task_hash}.
        LookupError for a task hash the engine does not know (register it first)."""
        s = self.s
        s.writer.check_writable()
        names = checked_fresh(fresh)
        if task_hash is not None and task_hash not in s.tasks:
            raise LookupError(f"unknown task hash {task_hash}: register the task's code "
                              "first (PUT /tasks/{hash})")
        self._not_pruned(run_id)
        plan = await asyncio.get_running_loop().run_in_executor(
            None, read_plan, s, run_id, from_step, task_hash, names)
        self._not_pruned(run_id)  # what was read stays: the prune did not start meanwhile
        row = plan.source
        task = s.tasks.get(plan.task_hash)
        if task is None:
            raise LookupError(f"the code of task '{row['task_id']}' is not in the store")
        kind = task.options.get("kind", "task")
        if kind != row["kind"]:
            raise ValueError(f"run {run_id} is a {row['kind']} run; a fork of it runs a "
                             f"{row['kind']}, not the {kind} '{task.task_id}'")
        opts = RunOptions.checked(None, None, list(row["tags"] or []), row["concurrency_key"],
                                  origin=row.get("origin") if origin is None else origin,
                                  priority=row.get("priority") or 0)
        opts.fork_of, opts.fork_step = run_id, plan.fork_step
        opts.prepare = lambda run: plan.apply(s, run)
        ids, _ = self.scheduler.create_runs(
            task.hash, [row["payload"] if payload is None else payload], opts)
        await s.writer.write_durable([])
        return {"id": ids[0], "fork_of": run_id, "fork_step": plan.fork_step,
                "task_hash": task.hash}


# ---------------------------------------------------------------------- the fork tree

_UP = ("WITH RECURSIVE up(id, fork_of, depth) AS ("
       "SELECT id, fork_of, 0 FROM runs WHERE id = ? UNION ALL "
       "SELECT r.id, r.fork_of, up.depth + 1 FROM runs r JOIN up ON r.id = up.fork_of "
       "WHERE up.depth < 100) SELECT id FROM up ORDER BY depth DESC LIMIT 1")
_DOWN = ("WITH RECURSIVE down(id, depth) AS ("
         "SELECT CAST(? AS VARCHAR), 0 UNION ALL "
         "SELECT r.id, down.depth + 1 FROM runs r JOIN down ON r.fork_of = down.id "
         "WHERE down.depth < 100) "
         "SELECT r.id, r.fork_of, r.fork_step, r.status, r.task_id, r.task_hash, r.kind, "
         "r.created_at, r.started_at, r.finished_at, d.depth FROM runs r JOIN "
         "(SELECT id, min(depth) AS depth FROM down GROUP BY id) d ON r.id = d.id "
         "ORDER BY d.depth, r.created_at LIMIT ?")


async def tree(query: Callable[[str, list], Awaitable[list[dict]]], row: dict,
               always: bool = False) -> dict | None:
    """The fork tree ``row``'s run belongs to: its root (the source of its sources) and
    every run forked from it, below it, at most ``TREE_LIMIT`` (oldest first per level).
    None for a run that is neither a fork nor forked, unless ``always``."""
    run_id = row["id"]
    if row.get("fork_of") is None:
        if not always and not await query("SELECT id FROM runs WHERE fork_of = ? LIMIT 1",
                                          [run_id]):
            return None
        root = run_id
    else:
        root = (await query(_UP, [run_id]))[0]["id"]
    runs = await query(_DOWN, [root, TREE_LIMIT + 1])
    return {"root": root, "runs": runs[:TREE_LIMIT], "truncated": len(runs) > TREE_LIMIT}
