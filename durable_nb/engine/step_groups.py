"""Reads for big runs: a run's steps grouped by name (``core.step_groups``), and one page of
the steps of one name, so a view of a 10,000-step run fetches a summary and the page the
user opened rather than every step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.status import TERMINAL
from ..core.step_groups import group_steps, page_of

if TYPE_CHECKING:
    from .engine import Engine

_STEP_COLUMNS = ("step_key, name, attempt, status, started_at, ended_at, error_type, "
                 "error_message, traceback, generation, run_attempt, retry_delay")


async def step_groups(engine: Engine, run_id: str) -> dict:
    """``{"run_id", "steps", "groups"}``: the run's step names with their counts (see
    ``core.step_groups.group_steps``); ``steps`` is the number of step keys."""
    row = await engine.queries.row(run_id)
    rows = await engine.queries.query(
        "SELECT step_key, name, attempt, status, started_at, ended_at, generation "
        "FROM steps WHERE run_id = ?", [run_id])
    groups = group_steps(rows, row["status"] in TERMINAL)
    return {"run_id": run_id, "steps": sum(g["steps"] for g in groups), "groups": groups}


async def step_page(engine: Engine, run_id: str, name: str, offset: int, limit: int) -> dict:
    """``{"run_id", "name", "total", "offset", "steps"}``: every try (the rows of
    GET /runs/{id}) of the steps named ``name`` from ``offset``, at most ``limit`` steps,
    in the order of their first start."""
    await engine.queries.row(run_id)
    rows = await engine.queries.query(
        f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? AND name = ?", [run_id, name])
    total, steps = page_of(rows, name, offset, limit)
    return {"run_id": run_id, "name": name, "total": total, "offset": offset, "steps": steps}


def trimmed(detail: dict, max_steps: int | None) -> dict:
    """A run's detail (GET /runs/{id}) with at most ``max_steps`` step rows, the newest;
    when it had more, ``step_groups`` (all its steps grouped by name) and
    ``steps_omitted`` (how many rows were left out) say what the rest holds."""
    steps = detail.get("steps") or []
    if max_steps is None or len(steps) <= max_steps:
        return detail
    return {**detail, "steps": steps[len(steps) - max_steps:],
            "steps_omitted": len(steps) - max_steps,
            "step_groups": group_steps(steps, detail["status"] in TERMINAL)}
