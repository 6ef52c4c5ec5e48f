"""Lifecycle hooks: when a run of a task with hooks ends, the hook task's run for that
ending is created, in the same journal batch as the run's terminal status.

A hook run is an ordinary run of the hook task (retried by its policy, listed, shown),
created with ``hook_of`` (the run it is for), ``hook_kind`` and an idempotency key per
ending (``core.hooks.hook_key``); its payload is the ended run's id. Every way a run ends
goes through ``Lifecycle.finish``, which calls ``Hooks.run_finished``. At start,
``owed`` finds endings whose hook run was never recorded (an engine killed before the
write that holds both was whole on disk) and ``fire`` creates them. A prune keeps a hook
run while its run is there (``store.retention.select_runs``), so it is never owed again.
The engine never loads the client: the payload is a plain pickle of ``((run_id,), {})``.
"""

from __future__ import annotations

import pickle
from typing import Any

from ..core.hooks import HOOK_KINDS, KIND_OF_STATUS, hook_key
from ..core.status import TERMINAL, sql_list
from .model import Run
from .scheduler import RunOptions, Scheduler
from .state import EngineState

Owed = tuple[str, str, str, int]  # (run id, hook kind, hook task hash, generation)


def payload(run_id: str) -> bytes:
    """The hook run's arguments: the ended run's id (the client's wrapper makes it a
    ``RunHandle``)."""
    return pickle.dumps(((run_id,), {}), protocol=4)


class Hooks:
    """Creates the hook runs of runs that end."""

    def __init__(self, state: EngineState, scheduler: Scheduler):
        self.s = state
        self.scheduler = scheduler

    def run_finished(self, run: Run, status: str) -> None:
        """``run`` just ended with ``status``: start its hook for that ending, if its task
        has one. A hook run's own ending fires nothing (hook tasks have no hooks)."""
        if run.hook_of is not None:  # views of the run it is for show its status
            self.s.emit({"type": "hook", "run_id": run.hook_of, "hook_id": run.id,
                         "hook_kind": run.hook_kind, "status": status, "at": self.s.now()})
            return
        kind = KIND_OF_STATUS.get(status)
        hooks = run.task.options.get("hooks") or {}
        if kind is None or kind not in hooks:
            return
        self.fire([(run.id, kind, hooks[kind], run.generation)])

    def fire(self, owed: list[Owed]) -> list[str]:
        """Create the hook runs of these endings (idempotent: an ending's hook run is
        created once); returns their ids. A hook task the engine does not know (a store
        damaged by hand) is reported as a warning event and skipped."""
        ids: list[str] = []
        for run_id, kind, task_hash, generation in owed:
            if task_hash not in self.s.tasks:
                self.s.emit({"type": "warning", "run_id": run_id, "at": self.s.now(),
                             "message": f"the {kind} hook's task {task_hash[:12]} is not "
                             "registered, so the hook cannot run"})
                continue
            opts = RunOptions(hook_of=run_id, hook_kind=kind,
                              idempotency_key=hook_key(run_id, kind, generation))
            new, _ = self.scheduler.create_runs(task_hash, [payload(run_id)], opts)
            ids.extend(new)
        return ids


def owed(s: EngineState) -> list[Owed]:
    """Endings of runs whose task has a hook for them and that have no hook run (in a
    thread, at start). Only tasks that have hooks are looked at, so a store without hooks
    costs nothing."""
    pairs: list[str] = []
    hook_of: dict[tuple[str, str], str] = {}
    for info in s.tasks.values():
        for kind, h in (info.options.get("hooks") or {}).items():
            if kind in HOOK_KINDS:
                pairs.append(f"{info.hash}:{kind}")
                hook_of[(info.hash, kind)] = h
    if not pairs:
        return []
    kind_sql = "CASE r.status " + " ".join(
        f"WHEN '{status}' THEN '{kind}'" for status, kind in KIND_OF_STATUS.items()) + " END"
    rows = s.store.query(
        f"SELECT r.id, r.task_hash, {kind_sql} AS kind, coalesce(r.generation, 0) AS gen "
        f"FROM runs r WHERE r.status IN ({sql_list(TERMINAL)}) AND r.hook_of IS NULL "
        f"AND (r.task_hash || ':' || {kind_sql}) IN (SELECT unnest(?::VARCHAR[])) "
        f"AND NOT EXISTS (SELECT 1 FROM runs h WHERE h.hook_of = r.id AND h.idempotency_key "
        f"= 'hook:' || r.id || ':' || {kind_sql} || ':' || coalesce(r.generation, 0)) "
        "ORDER BY r.finished_at NULLS LAST", [pairs])
    return [(r["id"], r["kind"], hook_of[(r["task_hash"], r["kind"])], int(r["gen"]))
            for r in rows]


def hook_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hook runs of a run as its detail lists them."""
    return [{"id": r["id"], "task_id": r["task_id"], "status": r["status"],
             "hook_kind": r["hook_kind"], "created_at": r["created_at"]} for r in rows]
