"""Bulk actions: ``POST /runs/bulk`` cancels, replays or resumes a selection of runs.

The selection is a list of run ids (the CLI pages through ``GET /runs`` with filters to
make it; the JupyterLab panel sends the rows selected). Each run is acted on as its own
route would (``POST /runs/{id}/cancel``, ``/replay``, ``/resume``) and answers for itself:
one run that cannot be acted on (finished, unknown, not resumable) does not stop the
others. Replay and resume run code, so they need the execute permission; cancel needs
write.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import DurableError
from . import apischema as S
from .routing import STR, Request, Route, out

MAX_IDS = 1000
ACTIONS = ("cancel", "replay", "resume")

BULK = S.obj({
    "action": {"type": "string", "enum": list(ACTIONS),
               "description": "what to do to each run"},
    "ids": {"type": "array", "minItems": 1, "maxItems": MAX_IDS, "items": S.RUN_ID,
            "description": f"the runs, 1 to {MAX_IDS} ids"},
    "children": {**S.CHILDREN, "description": "cancel only: " + S.CHILDREN_TEXT},
}, required=("action", "ids"))

RESULT = out({"id": STR, "ok": {"type": "boolean"}, "error": STR, "new_id": STR,
              "status": STR, "children": {"type": "array", "items": STR}}, ("id", "ok"))


async def bulk(r: Request) -> tuple[int, Any]:
    """Act on each run in order (an id given twice is acted on once); per run, whether
    it worked and why not."""
    action, ids = r.body["action"], list(dict.fromkeys(r.body["ids"]))
    if "children" in r.body and action != "cancel":
        raise S.BadRequest(f"field 'children' applies to action 'cancel' only, not "
                           f"{action!r}; leave it out", field="children", rule="dependencies")
    if action != "cancel":
        await r.authorize("execute")  # a replay or resume runs the task's code again
    results: list[dict] = []
    swept: set[str] = set()  # descendants this request canceled with their ancestor
    for run_id in ids:
        try:
            results.append(await _one(r, action, run_id, swept))
        except (DurableError, LookupError, ValueError) as exc:  # as its own route says
            results.append({"id": run_id, "ok": False, "error": str(exc)})
    ok = sum(1 for x in results if x["ok"])
    return 200, {"action": action, "results": results, "ok": ok, "failed": len(results) - ok}


async def _one(r: Request, action: str, run_id: str, swept: set[str]) -> dict:
    """One run's action and its answer (raises what its own route would answer)."""
    if action == "cancel":
        if run_id in swept and run_id not in r.engine.state.runs:
            return {"id": run_id, "ok": True, "children": []}  # with an ancestor above
        below = await r.engine.cancel(run_id, children=r.body.get("children"))
        swept.update(below)
        return {"id": run_id, "ok": True, "children": below}
    if action == "replay":
        return {"id": run_id, "ok": True, "new_id": await r.engine.replay(run_id)}
    row = await r.engine.resume(run_id, by=r.user)
    return {"id": run_id, "ok": True, "status": row["status"]}


ROUTES: list[Route] = [
    Route("POST", "/runs/bulk", f"Cancel, replay or resume up to {MAX_IDS} runs by id "
          "(`children` for cancel: cancel or abandon their descendants); each run answers "
          "for itself in `results` (a replay with its `new_id`), `ok` and `failed` count "
          "them. Replay and resume need the execute permission", bulk, action="write",
          body=BULK,
          response=out({"action": STR, "results": {"type": "array", "items": RESULT},
                         "ok": {"type": "integer"}, "failed": {"type": "integer"}},
                        ("results", "ok", "failed"))),
]
