"""What the engine keeps of each recorded step call, for the worker's replay checks.

A worker that runs a task again (a resume, a retry) checks each step call against the
record (``worker.divergence``): the same key with other arguments, or another step where a
recorded one stood, is a replay divergence. For that the ``run`` message carries, per step
key, ``[start, end, args_hash, args_preview]``: when its first try started, when its first
final try ended (the span in which the steps it called ran, which are left out of the
order), the hash of its latest try's arguments and the start of that try's argument
preview (``PREVIEW_CHARS``, enough to name the call in an error; bounded, so a big run
keeps little in memory). Filled as tries are recorded (``engine.messages``) and at start
from the ``steps`` rows (``engine.recovery``).
"""

from __future__ import annotations

from typing import Any

from .model import Run

PREVIEW_CHARS = 1000
COLUMNS = "started_at, ended_at, args_hash, substr(args_preview, 1, 1000) AS args_preview"


def note(run: Run, key: str, start: float, end: float, args_hash: str | None,
         args_preview: str | None, final: bool) -> None:
    """A try of step ``key`` was recorded (``final``: completed, or failed for good)."""
    preview = args_preview[:PREVIEW_CHARS] if args_preview else None
    call = run.step_calls.get(key)
    if call is None:
        run.step_calls[key] = [start, end, args_hash, preview, final]
        return
    if not call[4]:  # its span grows until its first final try
        call[1] = max(call[1], end)
        call[4] = final
    call[2], call[3] = args_hash, preview


def note_row(run: Run, row: dict[str, Any], final: bool) -> None:
    """A ``steps`` row read back at start (rows in the order they started); the rows of
    child triggers (``trigger:<task>#n``) are not step calls."""
    if row["step_key"].startswith("trigger:"):
        return
    note(run, row["step_key"], row["started_at"] or 0.0, row["ended_at"] or 0.0,
         row.get("args_hash"), row.get("args_preview"), final)


def for_worker(run: Run) -> dict[str, tuple[float, float, str | None, str | None]]:
    """The ``step_calls`` of a ``run`` message."""
    return {k: (c[0], c[1], c[2], c[3]) for k, c in run.step_calls.items()}
