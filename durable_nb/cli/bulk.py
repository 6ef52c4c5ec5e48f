"""`durable-nb cancel|replay|resume`: one RUN, or a selection of runs.

A selection (``--status S --task T --since 1h --tag X``) is listed through ``GET /runs``,
page by page, then acted on through ``POST /runs/bulk`` in chunks; what was done to each
run is printed, then a summary. No confirmation is asked: the listing printed first says
what the command acts on, and a selection that matches nothing does nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..client import show as _show
from ..core.errors import DurableError

PAGE = 1000  # runs per GET /runs page, and per POST /runs/bulk (its limit)
SELECTION = ("status", "task", "since", "tag")

_DONE = {"cancel": "canceled", "replay": "replayed", "resume": "resumed"}


def add_arguments(sp: argparse.ArgumentParser, action: str) -> None:
    """RUN, or the selection flags, of ``durable-nb <action>``."""
    sp.add_argument("run", nargs="?", help=f"the run to {action} (or give a selection)")
    sp.add_argument("--status", help=f"{action} every run in this status (or several, "
                    "joined by commas)")
    sp.add_argument("--task", help=f"{action} every run of this task id")
    sp.add_argument("--since", metavar="DURATION", help="only runs created within this "
                    "long before now: 1h, 30m, 2d, or seconds")
    sp.add_argument("--tag", action="append", help="only runs with this tag (repeat the "
                    "option for runs with all of them)")
    if action == "cancel":
        sp.add_argument("--children", choices=("cancel", "abandon"),
                        help="cancel (default): cancel the unfinished runs below each too; "
                        "abandon: leave them running")


def selection(args: Any) -> dict | None:
    """The ``GET /runs`` filters the flags give, or None when none was given; a
    DurableError when both RUN and a selection, or neither, were given."""
    given = {k: getattr(args, k) for k in SELECTION if getattr(args, k)}
    if given and args.run:
        raise DurableError(f"give one RUN or a selection ({_flags(given)}), not both")
    if not given and not args.run:
        raise DurableError("give the RUN to act on, or a selection of runs: --status S, "
                           "--task T, --since 1h, --tag X")
    if not given:
        return None
    return {"status": given.get("status"), "task": given.get("task"),
            "since": given.get("since"), "tags": ",".join(given.get("tag") or []) or None}


def _flags(given: dict) -> str:
    parts = []
    for k, v in given.items():
        for one in v if isinstance(v, list) else [v]:
            parts.append(f"--{k} {one}")
    return " ".join(parts)


def select(client: Any, query: dict) -> list[dict]:
    """Every run the filters match, newest first (paged; an id listed twice once)."""
    found: dict[str, dict] = {}
    offset = 0
    while True:
        page = client.request("GET", "/runs", query={**query, "limit": PAGE,
                                                     "offset": offset})["runs"]
        for r in page:
            found.setdefault(r["id"], r)
        if len(page) < PAGE:
            return list(found.values())
        offset += PAGE


def run_bulk(client: Any, action: str, query: dict, children: str | None = None) -> int:
    """List the runs ``query`` selects, then ``action`` them; 1 when one of them could
    not be acted on."""
    runs = select(client, query)
    shown = _flags({k if k != "tags" else "tag": v for k, v in query.items() if v})
    if not runs:
        print(f"no runs match {shown}; nothing to {action}")
        return 0
    print(f"{len(runs)} run{'s' if len(runs) != 1 else ''} match {shown}:")
    print(_show.runs_table(runs))
    ok = failed = 0
    for i in range(0, len(runs), PAGE):
        body: dict[str, Any] = {"action": action, "ids": [r["id"] for r in runs[i:i + PAGE]]}
        if action == "cancel" and children is not None:
            body["children"] = children
        out = client.request("POST", "/runs/bulk", body, timeout=600)
        for res in out["results"]:
            print(result_line(action, res))
        ok, failed = ok + out["ok"], failed + out["failed"]
    print(f"{action}: {ok} {_DONE[action]}, {failed} failed, of {len(runs)} runs")
    return 1 if failed else 0


def result_line(action: str, res: dict) -> str:
    """What was done to one run (or why not)."""
    rid = res["id"]
    if not res["ok"]:
        return f"failed   {rid}: {res.get('error')}"
    if action == "replay":
        return f"replayed {rid} as {res.get('new_id')}"
    if action == "resume":
        return f"resumed  {rid} ({res.get('status')})"
    return f"canceled {rid}" + below(res.get("children") or [])


def below(ids: list[str]) -> str:
    """`` and N runs below it`` when a cancel took descendants with it."""
    if not ids:
        return ""
    return f" and {len(ids)} run{'s' if len(ids) != 1 else ''} below it"
