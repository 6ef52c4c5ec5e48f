"""Schedules over REST: list, read, create or replace, pause, resume and delete them, and
page through the runs a schedule fired (``engine.schedules``).

A schedule's payload is a pickle its runs unpickle in a worker, so creating or replacing
one needs the execute permission; pausing, resuming and deleting need write. Timing and
policy mistakes (a bad cron expression, both or neither of cron and every, an interval
under a second, an unknown time zone) answer 400 with the field at fault.
"""

from __future__ import annotations

from typing import Any

from ..core import cron
from ..engine.schedules import ScheduleNotFound
from . import apischema as S
from .apischema import BadRequest
from .routing import NUM, STR, Request, Route, out, required_b64

EVERY = {"oneOf": [S.string(50, 1), {"type": "number", "minimum": cron.MIN_EVERY,
                                     "maximum": cron.MAX_EVERY}, {"type": "null"}],
         "description": "seconds between ticks, or a duration such as '15m' (with no cron)"}
PUT_SCHEDULE = S.obj({
    "task_hash": S.string(200, 1),  # an unknown hash answers 409: the client registers it
    "cron": {**S.nullable(S.string(cron.MAX_CRON, 1)),
             "description": "five fields (minute hour day-of-month month day-of-week) or "
                            "@hourly, @daily, ...; with no every"},
    "every": EVERY,
    "timezone": {**S.string(100, 1), "description": "an IANA time zone for cron (default UTC)"},
    "overlap": {"type": "string", "enum": list(cron.OVERLAPS),
                "description": "a tick while the previous run runs: skip it, queue it, or "
                               "allow a second run (default skip)"},
    "catch_up": {"type": "string", "enum": list(cron.CATCH_UPS),
                 "description": "ticks missed while the engine was down: none, once (the "
                                "latest), or all (default once)"},
    "payload_b64": S.B64,
    "tags": S.TAGS,
    "origin": {**S.ORIGIN, "type": ["object", "null"]},
}, required=("task_hash", "payload_b64"))

SCHEDULE = out({
    "id": STR, "task_id": STR, "kind": STR, "cron": {"type": ["string", "null"]},
    "every": {"type": ["number", "null"]}, "timezone": STR, "overlap": STR, "catch_up": STR,
    "paused": {"type": "boolean"}, "last_tick": {"type": ["number", "null"]},
    "next_tick": {"type": ["number", "null"]}, "created_at": NUM,
    "tags": {"type": "array", "items": STR}, "active_runs": {"type": "integer"},
    "pending": {"type": "array", "items": NUM}, "skipped": {"type": "integer"},
}, ("id", "task_id", "paused"))


def _not_found(exc: ScheduleNotFound) -> tuple[int, dict]:
    return 404, {"error": str(exc), "code": "schedule_not_found"}


async def list_schedules(r: Request) -> tuple[int, Any]:
    return 200, {"schedules": r.engine.list_schedules()}


async def get_schedule(r: Request) -> tuple[int, Any]:
    try:
        return 200, r.engine.get_schedule(r.args[0])
    except ScheduleNotFound as exc:
        return _not_found(exc)


def _field(message: str) -> str:
    """The field a timing error is about (``core.cron.timing``'s messages)."""
    if message.startswith(("every", "not a duration", "a duration")):
        return "every"
    if message.startswith(("timezone", "unknown timezone")):
        return "timezone"
    return "cron"


async def put_schedule(r: Request) -> tuple[int, Any]:
    b = r.body
    try:
        cron.timing(b.get("cron"), b.get("every"), b.get("timezone") or "UTC")
    except ValueError as exc:
        raise BadRequest(str(exc), field=_field(str(exc)), rule="schedule") from None
    spec = {"task_hash": b["task_hash"], "cron": b.get("cron"), "every": b.get("every"),
            "timezone": b.get("timezone") or "UTC", "overlap": b.get("overlap") or "skip",
            "catch_up": b.get("catch_up") or "once", "payload": required_b64(b, "payload_b64"),
            "tags": list(b.get("tags") or []), "origin": b.get("origin")}
    try:
        return 200, await r.engine.put_schedule(r.args[0], spec)
    except LookupError as exc:
        return 409, {"error": str(exc), "code": "unknown_task"}


async def _paused(r: Request, paused: bool) -> tuple[int, Any]:
    try:
        return 200, await r.engine.pause_schedule(r.args[0], paused)
    except ScheduleNotFound as exc:
        return _not_found(exc)


async def pause_schedule(r: Request) -> tuple[int, Any]:
    return await _paused(r, True)


async def resume_schedule(r: Request) -> tuple[int, Any]:
    return await _paused(r, False)


async def delete_schedule(r: Request) -> tuple[int, Any]:
    try:
        return 200, await r.engine.delete_schedule(r.args[0])
    except ScheduleNotFound as exc:
        return _not_found(exc)


async def schedule_runs(r: Request) -> tuple[int, Any]:
    try:
        return 200, await r.engine.schedule_runs(r.args[0], r.params["limit"],
                                                 r.params["offset"])
    except ScheduleNotFound as exc:
        return _not_found(exc)


ROUTES: list[Route] = [
    Route("GET", "/schedules", "Every schedule: its timing, policies, last and next tick and "
          "how many of its runs are unfinished", list_schedules,
          response=out({"schedules": {"type": "array", "items": SCHEDULE}}, ("schedules",))),
    Route("GET", "/schedules/{schedule_id}", "One schedule (404 when there is none)",
          get_schedule, response=SCHEDULE),
    Route("PUT", "/schedules/{schedule_id}", "Create or replace a schedule of a registered "
          "task: cron (in timezone) or every, overlap, catch_up, the runs' payload and tags "
          "(a replace keeps its paused state and last tick; 409 when the task is not "
          "registered)", put_schedule, action="execute", body=PUT_SCHEDULE,
          response=SCHEDULE),
    Route("POST", "/schedules/{schedule_id}/pause", "Pause a schedule: no runs until resumed "
          "(ticks meanwhile are dropped)", pause_schedule, action="write", body=S.EMPTY,
          response=SCHEDULE),
    Route("POST", "/schedules/{schedule_id}/resume", "Resume a schedule from its next tick",
          resume_schedule, action="write", body=S.EMPTY, response=SCHEDULE),
    Route("DELETE", "/schedules/{schedule_id}", "Delete a schedule (the runs it fired stay)",
          delete_schedule, action="write",
          response=out({"id": STR, "deleted": {"type": "boolean"}}, ("id", "deleted"))),
    Route("GET", "/schedules/{schedule_id}/runs", "The runs a schedule fired, the latest "
          "tick first", schedule_runs,
          query=(S.int_param("limit", 1, 10_000, 100, "at most this many runs"),
                 S.int_param("offset", 0, 10**9, 0, "skip this many runs")),
          response=out({"schedule_id": STR, "runs": {"type": "array"},
                         "total": {"type": "integer"}}, ("runs", "total"))),
]
