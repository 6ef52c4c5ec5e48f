"""A run's task function called again outside a worker, its recorded steps and waits
returning what the run recorded (``%durable debug`` of a run that failed between steps),
and one of its steps called again (``StepCallContext``).

The function runs under a ``ReplayContext``: the worker's run context with no engine
behind it. A recorded step returns its recorded output (or raises its recorded error), a
resolved wait its resolution, a ``dn.metadata`` change does nothing; anything the run
never recorded (a step, a wait, a child run) stops the replay with ``ReplayEnd``, which
says what was reached: the code did not go the way the run went.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Callable
from typing import Any, cast

from ..core.errors import DurableError
from ..core.messages import RunAttempt
from ..core.status import StepStatus, WaitOutcome
from ..worker import context as _context
from .steps import step_path

REPLAYABLE_WAITS = ("approval", "sleep", "retry")  # their resolution is in GET /runs/{id}


class ReplayEnd(DurableError):
    """The replay reached something the run never recorded."""


class _NoEngine:
    """The channel of a replay: nothing is sent anywhere."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def check(self) -> None:
        return None

    def send(self, msg: dict) -> None:
        raise ReplayEnd(f"the replay of run {self.run_id} in this process reached a "
                        f"'{msg.get('op')}' the run never recorded")

    def recv(self) -> dict:
        raise ReplayEnd(f"the replay of run {self.run_id} has no engine to answer it")


class ReplayContext(_context.RunContext):
    """A run context that answers from the run's records only."""

    def __init__(self, run_id: str, steps: dict, waits: dict, generation: int = 0):
        channel: Any = _NoEngine(run_id)
        attempt: dict[str, Any] = {  # a RunAttempt as the engine would send it
            "op": "run", "run_id": run_id, "attempt": 0, "aid": f"{run_id}/replay",
            "task_id": "", "task_hash": "", "code": b"", "sys_path": [], "payload": b"",
            "generation": generation, "steps": steps, "step_failures": {}, "waits": waits,
            "max_payload": 1 << 62, "max_checkpoint": 0, "blob_dir": ""}
        super().__init__(channel, cast(RunAttempt, attempt))

    def _end(self, what: str) -> ReplayEnd:
        return ReplayEnd(f"the replay of run {self.run_id} in this process reached {what}, "
                         "which the run never recorded: the code no longer goes the way the "
                         "run went (was it changed, or does it depend on the time or on "
                         "outside state?)")

    def step_begin(self, name: str) -> tuple[str, int, Any]:
        key, attempt, recorded = super().step_begin(name)
        if recorded is None:
            raise self._end(f"step {key}")
        return key, attempt, recorded

    def wait(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        key = self.next_key(f"{kind}:{name}")
        if key not in self.waits:
            raise self._end(f"the {kind} wait {key}")
        return self.waits[key]

    def request(self, msg: Any) -> Any:
        if msg.get("op") == "metadata":
            return {}  # applied when the run went this way; nothing to change now
        raise self._end(f"a '{msg.get('op')}' request")

    def send(self, msg: Any) -> None:
        return None  # progress and logs of a replay go nowhere


class StepCallContext(ReplayContext):
    """One step called again outside a worker: ``dn.idempotency_key()`` in it gives the key
    it had in the run (so an outside service that takes it sees the same call), the steps
    it calls run as plain calls, and nothing is recorded; a wait or a child run stops it."""

    def __init__(self, run_id: str, key: str):
        super().__init__(run_id, {}, {})
        self.step_key = key

    def call_step(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict,
                  *_rest: Any, **_options: Any) -> Any:
        return fn(*args, **kwargs)

    async def call_step_async(self, name: str, fn: Callable[..., Any], args: tuple,
                              kwargs: dict, *_rest: Any, **_options: Any) -> Any:
        return await fn(*args, **kwargs)


def recorded_steps(run: Any, rows: list[dict]) -> dict[str, tuple[str, bytes | None]]:
    """The run's outcomes by step key, as a worker gets them: each completed step's output,
    and the recorded error of a step that raised into the task."""
    keys = list(dict.fromkeys(r["step_key"] for r in rows
                              if r["status"] in (StepStatus.COMPLETED, StepStatus.ERRORED)))
    out: dict[str, tuple[str, bytes | None]] = {}
    for key in keys:
        tries = run.client.request("GET", step_path(run.id, key), query={"values": 1})["tries"]
        done = [t for t in tries if t["status"] == StepStatus.COMPLETED]
        last = done[-1] if done else tries[-1]
        data = base64.b64decode(last["output_b64"]) if last.get("output_b64") else None
        out[key] = ("ok", data) if done else ("err", data)
    return out


def recorded_waits(waits: list[dict]) -> dict[str, dict]:
    """Resolutions of the run's resolved approvals, sleeps and retry delays by wait key
    (an event's data and child runs' results are not replayed)."""
    return {w["wait_key"]: {"outcome": w["outcome"], "comment": w.get("comment"),
                            "by": w.get("resolved_by"), "at": w.get("resolved_at")}
            for w in waits if w.get("outcome") and w["kind"] in REPLAYABLE_WAITS
            and w["outcome"] != WaitOutcome.EVENT}


def replay_call(ctx: ReplayContext, fn: Callable, args: tuple, kwargs: dict) -> Any:
    """``fn(*args, **kwargs)`` under ``ctx`` (an async function's coroutine sets it where it
    runs: on whatever thread and loop awaits it)."""
    token = _context._current.set(ctx)
    try:
        value = fn(*args, **kwargs)
    finally:
        _context._current.reset(token)
    if inspect.iscoroutine(value):
        return _under(ctx, value)
    return value


async def _under(ctx: ReplayContext, coro: Any) -> Any:
    token = _context._current.set(ctx)
    try:
        return await coro
    finally:
        _context._current.reset(token)
