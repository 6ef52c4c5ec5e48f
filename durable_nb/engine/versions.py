"""Reads of code versions: the versions of a task id (or of an unnamed cell) numbered by
first registration with the unfinished runs of each, the version a run ran, and a run's
source text.

Versions come from the ``tasks`` table (never pruned, so a number never changes); the
unfinished runs come from memory, where the engine keeps every one of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.status import TERMINAL
from ..core.versions import identity_of, lineage_of, options_of

if TYPE_CHECKING:
    from .queries import Queries

MAX_IDS = 100  # unfinished run ids listed per version


async def versions_of(q: Queries, lineage: str) -> list[dict]:
    """The versions of ``lineage`` (a task id, or an unnamed cell's ``<notebook>#<cell
    id>``), oldest first: ``number``, ``hash`` (the version: a task hash, a cell's text
    hash), ``created_at`` (first registered), ``latest``, ``task_hashes``, ``has_source``
    and ``source_digest`` (md5 of the source text, None when not recorded)."""
    rows = await q.query(
        "SELECT hash, task_id, options, created_at, md5(source) AS source_digest "
        "FROM tasks WHERE task_id = ? OR json_extract_string(options, '$.lineage') = ? "
        "ORDER BY created_at, hash", [lineage, lineage])
    out: list[dict] = []
    by_identity: dict[str, dict] = {}
    for r in rows:
        opts = options_of(r["options"])
        if lineage_of(r["task_id"], opts) != lineage:
            continue
        ident = identity_of(r["hash"], opts)
        v = by_identity.get(ident)
        if v is None:
            v = by_identity[ident] = {
                "number": len(out) + 1, "hash": ident, "task_id": r["task_id"],
                "created_at": r["created_at"], "latest": False, "task_hashes": [],
                "has_source": False, "source_digest": None}
            out.append(v)
        v["task_hashes"].append(r["hash"])
        if r["source_digest"] is not None:
            v["has_source"], v["source_digest"] = True, r["source_digest"]
    if out:
        out[-1]["latest"] = True
    return out


def unfinished_by_version(q: Queries, lineage: str) -> dict[str, list[str]]:
    """The ids of the unfinished runs of ``lineage``, oldest first, per version."""
    runs = [r for r in q.s.runs.values() if r.status not in TERMINAL
            and lineage_of(r.task.task_id, r.task.options) == lineage]
    runs.sort(key=lambda r: (r.created_at, r.seq))
    out: dict[str, list[str]] = {}
    for r in runs:
        out.setdefault(identity_of(r.task.hash, r.task.options), []).append(r.id)
    return out


async def version_list(q: Queries, lineage: str, except_version: str | None = None) -> dict:
    """``GET /versions``: each version of ``lineage`` with its unfinished runs (how many,
    and the first ``MAX_IDS`` ids). With ``except_version`` (a version's hash) only the
    other versions that have unfinished runs, answered from memory when there are none:
    what a kernel's notice asks after each ``%%durable`` cell."""
    unfinished = unfinished_by_version(q, lineage)
    if except_version is not None and not set(unfinished) - {except_version}:
        return {"task_id": lineage, "versions": [], "latest": None}
    versions = await versions_of(q, lineage)
    for v in versions:
        ids = unfinished.get(v["hash"], [])
        v["unfinished"] = len(ids)
        v["runs"] = ids[:MAX_IDS]
    latest = versions[-1]["number"] if versions else None
    if except_version is not None:
        versions = [v for v in versions if v["hash"] != except_version and v["unfinished"]]
    return {"task_id": lineage, "versions": versions, "latest": latest}


async def _task_of(q: Queries, task_hash: str | None) -> tuple[str, dict] | None:
    """(task id, options) of a registered task hash, from memory or the store."""
    if not task_hash:
        return None
    info = q.s.tasks.get(task_hash)
    if info is not None:
        return info.task_id, info.options
    rows = await q.query("SELECT task_id, options FROM tasks WHERE hash = ?", [task_hash])
    return (rows[0]["task_id"], options_of(rows[0]["options"])) if rows else None


async def run_version(q: Queries, row: dict) -> dict | None:
    """The version a run ran (``GET /runs/{id}``'s ``version``): ``number``, ``hash``,
    ``created_at``, ``latest`` (no newer version registered), ``latest_number`` and
    ``of`` (its lineage); None when its task is unknown."""
    task = await _task_of(q, row.get("task_hash"))
    if task is None:
        return None
    task_id, options = task
    lineage = lineage_of(task_id, options)
    ident = identity_of(row["task_hash"], options)
    versions = await versions_of(q, lineage)
    for v in versions:
        if v["hash"] == ident:
            return {"number": v["number"], "hash": ident, "created_at": v["created_at"],
                    "latest": v["latest"], "latest_number": versions[-1]["number"],
                    "of": lineage, "has_source": v["has_source"]}
    return None


async def run_source(q: Queries, run_id: str) -> dict:
    """``GET /runs/{id}/source``: the source text of the code a run ran (None when it was
    not recorded: tasks registered by earlier releases) and its version."""
    row = await q.row(run_id)
    rows = await q.query("SELECT task_id, options, source FROM tasks WHERE hash = ?",
                         [row.get("task_hash")])
    source = rows[0]["source"] if rows else None
    options: Any = options_of(rows[0]["options"]) if rows else {}
    return {"run_id": run_id, "task_id": row.get("task_id"), "task_hash": row.get("task_hash"),
            "kind": row.get("kind"), "source": source,
            "options": options,
            "version": await run_version(q, row)}
