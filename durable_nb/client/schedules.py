"""Schedules from Python: ``dn.schedule(task, cron=... | every=...)``, ``dn.schedules()``,
``@dn.task(schedule="0 9 * * 1-5")`` and the ``Schedule`` handle (pause, resume, delete,
its runs).

A schedule names a task by the hash of its code, registered as ``trigger`` registers it,
and keeps the arguments its runs get (pickled once, when it is created). The engine fires
the ticks (``engine.schedules``); this module only defines, reads and changes schedules.
Options are checked here first (``core.cron``), so a mistake is a ValueError in the
caller before anything is sent.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from ..core import cron as _cron
from ..core.errors import ApiError, DurableError
from ..core.serial import b64
from ..worker import context as _context
from .client import Client, get_client
from .handles import RunHandle
from .show import fmt_time
from .tasks import Task, _payload

_ID = re.compile(r"[^/\x00-\x1f\x7f]{1,1000}")


class Schedule:
    """A schedule in the engine: when its task runs, with which arguments, and what a tick
    does while a run of it still runs (``overlap``) or after the engine was down
    (``catch_up``). The attributes are as last read; ``refresh()`` reads them again."""

    def __init__(self, info: dict, client: Client | None = None):
        self._info = dict(info)
        self._client = client

    @property
    def client(self) -> Client:
        return self._client or get_client()

    def _get(self, name: str) -> Any:
        return self._info.get(name)

    id = property(lambda self: self._info["id"])
    task_id = property(lambda self: self._get("task_id"))
    cron = property(lambda self: self._get("cron"))
    every = property(lambda self: self._get("every"))
    timezone = property(lambda self: self._get("timezone"))
    overlap = property(lambda self: self._get("overlap"))
    catch_up = property(lambda self: self._get("catch_up"))
    paused = property(lambda self: bool(self._get("paused")))
    last_tick = property(lambda self: self._get("last_tick"))
    next_tick = property(lambda self: self._get("next_tick"))

    def info(self) -> dict:
        """Everything the engine says of the schedule (read now): also its unfinished runs
        (``active_runs``), owed ticks (``pending``, overlap "queue") and ``skipped``."""
        return dict(self.refresh()._info)

    def refresh(self) -> Schedule:
        self._info = self.client.request("GET", _path(self.id))
        return self

    def pause(self) -> Schedule:
        """No runs until ``resume()``; ticks meanwhile are dropped."""
        self._info = self.client.request("POST", _path(self.id, "pause"), {})
        return self

    def resume(self) -> Schedule:
        """Tick again, from the next due tick."""
        self._info = self.client.request("POST", _path(self.id, "resume"), {})
        return self

    def delete(self) -> None:
        """Delete the schedule; the runs it fired stay."""
        self.client.request("DELETE", _path(self.id))

    def runs(self, limit: int = 100) -> list[RunHandle]:
        """The runs it fired, the latest tick first (each names its tick:
        ``run.info()["schedule_tick"]``)."""
        out = self.client.request("GET", _path(self.id, "runs"), query={"limit": limit})
        return [RunHandle(r["id"], self.client, r) for r in out["runs"]]

    def __repr__(self) -> str:
        when = f"cron {self.cron!r}" if self.cron else f"every {every_text(self.every)}"
        tz = f" {self.timezone}" if self.cron and self.timezone != "UTC" else ""
        state = "paused" if self.paused else f"next {fmt_time(self.next_tick)}"
        last = f", last {fmt_time(self.last_tick)}" if self.last_tick else ""
        return (f"<Schedule {self.id!r} task={self.task_id!r} {when}{tz} "
                f"overlap={self.overlap} catch_up={self.catch_up}: {state}{last}>")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def every_text(s: float | None) -> str:
    """An interval as written in `every`: "15m", "1h", "90s" ("?" when unknown)."""
    if not s:
        return "?"
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n and s % n == 0:
            return f"{int(s // n)}{unit}"
    return f"{s:g}s"


def _path(sid: str, *rest: str) -> str:
    return "/".join(("/schedules", quote(sid, safe=""), *rest))


def check_id(sid: Any) -> str:
    """A schedule id: text of 1 to 1000 characters without '/' or control characters."""
    if not isinstance(sid, str) or not _ID.fullmatch(sid):
        raise ValueError(f"a schedule id is text of 1 to 1000 characters without '/' or "
                         f"control characters, got {sid!r:.60}")
    return sid


def schedule(task: Task | Callable, cron: str | None = None, every: Any = None,
             timezone: str = "UTC", overlap: str = "skip", catch_up: str = "once",
             args: tuple = (), kwargs: dict | None = None, id: str | None = None) -> Schedule:
    """Run ``task(*args, **kwargs)`` on a schedule: ``cron`` (five fields, e.g.
    ``"0 9 * * 1-5"``, in ``timezone``) or ``every`` (a duration: ``"15m"``, ``"1s"``, or
    seconds; ticks fall on its multiples since the epoch). Creates the schedule, or
    replaces the one with the same ``id`` (default: the task's id), keeping its paused
    state. ``overlap``: a tick while the previous run still runs is "skip"ped, "queue"d
    until it ends, or "allow"ed. ``catch_up``: ticks missed while the engine was down fire
    "once" (one run, for the latest), "all" (one run each) or are "skip"ped."""
    if _context.current() is not None:
        raise DurableError("dn.schedule() defines a schedule from a kernel or script, not "
                           "inside a run")
    t = task if isinstance(task, Task) else _as_task(task)
    timing = _cron.timing(cron, every, timezone)
    _cron.policy(overlap, catch_up)
    sid = check_id(id if id is not None else t.id)
    client = get_client()
    payload = _payload(t.func, t.id, tuple(args), dict(kwargs or {}), client.max_payload)
    return put(client, sid, t, payload, cron=timing.cron, every=timing.every,
               timezone=timing.timezone, overlap=overlap, catch_up=catch_up)


def _as_task(fn: Any) -> Task:
    """A plain function scheduled as is: a task of its own name."""
    if not callable(fn):
        raise TypeError(f"dn.schedule() takes a task (a function decorated with @dn.task), "
                        f"not {type(fn).__name__}")
    from .tasks import task as make_task

    return make_task(fn)


def put(client: Client, sid: str, task: Task, payload: bytes, **body: Any) -> Schedule:
    """``PUT /schedules/{sid}``, registering the task's code first (again if the engine
    lost it)."""
    body = {**body, "payload_b64": b64(payload)}
    if task.origin:
        body["origin"] = task.origin
    for _ in range(2):
        body["task_hash"] = task._register(client)
        try:
            return Schedule(client.request("PUT", _path(sid), body), client)
        except ApiError as exc:
            if exc.status != 409:
                raise
            client._registered.clear()
    raise DurableError(f"the engine did not accept the task of schedule '{sid}'")


def schedules() -> list[Schedule]:
    """Every schedule of the engine, by id."""
    client = get_client()
    return [Schedule(s, client) for s in client.request("GET", "/schedules")["schedules"]]


def get_schedule(sid: str) -> Schedule:
    """The schedule with this id; ApiError (404) when there is none."""
    client = get_client()
    return Schedule(client.request("GET", _path(check_id(sid))), client)


def in_worker() -> bool:
    """Inside a run, or in a worker process (importing the user's modules there must not
    define schedules or connect to anything)."""
    if _context.current() is not None:
        return True
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "durable_nb.worker.main"


def declared(task: Task, spec: Any) -> Schedule | None:
    """``@dn.task(schedule=...)``: the task's schedule (id = the task's id), defined when
    the decorator runs, except in a worker. ``spec`` is a cron expression ("0 9 * * 1-5",
    "@daily"), a duration ("15m") or seconds for ``every``, or a dict of ``dn.schedule``'s
    options."""
    if in_worker():
        return None
    if isinstance(spec, dict):
        unknown = set(spec) - {"cron", "every", "timezone", "overlap", "catch_up", "args",
                               "kwargs"}
        if unknown:
            raise ValueError(f"schedule= takes cron, every, timezone, overlap, catch_up, args "
                             f"and kwargs, not {', '.join(sorted(unknown))}")
        return schedule(task, **spec)
    return schedule(task, **timing_of(spec, "schedule="))


def timing_of(spec: Any, what: str) -> dict:
    """``{"cron": spec}`` for a cron expression ("0 9 * * 1-5", "@daily"), ``{"every":
    spec}`` for a duration ("15m") or seconds."""
    if isinstance(spec, str) and (spec.strip().startswith("@") or len(spec.split()) > 1):
        return {"cron": spec}
    if isinstance(spec, (str, int, float)) and not isinstance(spec, bool):
        return {"every": spec}
    raise ValueError(f"{what} is a cron expression ('0 9 * * 1-5'), a duration ('15m') "
                     f"or a dict of dn.schedule's options, not {spec!r:.60}")


def cell_schedule_id(origin: dict | None, source: str) -> str:
    """A scheduled cell's id when it has no --name: its notebook and cell id, which stay
    the same when the cell runs again (so that it replaces its schedule)."""
    o = origin or {}
    where = os.path.basename(o["notebook"]) if o.get("notebook") else "cell"
    if o.get("cell_id"):
        return f"{where}#{o['cell_id'][:8]}"
    return f"{where}#{hashlib.sha256(source.encode()).hexdigest()[:8]}"


def schedule_cell(source: str, namespace: dict, when: str, *, name: str | None = None,
                  timezone: str = "UTC", overlap: str = "skip", catch_up: str = "once",
                  origin: dict | None = None, **cell_options: Any) -> Schedule:
    """``%%durable --schedule WHEN``: the cell becomes a schedule, its source and the
    notebook variables it reads captured now (``cells.cell_task``); its runs are cell runs
    with checkpoints, as a triggered cell's. Running the cell again replaces it."""
    from .cells import cell_task

    sid = check_id(name or cell_schedule_id(origin, source))
    task, args = cell_task(source, namespace, name=sid, origin=origin, **cell_options)
    return schedule(task, **timing_of(when, "--schedule"), timezone=timezone, overlap=overlap,
                    catch_up=catch_up, args=args, id=sid)
