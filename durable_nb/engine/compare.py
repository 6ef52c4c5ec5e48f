"""Reads for comparing two runs (``GET /runs/{id}/compare/{other}``): each run's summary
with its version and a hash of its return value, and their steps (a cell's statements)
aligned by key (``core.compare``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..core.checkpoints import entry_blobs
from ..core.compare import compare_rows, run_differences, statement_sides, step_sides
from .model import summarize
from .versions import run_version

if TYPE_CHECKING:
    from .queries import Queries

_RUN_KEYS = ("id", "task_id", "kind", "status", "attempts", "created_at", "started_at",
             "finished_at", "duration", "fork_of", "fork_step", "replay_of", "origin")


async def _side(q: Queries, run_id: str) -> tuple[dict, list[dict], list[dict]]:
    """A run's summary, its step rows and its checkpoints (statement, time, variables)."""
    row = await q.row(run_id)
    digest = await q.query("SELECT md5(output) AS digest, octet_length(output) AS size "
                           "FROM runs WHERE id = ?", [run_id])
    s = summarize(row)
    out = {k: s.get(k) for k in _RUN_KEYS}
    err = s.get("error")
    out["error"] = f"{err.get('type')}: {err.get('message')}" if err else None
    out["version"] = await run_version(q, row)
    d = digest[0] if digest else {}
    out["output"] = ({"digest": d.get("digest"), "size": d.get("size")}
                     if d.get("digest") else None)
    steps = await q.query(
        "SELECT step_key, name, attempt, status, started_at, ended_at, error_type, "
        "error_message, output_preview, args_preview FROM steps WHERE run_id = ? "
        "ORDER BY started_at, attempt", [run_id])
    checkpoints: list[dict] = []
    if row.get("kind") == "cell":
        rows = await q.query("SELECT statement, created_at, size, manifest FROM checkpoints "
                             "WHERE run_id = ? ORDER BY seq", [run_id])
        for c in rows:
            manifest = json.loads(c["manifest"] or "{}")
            checkpoints.append({
                "statement": c["statement"], "created_at": c["created_at"], "size": c["size"],
                "vars": {n: entry_blobs(e) for n, e in (manifest.get("vars") or {}).items()}})
    return out, steps, checkpoints


async def compare_runs(q: Queries, run_a: str, run_b: str) -> dict:
    """Both runs (``a``, ``b``), what differs in the runs themselves (``run_diff``), their
    rows aligned by key and how many of them differ."""
    a, steps_a, cps_a = await _side(q, run_a)
    b, steps_b, cps_b = await _side(q, run_b)
    rows = []  # a cell's statements first: the steps are calls inside them
    if cps_a or cps_b:
        rows += compare_rows(statement_sides(cps_a, a.get("started_at")),
                             statement_sides(cps_b, b.get("started_at")), "statement")
    rows += compare_rows(step_sides(steps_a), step_sides(steps_b), "step")
    return {"a": a, "b": b, "run_diff": run_differences(a, b), "rows": rows,
            "differences": sum(1 for r in rows if r["diff"])}
