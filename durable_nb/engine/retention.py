"""Pruning finished runs: on request (``POST /prune``, ``durable-nb prune``) and, with the
``prune_after`` setting, at start and then every hour.

The engine stays the store's only writer: the deletes run in a thread of this process
(``store.retention``), one transaction per batch of runs, then the blobs no checkpoint
refers to any more, rows first and files after. Only runs in a terminal status are
touched, never one the engine holds in memory, and never a finished child of an
unfinished run; while a prune runs, a resume of a run it selected is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..core.checkpoints import manifest_blobs
from ..core.durations import parse_duration
from ..core.status import STATUSES, TERMINAL
from ..store import retention as _store
from .clock import Timer
from .state import EngineState

log = logging.getLogger("durable_nb")
AUTO_INTERVAL = 3600.0  # seconds between automatic prunes


def prune_statuses(status: str | Iterable[str] | None) -> list[str]:
    """The statuses a prune takes (comma-separated text or a list; default: every
    terminal status); ValueError names an unknown or unfinished one."""
    if status is None or status == "":
        return sorted(TERMINAL)
    items = status.split(",") if isinstance(status, str) else list(status)
    out = [str(x).strip().upper() for x in items if str(x).strip()]
    for x in out:
        if x not in STATUSES:
            raise ValueError(f"unknown status {x!r}; a prune takes finished statuses: "
                             f"{', '.join(sorted(TERMINAL))}")
        if x not in TERMINAL:
            raise ValueError(f"{x} runs are not finished and are never pruned; a prune "
                             f"takes {', '.join(sorted(TERMINAL))}")
    return out or sorted(TERMINAL)


class Pruner:
    """Deletes finished runs older than a duration, with their rows and blobs."""

    def __init__(self, state: EngineState):
        self.s = state
        self.pruning: set[str] = set()  # runs the prune in flight selected
        self._lock = asyncio.Lock()
        self._timer: Timer | None = None
        self._task: asyncio.Task | None = None

    async def prune(self, older_than: str | float, status: str | Iterable[str] | None = None,
                    dry_run: bool = False) -> dict:
        """Delete (or with ``dry_run`` only count) the finished runs in ``status`` that
        finished more than ``older_than`` ago; returns what was removed."""
        age = parse_duration(older_than)
        if age is None:
            raise ValueError("older_than is required, e.g. '30d'")
        statuses = prune_statuses(status)
        if not dry_run:
            self.s.writer.check_writable()
        async with self._lock:
            before = self.s.now() - age
            removed = await self._prune(before, statuses, dry_run)
        out = {**removed.as_dict(), "older_than": age, "before": before,
               "statuses": statuses, "dry_run": dry_run}
        if removed.runs and not dry_run:
            log.info("durable_nb: pruned %d runs finished before %s and %d blobs (%d bytes)",
                     removed.runs, before, removed.blobs, removed.blob_bytes)
        return out

    async def _prune(self, before: float, statuses: list[str], dry_run: bool) -> Any:
        s, store = self.s, self.s.store
        runs = await self._thread(_store.select_runs, store, before, statuses, list(s.runs))
        runs = [r for r in runs if r[1] not in s.runs]  # resumed meanwhile
        self.pruning = {i for _, i in runs}
        try:
            removed = await self._thread(_store.delete_runs, store, runs, dry_run,
                                         lambda: s.stopped)
            if not dry_run:
                self._forget(self.pruning)
            if s.stopped:  # the engine stops: the next prune sweeps and removes the blobs
                return removed
            gone, files = await self._thread(
                _store.orphan_blobs, store, removed.candidates, before, self._live_blobs(),
                sorted(self.pruning) if dry_run else None)
            live = self._live_blobs()  # checkpoints recorded meanwhile keep theirs
            hashes = [h for h in gone if h not in live]
            files = [f for f in files if f.name not in live]
            removed.blobs = len(hashes)
            removed.blob_bytes = sum(gone[h][0] for h in hashes if not gone[h][1])
            if dry_run:
                removed.files = len(files)
                removed.blob_bytes += sum(f.stat().st_size for f in files if f.exists())
            else:
                await self._delete_blobs(hashes, files, removed)
        finally:
            self.pruning = set()
        return removed

    async def _delete_blobs(self, hashes: list[str], files: list, removed: Any) -> None:
        """Delete blobs; a checkpoint that refers to one meanwhile waits (``messages``),
        then finds its file gone and has the worker write it again."""
        s = self.s
        s.blobs_in_deletion = set(hashes) | {f.name for f in files}
        try:
            await self._thread(_store.delete_blobs, s.store, hashes, files, removed)
        finally:
            s.blobs_in_deletion = set()
            held, s.held_checkpoints = s.held_checkpoints, []
            for record in held:
                record()

    async def _thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _live_blobs(self) -> set[str]:
        """Blobs the latest checkpoints of the runs in memory refer to."""
        out: set[str] = set()
        for run in self.s.runs.values():
            if run.checkpoint:
                out |= manifest_blobs(run.checkpoint.get("manifest") or {})
        return out

    def _forget(self, gone: set[str]) -> None:
        """Drop what the engine remembers of pruned runs (ids in caches and maps)."""
        s = self.s
        for run_id in gone:
            row = s.finished.pop(run_id, None)
            if row is not None:
                s._finished_bytes -= len(row.get("output") or b"")
            s.child_results.pop(run_id, None)
            s.children_of.pop(run_id, None)
        for key in [k for k, v in s.idem.items() if v in gone]:
            del s.idem[key]

    # -- automatic ----------------------------------------------------------------

    def start(self) -> None:
        """With ``prune_after`` set: prune now, then every hour."""
        if self.s.config.prune_after:
            self._tick()

    @property
    def busy(self) -> bool:
        """An automatic prune is in flight."""
        return self._task is not None and not self._task.done()

    def _tick(self) -> None:
        """Arm the next hour first (the hours do not drift with how long a prune takes),
        then prune unless the previous one is still going."""
        if self.s.stopped:
            return
        self._timer = self.s.clock.call_at(self.s.now() + AUTO_INTERVAL, self._tick)
        if not self.busy:
            self._task = asyncio.get_running_loop().create_task(self._auto())

    async def _auto(self) -> None:
        try:
            await self.prune(self.s.config.prune_after or 0)
        except Exception as exc:  # noqa: BLE001 - logged; the next hour tries again
            log.error("durable_nb: automatic prune failed: %s", exc)

    async def stop(self) -> None:
        """Cancel the next automatic prune; a prune in flight ends after its batch in hand
        (the engine is ``stopped`` already) before the store closes."""
        if self._timer is not None:
            self._timer.cancel()
        async with self._lock:
            pass
