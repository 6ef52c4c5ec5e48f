"""Forks: ``POST /runs/{run_id}/fork`` starts a run that reuses what a finished run
recorded before a step and runs the rest anew (``engine.forks``); ``GET
/runs/{run_id}/forks`` is the fork tree the run belongs to (its sources and their forks),
which ``GET /runs/{run_id}`` also gives as ``fork_tree`` when the run has one.

A fork runs code (the task's, or a cell's new text in ``payload_b64``), so it needs the
execute permission.
"""

from __future__ import annotations

from typing import Any

from ..engine import forks
from . import apischema as S
from .routing import STR, Request, Route, out, unb64

FORK = S.obj({
    "from_step": {**S.nullable(S.string(1000, 1)), "description":
                  "a task run: the step key (name#occurrence) to run anew from (default: its "
                  "failed step); a cell run: the statement number N whose checkpoint is "
                  "restored, the cell running from statement N+1 (default: its last "
                  "checkpoint; 0: from the start)"},
    "task_hash": {**S.nullable(S.TASK_HASH), "description":
                  "the registered code the fork runs (default: the newest version of the "
                  "source's task id; a cell: its own)"},
    "payload_b64": {**S.nullable(S.B64), "description":
                    "the fork's payload (default: the source's); a cell's new text and "
                    "inputs"},
    "fresh": {"type": "array", "maxItems": forks.MAX_FRESH, "items": S.string(200, 1),
              "description": "a cell run: variables of the checkpoint the fork takes from "
              "its payload's inputs instead (the notebook's values as they are now)"},
    "origin": {**S.ORIGIN, "type": ["object", "null"]},
})

_TREE_RUN = out({"id": STR, "fork_of": {"type": ["string", "null"]},
                 "fork_step": {"type": ["string", "null"]}, "status": STR, "task_id": STR,
                 "depth": {"type": "integer"}}, ("id", "status"))


async def fork_run(r: Request) -> tuple[int, Any]:
    b = r.body
    try:
        made = await r.engine.fork(
            r.args[0], b.get("from_step"), b.get("task_hash"),
            payload=unb64(b, "payload_b64"), fresh=b.get("fresh"), origin=b.get("origin"))
    except LookupError as exc:
        return 409, {"error": str(exc), "code": "unknown_task"}
    return 201, made


async def fork_tree(r: Request) -> tuple[int, Any]:
    row = await r.engine.queries.row(r.args[0])
    tree = await forks.tree(r.engine.queries.query, row, always=True)
    return 200, {"run_id": r.args[0], **(tree or {})}


ROUTES: list[Route] = [
    Route("POST", "/runs/{run_id}/fork", "Fork a finished run: a new run (fork_of, "
          "fork_step) that reuses the steps it recorded before `from_step` and runs the rest "
          "with the code of `task_hash` (default: the newest version of its task); a cell "
          "run restores the checkpoint after statement `from_step` and runs its text (or the "
          "new text in `payload_b64`) from the next statement. 409 when the run has not "
          "finished or the task is not registered (code unknown_task), 422 for a step or "
          "statement it never recorded", fork_run, action="execute", body=FORK, status=201,
          response=out({"id": STR, "fork_of": STR, "fork_step": {"type": ["string", "null"]},
                        "task_hash": STR}, ("id", "fork_of"))),
    Route("GET", "/runs/{run_id}/forks", "The fork tree the run belongs to: its `root` (the "
          "source of its sources) and every run forked from it below, each with fork_of "
          "and fork_step (at most 200, by depth then age; `truncated` when there are more)",
          fork_tree,
          response=out({"run_id": STR, "root": STR, "truncated": {"type": "boolean"},
                        "runs": {"type": "array", "items": _TREE_RUN}},
                       ("run_id", "root", "runs"))),
]
