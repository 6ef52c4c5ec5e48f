"""Schedules: runs of a task fired by a cron expression or an interval (``core.cron``).

Each tick fires at most one run, also across engine restarts. The run carries the
schedule's id and tick (``runs.schedule_id``, ``runs.schedule_tick``) and the idempotency
key ``schedule:<id>:<tick>``, and it is journaled in the same batch as the schedule's
``last_tick``; at start the last tick is also read back from the runs the schedule fired,
so an engine killed between the two never fires a tick twice.

- **Timers** are the injected clock's (``state.clock.call_at``): one per schedule, armed
  for its next tick after its *reference*, the later of its last tick and the time it was
  last defined, paused or resumed (``updated_at``).
- **Missed ticks** (ticks after the reference that passed while the engine was down)
  follow ``catch_up`` at start: "skip" fires none, "once" one run for the latest, "all"
  one run per tick (the latest ``MAX_CATCH_UP``; older ones are skipped with a warning).
  A timer that wakes late (a machine asleep) fires its latest due tick, and the earlier
  ones only with "all".
- **Overlap**, while a run fired by the schedule has not finished: "skip" records the tick
  without a run (an event, and ``skipped`` in the schedule's info), "queue" keeps the tick
  in ``pending`` (journaled) and fires it when that run finishes, "allow" fires anyway.
- **Pause** stops the timer; ticks while paused are dropped, and ``resume`` ticks again from
  the next due time. **Delete** keeps the row as a tombstone with neither ``cron`` nor
  ``every`` (the store journals no deletes, and the runs the schedule fired still name
  it); a later ``put`` of the same id replaces it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..core import cron
from ..core.cron import MAX_CATCH_UP, Timing
from ..core.errors import PayloadTooLarge
from ..core.serial import clean_text, fmt_size
from ..core.status import TERMINAL
from ..store.records import Update, Upsert
from .clock import Timer
from .model import TaskInfo, parse_origin, summarize
from .scheduler import RunOptions, Scheduler, origin_json
from .state import EngineState

log = logging.getLogger("durable_nb")
SCHEDULE_COLUMNS = ("id", "task_id", "task_hash", "cron", "every", "timezone", "overlap",
                    "catch_up", "payload", "tags", "paused", "created_at", "updated_at",
                    "last_tick", "pending", "origin")


class ScheduleNotFound(LookupError):
    """No schedule with that id (HTTP 404)."""


@dataclass
class Sched:
    """A schedule as the engine keeps it."""

    id: str
    task: TaskInfo
    timing: Timing
    overlap: str
    catch_up: str
    payload: bytes
    tags: list[str]
    origin: str | None  # JSON {notebook, cell_id, execution_count}: a scheduled cell
    created_at: float
    updated_at: float
    paused: bool = False
    last_tick: float | None = None
    pending: list[float] = field(default_factory=list)  # owed ticks (overlap "queue")
    timer: Timer | None = None
    next_tick: float | None = None
    skipped: int = 0  # times ticks were recorded without a run since the engine started

    @property
    def reference(self) -> float:
        """Ticks after this instant are still to come (or were missed)."""
        last = self.last_tick
        return self.updated_at if last is None else max(last, self.updated_at)

    def definition(self) -> tuple:
        """What a replace may change; an identical one changes nothing."""
        return (self.task.hash, self.timing, self.overlap, self.catch_up, self.payload,
                self.tags, self.origin)

    def row(self) -> dict:
        t = self.timing
        return {"id": self.id, "task_id": self.task.task_id, "task_hash": self.task.hash,
                "cron": t.cron, "every": t.every, "timezone": t.timezone,
                "overlap": self.overlap, "catch_up": self.catch_up, "payload": self.payload,
                "tags": self.tags, "paused": self.paused, "created_at": self.created_at,
                "updated_at": self.updated_at, "last_tick": self.last_tick,
                "pending": json.dumps(self.pending), "origin": self.origin}


def tick_key(tick: float) -> str:
    """A tick as text in idempotency keys: whole seconds without a fraction."""
    return str(int(tick)) if tick == int(tick) else repr(tick)


class Schedules:
    """The engine's schedules: their timers, catch-up, overlap and the API's operations."""

    def __init__(self, state: EngineState, scheduler: Scheduler):
        self.s = state
        self.scheduler = scheduler
        self.items: dict[str, Sched] = {}
        self.active: dict[str, set[str]] = defaultdict(set)  # schedule -> unfinished runs
        self._schedule_of: dict[str, str] = {}  # unfinished run -> its schedule
        self._unsubscribe: Callable[[], None] | None = None

    # ------------------------------------------------------------------ start and stop

    def load(self) -> None:
        """Read the schedules (in a thread, after ``recovery.load``). The last tick is the
        later of the stored one and the newest tick of a run the schedule fired; pending
        ticks that have a run are dropped."""
        q = partial(self.s.store.query, sync=False)
        fired = {r["id"]: r["tick"] for r in q(
            "SELECT s.id, max(r.schedule_tick) AS tick FROM schedules s JOIN runs r "
            "ON r.schedule_id = s.id AND r.schedule_tick > s.created_at GROUP BY s.id")}
        for row in q("SELECT * FROM schedules WHERE cron IS NOT NULL OR every IS NOT NULL"):
            task = self.s.tasks.get(row["task_hash"])
            if task is None:
                log.warning("durable_nb: schedule %s is not loaded: the code of its task is "
                            "not in the store", row["id"])
                continue
            sched = _from_row(row, task)
            tick = fired.get(sched.id)
            if tick is not None and (sched.last_tick is None or tick > sched.last_tick):
                sched.last_tick = tick
            if sched.pending:
                done = {r["schedule_tick"] for r in q(
                    "SELECT schedule_tick FROM runs WHERE schedule_id = ? AND "
                    "schedule_tick >= ?", [sched.id, min(sched.pending)])}
                sched.pending = [t for t in sched.pending if t not in done]
            self.items[sched.id] = sched

    async def start(self) -> None:
        """Load the schedules, then catch up on missed ticks and arm the timers (after
        recovery: the runs in memory tell which schedules have a run going)."""
        await asyncio.get_running_loop().run_in_executor(None, self.load)
        for run in self.s.runs.values():
            if run.schedule_id is not None:
                self._track(run.id, run.schedule_id)
        self._unsubscribe = self.s.subscribe(self._on_event)
        for sched in self.items.values():
            if not sched.paused:
                self._guarded(sched, self._catch_up)
                self._drain(sched)
                self._arm(sched)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for sched in self.items.values():
            if sched.timer is not None:
                sched.timer.cancel()
                sched.timer = None

    # ------------------------------------------------------------------ the API's operations

    def put(self, sid: str, spec: dict) -> dict:
        """Create or replace schedule ``sid`` from ``spec`` (task_hash, cron or every,
        timezone, overlap, catch_up, payload, tags, origin). A replace keeps the schedule's
        paused state, last tick and pending ticks; an identical one changes nothing.
        LookupError for an unknown task, ValueError for a bad option."""
        s = self.s
        task = s.tasks.get(spec["task_hash"])
        if task is None:
            raise LookupError(f"unknown task hash {spec['task_hash']}")
        timing = cron.timing(spec.get("cron"), spec.get("every"), spec.get("timezone") or "UTC")
        overlap, catch_up = cron.policy(spec.get("overlap") or "skip",
                                        spec.get("catch_up") or "once")
        payload = spec["payload"]
        if len(payload) > s.config.max_payload:
            raise PayloadTooLarge(f"the payload of schedule '{sid}' is {fmt_size(len(payload))}"
                                  f", over the limit of {fmt_size(s.config.max_payload)}")
        old, now = self.items.get(sid), s.now()
        new = Sched(sid, task, timing, overlap, catch_up, payload,
                    [clean_text(str(t)) for t in spec.get("tags") or ()],
                    origin_json(spec.get("origin")), now, now)
        if old is not None:
            if old.definition() == new.definition():
                return self.info(old)
            new.created_at, new.paused, new.last_tick = old.created_at, old.paused, old.last_tick
            new.pending, new.skipped = old.pending, old.skipped
        s.writer.check_writable()
        if old is not None and old.timer is not None:
            old.timer.cancel()
        self.items[sid] = new
        s.write([Upsert("schedules", new.row())])
        self._emit(new, "replaced" if old else "created")
        self._arm(new)
        self._drain(new)
        return self.info(new)

    def set_paused(self, sid: str, paused: bool) -> dict:
        """Pause (no new runs; ticks meanwhile are dropped) or resume (from the next due
        tick, and pending ticks again)."""
        sched = self._get(sid)
        if sched.paused != paused:
            self.s.writer.check_writable()
            sched.paused, sched.updated_at = paused, self.s.now()
            self.s.write([Update("schedules", {"id": sid}, {
                "paused": paused, "updated_at": sched.updated_at})])
            self._emit(sched, "paused" if paused else "resumed")
            self._arm(sched)
            self._drain(sched)
        return self.info(sched)

    def delete(self, sid: str) -> dict:
        """Delete the schedule: no more ticks; runs it fired go on."""
        sched = self._get(sid)
        self.s.writer.check_writable()
        if sched.timer is not None:
            sched.timer.cancel()
        del self.items[sid]
        self.s.write([Update("schedules", {"id": sid}, {
            "cron": None, "every": None, "paused": True, "payload": None, "pending": None,
            "updated_at": self.s.now()})])
        self._emit(sched, "deleted")
        return {"id": sid, "deleted": True}

    def get(self, sid: str) -> dict:
        return self.info(self._get(sid))

    def listing(self) -> list[dict]:
        return [self.info(self.items[k]) for k in sorted(self.items)]

    async def runs(self, sid: str, limit: int, offset: int) -> dict:
        """The runs the schedule fired, the latest tick first, and how many there are (also
        of a deleted schedule: its runs stay)."""
        def read() -> tuple[list[dict], int]:
            q = self.s.store.query
            rows = q("SELECT * EXCLUDE (payload, output), output IS NOT NULL AS has_output "
                     "FROM runs WHERE schedule_id = ? ORDER BY schedule_tick DESC, "
                     "created_at DESC LIMIT ? OFFSET ?", [sid, limit, offset])
            (n,) = q("SELECT count(*) AS n FROM runs WHERE schedule_id = ?", [sid])
            return rows, int(n["n"])

        rows, total = await asyncio.get_running_loop().run_in_executor(None, read)
        if not total and sid not in self.items:
            self._get(sid)
        return {"schedule_id": sid, "runs": [summarize(r) for r in rows], "total": total}

    def info(self, sched: Sched) -> dict:
        """The schedule as the API shows it."""
        t = sched.timing
        nxt = None
        if not sched.paused:
            nxt = sched.next_tick if sched.timer is not None else t.next_after(sched.reference)
        active = self.active.get(sched.id) or set()
        return {"id": sched.id, "task_id": sched.task.task_id, "task_hash": sched.task.hash,
                "kind": sched.task.options.get("kind", "task"), "cron": t.cron,
                "every": t.every, "timezone": t.timezone, "overlap": sched.overlap,
                "catch_up": sched.catch_up, "paused": sched.paused,
                "last_tick": sched.last_tick, "next_tick": nxt,
                "created_at": sched.created_at, "updated_at": sched.updated_at,
                "tags": list(sched.tags), "origin": parse_origin(sched.origin),
                "active_runs": len(active), "active_run_ids": sorted(active),
                "pending": list(sched.pending), "skipped": sched.skipped}

    def _get(self, sid: str) -> Sched:
        sched = self.items.get(sid)
        if sched is None:
            raise ScheduleNotFound(f"no schedule '{sid}'; list them with dn.schedules() or "
                                   "`durable-nb schedules list`")
        return sched

    # ------------------------------------------------------------------ ticks

    def _arm(self, sched: Sched) -> None:
        """A timer for the schedule's next tick (none while paused or stopping)."""
        if sched.timer is not None:
            sched.timer.cancel()
        sched.timer = sched.next_tick = None
        if sched.paused or self.s.stopped or self.items.get(sched.id) is not sched:
            return
        at = sched.next_tick = sched.timing.next_after(sched.reference)
        sched.timer = self.s.clock.call_at(at, lambda: self._wake(sched))

    def _wake(self, sched: Sched) -> None:
        """A timer fired: its latest due tick fires; earlier ones (the timer woke late, as
        on a machine that slept) only with catch_up "all"."""
        sched.timer = None
        if self.items.get(sched.id) is not sched or sched.paused or self.s.stopped:
            return
        if not self._guarded(sched, self._due):  # the due tick is lost, not retried at once
            due = sched.timing.latest(sched.reference, self.s.now(), 1)
            sched.last_tick = due[-1] if due else sched.last_tick
        self._arm(sched)

    def _due(self, sched: Sched) -> None:
        n = MAX_CATCH_UP if sched.catch_up == "all" else 1
        due = sched.timing.latest(sched.reference, self.s.now(), n + 1)
        if not due:
            return  # woke a moment early: armed again for the same tick
        late = due[:-1] if sched.catch_up == "all" else []
        if len(due) - 1 > len(late):
            self._record(sched, due[-2], "missed", skipped=True)
        for tick in late + due[-1:]:
            self._tick(sched, tick)

    def _catch_up(self, sched: Sched) -> None:
        """At start: the ticks missed while the engine was down, as ``catch_up`` says."""
        n = MAX_CATCH_UP if sched.catch_up == "all" else 1
        missed = sched.timing.latest(sched.reference, self.s.now(), n + 1)
        if not missed:
            return
        fire = [] if sched.catch_up == "skip" else missed[-n:]
        if len(missed) > len(fire):
            if sched.catch_up == "all":
                log.warning("durable_nb: schedule %s missed over %d ticks while the engine "
                            "was down; the latest %d fire, older ones are skipped", sched.id,
                            n, n)
            self._record(sched, missed[-1] if not fire else missed[-n - 1], "missed",
                         skipped=True)
        for tick in fire:
            self._tick(sched, tick)

    def _tick(self, sched: Sched, tick: float) -> None:
        """One tick: a run, or (overlap, while a run of the schedule is unfinished) a
        skipped or queued tick."""
        if self.active.get(sched.id) and sched.overlap != "allow":
            if sched.overlap == "skip":
                self._record(sched, tick, "skipped", skipped=True)
                return
            sched.pending.append(tick)
            del sched.pending[:-MAX_CATCH_UP]
            self._record(sched, tick, "queued")
            return
        self._fire(sched, tick)

    def _fire(self, sched: Sched, tick: float) -> None:
        """A run for ``tick``, journaled with the schedule's last tick (one batch)."""
        opts = RunOptions(idempotency_key=f"schedule:{sched.id}:{tick_key(tick)}",
                          tags=list(sched.tags), origin=sched.origin, schedule_id=sched.id,
                          schedule_tick=tick)
        ids, created = self.scheduler.create_runs(sched.task.hash, [sched.payload], opts)
        self._record(sched, tick, "fired" if created[0] else "fired before", run_id=ids[0])

    def _record(self, sched: Sched, tick: float, event: str, skipped: bool = False,
                **extra: Any) -> None:
        """Journal the schedule's last tick and pending ticks; tell subscribers."""
        sched.skipped += skipped
        sched.last_tick = tick if sched.last_tick is None else max(sched.last_tick, tick)
        self.s.write([Update("schedules", {"id": sched.id}, {
            "last_tick": sched.last_tick, "pending": json.dumps(sched.pending)})])
        self._emit(sched, event, tick=tick, **extra)

    def _drain(self, sched: Sched) -> None:
        """Fire the oldest pending tick when no run of the schedule is unfinished."""
        if (sched.pending and not sched.paused and not self.active.get(sched.id)
                and self.items.get(sched.id) is sched and not self.s.stopped):
            self._guarded(sched, lambda sc: self._fire(sc, sc.pending.pop(0)))

    def _guarded(self, sched: Sched, fn: Callable[[Sched], None]) -> bool:
        """Run ``fn(sched)``; a failure (a full disk, a payload over a lowered limit) is
        logged and told, and the schedule goes on with its next tick. False on failure."""
        try:
            fn(sched)
        except Exception as exc:
            log.warning("durable_nb: schedule %s could not fire: %s", sched.id, exc)
            self._emit(sched, "error", error=str(exc))
            return False
        return True

    # ------------------------------------------------------------------ runs of schedules

    def _track(self, run_id: str, sid: str) -> None:
        self._schedule_of[run_id] = sid
        self.active[sid].add(run_id)

    def _on_event(self, event: dict) -> None:
        """Follow the unfinished runs of each schedule; a run that ends lets the next
        pending tick fire (on the next loop turn, outside the run's own ending)."""
        if event.get("type") != "run":
            return
        run_id = str(event.get("run_id"))
        if event.get("status") in TERMINAL:
            sid = self._schedule_of.pop(run_id, None)
            if sid is None:
                return
            self.active[sid].discard(run_id)
            if not self.active[sid]:
                del self.active[sid]
            sched = self.items.get(sid)
            if sched is not None and sched.pending:
                self.s.clock.call_at(self.s.now(), lambda: self._drain(sched))
        elif run_id not in self._schedule_of:
            run = self.s.runs.get(run_id)
            if run is not None and run.schedule_id is not None:
                self._track(run_id, run.schedule_id)

    def _emit(self, sched: Sched, event: str, **extra: Any) -> None:
        self.s.emit({"type": "schedule", "schedule_id": sched.id, "event": event,
                     "task_id": sched.task.task_id, "at": self.s.now(), **extra})


def _from_row(row: dict, task: TaskInfo) -> Sched:
    timing = Timing(row["cron"], row["every"], row["timezone"] or "UTC")
    try:
        pending = [float(t) for t in json.loads(row["pending"] or "[]")]
    except (ValueError, TypeError):
        pending = []
    return Sched(row["id"], task, timing, row["overlap"] or "skip", row["catch_up"] or "once",
                 row["payload"] or b"", list(row["tags"] or []), row["origin"],
                 row["created_at"], row["updated_at"] or row["created_at"],
                 bool(row["paused"]), row["last_tick"], pending)
