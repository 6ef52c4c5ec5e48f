"""`durable-nb schedules list | pause ID | resume ID | delete ID`: the engine's schedules
from a shell (through the API, as every command but `serve` and `doctor`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from ..client.schedules import every_text
from ..client.show import fmt_time, table


def _connect(args: argparse.Namespace) -> Any:
    from ..client.client import connect

    return connect(db=args.db) if args.db else connect()


def _cadence(s: dict) -> str:
    return f"cron {s['cron']}" if s.get("cron") else f"every {every_text(s.get('every'))}"


def schedules_table(schedules: list[dict]) -> str:
    """One line per schedule: id, task, cadence and zone, next and last tick, state."""
    head = ("SCHEDULE", "TASK", "WHEN", "TIMEZONE", "NEXT", "LAST", "STATE", "ACTIVE")
    rows = [(s["id"], s["task_id"] or "", _cadence(s), s.get("timezone") or "UTC",
             "-" if s["paused"] else fmt_time(s.get("next_tick")), fmt_time(s.get("last_tick")),
             "paused" if s["paused"] else "active", str(s.get("active_runs") or 0))
            for s in schedules]
    return table(head, rows, "no schedules")


def cmd_schedules(args: argparse.Namespace) -> int:
    client = _connect(args)
    if args.action == "list":
        print(schedules_table(client.request("GET", "/schedules")["schedules"]))
        return 0
    path = "/schedules/" + quote(args.id, safe="")
    if args.action == "delete":
        client.request("DELETE", path)
        print(f"deleted schedule {args.id}; the runs it fired stay")
        return 0
    s = client.request("POST", f"{path}/{args.action}", {})
    if s["paused"]:
        print(f"paused schedule {s['id']}: no runs until `durable-nb schedules resume {s['id']}`")
    else:
        print(f"resumed schedule {s['id']}: next tick {fmt_time(s.get('next_tick'))}")
    return 0


def add_command(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register `schedules` with the `durable-nb` parser (``add`` as in ``commands``)."""
    sp = add("schedules", cmd_schedules, "list, pause, resume or delete schedules")
    sub = sp.add_subparsers(dest="action", required=True, metavar="{list,pause,resume,delete}")
    verbs = {"list": "every schedule: cadence, time zone, next and last tick, state",
             "pause": "no runs until resumed (ticks meanwhile are dropped)",
             "resume": "tick again from the next due tick",
             "delete": "delete a schedule (the runs it fired stay)"}
    for verb, text in verbs.items():
        p = sub.add_parser(verb, help=text, description=text)
        p.add_argument("--db", default=argparse.SUPPRESS, help="DuckDB file (as for the "
                       "other commands)")
        if verb != "list":
            p.add_argument("id", help="the schedule's id (by default its task's id)")
