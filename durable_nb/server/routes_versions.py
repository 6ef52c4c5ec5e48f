"""Code versions and comparisons: ``GET /versions`` (a task's versions and the unfinished
runs of each), ``GET /runs/{id}/source`` (the source text a run ran, for diffs) and
``GET /runs/{id}/compare/{other}`` (two runs side by side)."""

from __future__ import annotations

from typing import Any

from ..engine.compare import compare_runs
from ..engine.versions import run_source, version_list
from . import apischema as S
from .apischema import BadRequest, Param
from .routing import STR, Request, Route, out

_VERSION = out({"number": {"type": "integer"}, "hash": STR, "created_at": {"type": "number"},
                "latest": {"type": "boolean"}}, ("number", "hash"))
_NULLABLE_VERSION = {**_VERSION, "type": ["object", "null"]}


async def get_versions(r: Request) -> tuple[int, Any]:
    task_id = r.params.get("task_id")
    if not task_id:
        raise BadRequest("query parameter 'task_id' is required: the task id (or cell name) "
                         "whose versions to list", field="task_id", rule="required")
    return 200, await version_list(r.engine.queries, task_id, r.params.get("except_version"))


async def get_source(r: Request) -> tuple[int, Any]:
    return 200, await run_source(r.engine.queries, r.args[0])


async def get_comparison(r: Request) -> tuple[int, Any]:
    return 200, await compare_runs(r.engine.queries, r.args[0], r.args[1])


ROUTES: list[Route] = [
    Route("GET", "/versions", "The versions of a task id (or of an unnamed %%durable cell: "
          "`<notebook>#<cell id>`), oldest first, numbered by first registration, each with "
          "its unfinished runs (`unfinished`, and up to 100 ids in `runs`); with "
          "`except_version`, only the other versions that have unfinished runs", get_versions,
          query=(Param("task_id", S.string(2100, 1), "a task id or a cell's name"),
                 Param("except_version", S.string(64, 1), "only the other versions that "
                       "have unfinished runs (a version's hash)")),
          response=out({"task_id": STR, "latest": {"type": ["integer", "null"]},
                         "versions": {"type": "array", "items": _VERSION}},
                        ("task_id", "versions"))),
    Route("GET", "/runs/{run_id}/source", "The source text of the code the run ran (null when "
          "it was not recorded: tasks registered by earlier releases) and its version",
          get_source,
          response=out({"run_id": STR, "task_id": STR, "task_hash": STR,
                         "source": {"type": ["string", "null"]},
                         "version": _NULLABLE_VERSION}, ("run_id", "source"))),
    Route("GET", "/runs/{run_id}/compare/{other_id}", "Two runs side by side: each run (`a`, "
          "`b`: status, duration, version, a hash of its output, error), the fields that "
          "differ (`run_diff`) and their steps (a cell's statements) aligned by key, each "
          "row with both sides' status, duration, tries and output preview and what differs "
          "(`diff`: missing, status, output, args)", get_comparison,
          response=out({"a": {"type": "object"}, "b": {"type": "object"},
                         "run_diff": {"type": "array", "items": STR},
                         "rows": {"type": "array", "items": {"type": "object"}},
                         "differences": {"type": "integer"}}, ("a", "b", "rows"))),
]
