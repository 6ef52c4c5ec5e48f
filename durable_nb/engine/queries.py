"""Reads for the API: a run and its parts, lists of runs, checkpoints, spans, logs and
read-only SQL. Unfinished runs are answered from memory, recent final ones from the
engine's cache, the rest from DuckDB (in a thread, never on the loop)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..core import serial as _serial
from ..core.checkpoints import RESOURCE_BINDINGS, entry_blobs, manifest_blobs, normal
from ..core.errors import RunNotFound
from ..core.status import STATUSES
from . import forks
from .hooks import hook_runs
from .model import summarize
from .state import EngineState
from .versions import run_version


class Queries:
    """Answers the API's reads."""

    def __init__(self, state: EngineState):
        self.s = state

    async def query(self, sql: str, params: list | tuple = ()) -> list[dict]:
        return await self._in_thread(self.s.store.query, sql, params)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def row(self, run_id: str) -> dict:
        """The run's row; RunNotFound when there is no such run."""
        run = self.s.runs.get(run_id)
        if run is not None:
            return run.row()
        if run_id in self.s.finished:
            return self.s.finished[run_id]
        rows = await self.query("SELECT * FROM runs WHERE id = ?", [run_id])
        if not rows:
            raise RunNotFound(f"no run with id '{run_id}' in {self.s.config.db_path}; "
                              "list runs with `durable-nb runs` or dn.runs()")
        return rows[0]

    async def wait_result(self, run_id: str, timeout: float) -> dict:
        """Wait up to ``timeout`` seconds for the run to finish; returns its row."""
        if run_id in self.s.runs:
            fut = asyncio.get_running_loop().create_future()
            waiters = self.s.result_waiters[run_id]
            waiters.append(fut)
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout)
            except asyncio.TimeoutError:
                pass
            finally:
                if fut in self.s.result_waiters.get(run_id, []):
                    self.s.result_waiters[run_id].remove(fut)
        return await self.row(run_id)

    async def run_detail(self, run_id: str) -> dict:
        """The run with its attempts, steps, waits and children."""
        row = await self.row(run_id)
        attempts = await self.query(
            "SELECT number, worker_pid, worker, started_at, ended_at, outcome, error_type, "
            "error_message, traceback FROM attempts WHERE run_id = ? ORDER BY number", [run_id])
        steps = await self.query(
            "SELECT step_key, name, attempt, status, started_at, ended_at, error_type, "
            "error_message, traceback, generation, run_attempt, retry_delay FROM steps "
            "WHERE run_id = ? ORDER BY started_at, attempt", [run_id])
        waits = await self.query(
            "SELECT wait_key, kind, name, preview, target, created_at, deadline, resolved_at, "
            "outcome, comment, resolved_by, form, CASE WHEN form IS NOT NULL AND resolved_at "
            "IS NOT NULL THEN result END AS result FROM waits WHERE run_id = ? "
            "ORDER BY created_at", [run_id])
        children = await self.query(
            "SELECT id, task_id, status FROM runs WHERE parent_run_id = ? ORDER BY created_at",
            [run_id])
        hooks = await self.query(
            "SELECT id, task_id, status, hook_kind, created_at FROM runs WHERE hook_of = ? "
            "ORDER BY created_at", [run_id])
        for w in waits:
            w["preview"] = json.loads(w["preview"]) if w["preview"] else None
            w["target"] = json.loads(w["target"]) if w["target"] else None
            form_and_values(w)
        return {**summarize(row), "attempt_list": attempts, "steps": steps, "waits": waits,
                "children": children, "hooks": hook_runs(hooks),
                "version": await run_version(self, row),
                "fork_tree": await forks.tree(self.query, row)}

    async def list_runs(self, status: str | None = None, task: str | None = None,
                        limit: int = 100, offset: int = 0, q: str | None = None,
                        tags: list[str] | None = None,
                        since: float | None = None) -> list[dict]:
        """Runs, newest first, filtered by statuses (comma separated), task id, search
        text ``q``, ``tags`` (a run has them all) and ``since`` (created within that many
        seconds before now); an unfinished run lists the names of its pending approvals."""
        where, params = _filters(status, task, q, tags, self._after(since))
        sql = ("SELECT * EXCLUDE (payload, output) , output IS NOT NULL AS has_output FROM runs"
               + where + " ORDER BY created_at DESC LIMIT ? OFFSET ?")
        rows = await self.query(sql, [*params, int(limit), int(offset)])
        out = [summarize(r) for r in rows]
        for row in out:
            run = self.s.runs.get(row["id"])
            row["pending_approvals"] = [] if run is None else [
                w.name for w in run.waits.values()
                if w.kind == "approval" and w.resolution is None]
        return out

    async def count_runs(self, status: str | None = None, task: str | None = None,
                         q: str | None = None, tags: list[str] | None = None,
                         since: float | None = None) -> int:
        """How many runs ``list_runs`` pages through with these filters."""
        where, params = _filters(status, task, q, tags, self._after(since))
        rows = await self.query("SELECT count(*) AS n FROM runs" + where, params)
        return int(rows[0]["n"])

    def _after(self, since: float | None) -> float | None:
        """The creation time from which runs created ``since`` seconds ago are listed."""
        if since is None:
            return None
        if since < 0:
            raise ValueError(f"since must be a duration of 0 or more, not {since!r}")
        return self.s.now() - since

    async def checkpoint(self, run_id: str, names: list[str] | None = None,
                         values: bool = False) -> dict:
        """The latest checkpoint of a cell run: variables with sizes, values if asked."""
        await self.row(run_id)
        rows = await self.query(
            "SELECT seq, statement, created_at, manifest, size FROM checkpoints "
            "WHERE run_id = ? ORDER BY seq DESC LIMIT 1", [run_id])
        if not rows:
            return {"run_id": run_id, "statement": 0, "variables": {}, "sizes": {},
                    "pieces": {}, "blob_dir": None}
        row = rows[0]
        manifest = json.loads(row["manifest"])
        wanted = {n: h for n, h in manifest["vars"].items()
                  if (n in names if names is not None else n != RESOURCE_BINDINGS)}
        missing = sorted(set(names or ()) - set(wanted))
        if missing:
            raise ValueError(f"no variable {', '.join(map(repr, missing))} in the checkpoint "
                             f"of run {run_id}; it has {', '.join(sorted(manifest['vars']))}")
        entries = {n: normal(e) for n, e in wanted.items()}
        hashes = sorted(manifest_blobs(entries))
        blobs = await self._in_thread(self.s.store.blobs, hashes, values, False)
        missing_rows = sorted(set(hashes) - set(blobs))
        if missing_rows:
            raise LookupError(f"the checkpoint of run {run_id} refers to {len(missing_rows)} "
                              f"stored pieces the database does not have (first: "
                              f"{missing_rows[0]}); it cannot be brought back")
        return {
            "run_id": run_id, "seq": row["seq"], "statement": row["statement"],
            "total": manifest.get("total"), "created_at": row["created_at"], "size": row["size"],
            "variables": {n: {"size": sum(blobs[h]["size"] for h in entry_blobs(e)),
                              **({"entry": e} if values else {})}
                          for n, e in entries.items()},
            "sizes": {h: r["size"] for h, r in blobs.items()} if values else {},
            "pieces": {h: r["data"] for h, r in blobs.items()
                       if values and not r["external"]},
            "blob_dir": str(self.s.store.blob_dir) if values else None,
        }

    async def piece(self, run_id: str, h: str) -> bytes:
        """One stored piece of a run's latest checkpoint (for a client that cannot read
        the files beside the database)."""
        await self.row(run_id)
        rows = await self.query("SELECT manifest FROM checkpoints WHERE run_id = ? "
                                "ORDER BY seq DESC LIMIT 1", [run_id])
        if not rows or h not in manifest_blobs(json.loads(rows[0]["manifest"])["vars"]):
            raise LookupError(f"the latest checkpoint of run {run_id} has no piece {h!r}")
        rows = await self._in_thread(self.s.store.blobs, [h])
        return rows[h]["data"]

    async def step_tries(self, run_id: str, step_key: str, values: bool = False) -> list[dict]:
        """Every try of one step of the run, oldest first, with its error and the previews
        of its arguments and output (parsed JSON); with ``values`` also the pickled call
        (``args``) and output (completed tries). Empty when the run has no such step."""
        await self.row(run_id)
        blobs = ", args, CASE WHEN status = 'COMPLETED' THEN output END AS output" \
            if values else ""
        rows = await self.query(
            "SELECT step_key, name, attempt, generation, run_attempt, status, started_at, "
            "ended_at, error_type, error_message, traceback, retry_delay, args_preview, "
            f"output_preview, args IS NOT NULL AS has_args{blobs} FROM steps "
            "WHERE run_id = ? AND step_key = ? ORDER BY started_at, attempt", [run_id, step_key])
        for r in rows:
            for col in ("args_preview", "output_preview"):
                r[col] = _json_or_none(r[col])
        return rows

    async def spans(self, run_id: str) -> list[dict]:
        await self.row(run_id)
        rows = await self.query("SELECT * FROM spans WHERE run_id = ? ORDER BY start_at",
                                [run_id])
        for r in rows:
            r["attributes"] = json.loads(r["attributes"]) if r["attributes"] else {}
        return rows

    async def logs(self, run_id: str, limit: int = 1000) -> list[dict]:
        """The run's last ``limit`` log lines, newest first, in time order across attempts
        (a database written before log numbers went on across restarts has them restart)."""
        await self.row(run_id)
        return await self.query(
            "SELECT created_at AS at, stream, line FROM logs WHERE run_id = ? "
            "ORDER BY created_at DESC, seq DESC LIMIT ?", [run_id, int(limit)])

    async def sql(self, query: str, limit: int = 10_000) -> tuple[list[str], list[tuple]]:
        """A read-only SQL query (``store.readonly_sql``)."""
        return await self._in_thread(self.s.store.read_only, query, limit)


# where the search text ``q`` is looked for: the run id (engine-made, lower case already),
# task id (a cell's name), tags and the notebook it comes from, any case; one test per
# column costs a fraction of lower-casing them joined (DuckDB skips the rest of an OR once
# one holds, and the task ids are dictionary-compressed). The text is always a parameter.
_SEARCH = ("(contains(id, ?) OR contains(lower(task_id), ?) "
           "OR contains(lower(json_extract_string(origin, '$.notebook')), ?) "
           "OR contains(lower(array_to_string(tags, chr(10))), ?))")


def _filters(status: str | None, task: str | None, q: str | None = None,
             tags: list[str] | None = None, after: float | None = None) -> tuple[str, list]:
    """The WHERE clause (with its leading space, or empty) and parameters of a run list."""
    where: list[str] = []
    params: list = []
    if status:
        statuses = [x.strip().upper() for x in status.split(",")]
        bad = [x for x in statuses if x not in STATUSES]
        if bad:
            raise ValueError(f"unknown status {bad[0]!r}; one of {', '.join(STATUSES)}")
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(statuses)
    if task:
        where.append("task_id = ?")
        params.append(task)
    if q:
        where.append(_SEARCH)
        params.extend([q.lower()] * _SEARCH.count("?"))
    if tags:
        where.append("list_has_all(tags, ?::VARCHAR[])")
        params.append(list(tags))
    if after is not None:
        where.append("created_at >= ?")
        params.append(after)
    return (" WHERE " + " AND ".join(where) if where else ""), params


def _json_or_none(text: str | None) -> Any:
    """A stored JSON preview, parsed (None when absent or unreadable)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def form_and_values(wait: dict) -> None:
    """A wait row's typed form (its JSON schema, or None) and, once decided, the values the
    decision filled in (from the resolution the engine stored; None without a form)."""
    wait["form"] = _json_or_none(wait.get("form"))
    result = wait.pop("result", None)
    values = None
    if result is not None:
        try:
            values = _serial.loads(result).get("values")
        except Exception:  # a resolution this release cannot read shows no values
            values = None
    wait["values"] = values
