"""A run's steps grouped by name: how many steps each name has, how they ended and how
long they took. Big runs show one node per name (the run views) instead of one per step;
the engine's REST API and the kernel's views compute the summary with this one function.

A step is a step key (``fetch#12``); its state is its last try's (highest generation, then
try number): COMPLETED is completed, ERRORED failed, FAILED failed once the run has ended
and retrying while it runs. The triggers of child runs (``trigger:...``) are not steps.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

GROUP_PAGE = 100  # steps of one name a view lists at a time


def _order(row: dict) -> tuple:
    return (row.get("generation") or 0, row.get("attempt") or 0)


def _duration(row: dict) -> float | None:
    start, end = row.get("started_at"), row.get("ended_at")
    return None if start is None or end is None else max(end - start, 0.0)


def last_tries(rows: Iterable[dict]) -> dict[str, dict]:
    """Each step key's last try, with ``tries``: how many tries the key has."""
    last: dict[str, dict] = {}
    counts: dict[str, int] = {}
    for r in rows:
        key = r["step_key"]
        if key.startswith("trigger:"):
            continue
        counts[key] = counts.get(key, 0) + 1
        if key not in last or _order(r) >= _order(last[key]):
            last[key] = r
    return {k: {**r, "tries": counts[k]} for k, r in last.items()}


def step_state(status: str, run_finished: bool) -> str:
    """completed, failed or retrying: what became of a step whose last try has ``status``."""
    if status == "COMPLETED":
        return "completed"
    if status == "FAILED" and not run_finished:
        return "retrying"
    return "failed"


def group_steps(rows: Iterable[dict], run_finished: bool) -> list[dict]:
    """One entry per step name, in the order of each name's first start: ``name``,
    ``steps`` (keys), ``tries``, ``completed``, ``failed``, ``retrying``, ``total_s`` (time
    of every try, added up), ``median_s`` (of each step's last try), ``first_at``,
    ``last_at``."""
    rows = [r for r in rows if not r["step_key"].startswith("trigger:")]
    groups: dict[str, dict] = {}
    for r in rows:  # every try: the time spent, when the name's steps ran
        g = groups.get(r["name"])
        if g is None:
            g = groups[r["name"]] = {"name": r["name"], "steps": 0, "tries": 0, "completed": 0,
                                     "failed": 0, "retrying": 0, "total_s": 0.0,
                                     "median_s": None, "first_at": None, "last_at": None}
        g["total_s"] += _duration(r) or 0.0
        start = r.get("started_at")
        end = r["ended_at"] if r.get("ended_at") is not None else start
        if start is not None and (g["first_at"] is None or start < g["first_at"]):
            g["first_at"] = start
        if end is not None and (g["last_at"] is None or end > g["last_at"]):
            g["last_at"] = end
    durations: dict[str, list[float]] = {}
    for r in last_tries(rows).values():  # each step: how it ended
        g = groups[r["name"]]
        g["steps"] += 1
        g["tries"] += r["tries"]
        g[step_state(r["status"], run_finished)] += 1
        d = _duration(r)
        if d is not None:
            durations.setdefault(r["name"], []).append(d)
    for name, ds in durations.items():
        groups[name]["median_s"] = statistics.median(ds)
    return sorted(groups.values(), key=lambda g: (g["first_at"] is None, g["first_at"] or 0))


def page_of(rows: Iterable[dict], name: str, offset: int = 0,
            limit: int = GROUP_PAGE) -> tuple[int, list[dict]]:
    """The steps named ``name``, ordered by their first start: how many there are, and
    every try of those from ``offset`` (at most ``limit`` steps)."""
    first: dict[str, float] = {}
    tries: dict[str, list[dict]] = {}
    for r in rows:
        if r["name"] != name or r["step_key"].startswith("trigger:"):
            continue
        key = r["step_key"]
        tries.setdefault(key, []).append(r)
        at = r.get("started_at") or 0.0
        first[key] = min(first.get(key, at), at)
    keys = sorted(first, key=lambda k: (first[k], k))
    page = keys[offset:offset + limit]
    return len(keys), [t for k in page for t in sorted(tries[k], key=_order)]
