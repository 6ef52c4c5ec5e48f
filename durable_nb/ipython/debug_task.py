"""``%durable debug RUN`` of a task run that failed in its own code, between steps: the
task function runs in the kernel with the run's arguments, its recorded steps and waits
returning what they returned in the run (``client.replay``), so the failure rises from
the same line with the same values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..client.replay import ReplayContext, recorded_steps, recorded_waits, replay_call
from ..client.tasks import RunHandle
from ..core import serial as _serial
from .debug import ARGS, KWARGS, call_here, run_code, task_function
from .follow import say

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


def debug_task_body(shell: InteractiveShell, run: RunHandle, summary: dict) -> Any:
    """Run the task function here under a replay of the run's records; see the module."""
    fn = task_function(shell, run, summary)
    args, kwargs = _serial.loads(run_code(run)["payload"]) or ((), {})
    info = run.info()
    steps = recorded_steps(run, info["steps"])
    ctx = ReplayContext(run.id, steps, recorded_waits(info["waits"]),
                        int(summary.get("generation") or 0))
    shell.push({ARGS: tuple(args), KWARGS: dict(kwargs)})
    say(f"run {run.id} failed in its task's own code, not in a step: running task "
        f"'{summary.get('task_id')}' here with its recorded arguments (in {ARGS}, {KWARGS}), "
        f"its {len(steps)} recorded steps returning what they returned; run %debug to "
        f"inspect, then `%durable resume {run.id}`")
    value = call_here(shell, lambda: replay_call(ctx, fn, tuple(args), dict(kwargs)))
    say(f"task '{summary.get('task_id')}' returned without raising here; its value is the "
        "output below")
    return value
