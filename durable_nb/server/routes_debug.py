"""``GET /runs/{run_id}/code``: a run's code and arguments, for debugging it in a kernel.

``%durable debug RUN`` re-raises a failed step (or a cell's failing statement) in the
user's kernel with the values the run recorded. When the task was not defined in that
kernel (a new kernel, a task of another notebook), the kernel needs the code the run
executed: the task's cloudpickled function as it was registered, and the run's pickled
arguments (a cell's source and the notebook variables it read). Both are code to
unpickle, so the route needs the execute permission, as registering a task does.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import WaitConflict
from ..core.serial import b64
from .routing import STR, Request, Route, out


async def run_code(r: Request) -> tuple[int, Any]:
    """The run's task code (as registered) and payload, both base64 pickles."""
    run_id = r.args[0]
    await r.engine.queries.row(run_id)  # 404 for an unknown run
    rows = await r.engine.queries.query(
        "SELECT kind, task_id, task_hash, payload FROM runs WHERE id = ?", [run_id])
    row = rows[0]
    task = r.engine.state.tasks.get(row["task_hash"])
    if task is None:
        raise WaitConflict(f"the code of run {run_id}'s task ({row['task_id']}, "
                           f"{row['task_hash']}) is not in the store")
    return 200, {"run_id": run_id, "kind": row["kind"], "task_id": task.task_id,
                 "task_hash": task.hash, "code_b64": b64(task.code),
                 "sys_path": list(task.sys_path), "payload_b64": b64(row["payload"])}


ROUTES: list[Route] = [
    Route("GET", "/runs/{run_id}/code", "The run's task code as registered (cloudpickled, "
          "code_b64) and its pickled arguments (payload_b64; a cell's source and inputs), "
          "for `%durable debug` in a kernel; needs the execute permission (it hands out code)",
          run_code, action="execute",
          response=out({"run_id": STR, "kind": STR, "task_id": STR, "task_hash": STR,
                        "code_b64": STR, "sys_path": {"type": "array", "items": STR},
                        "payload_b64": {"type": ["string", "null"]}},
                       ("run_id", "task_hash", "code_b64"))),
]
