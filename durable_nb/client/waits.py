"""The waits a run can suspend on: approvals, events and durable sleeps."""

from __future__ import annotations

import json
import time
from typing import Any

from ..core import serial as _serial
from ..core.durations import parse_duration
from ..core.errors import DurableError, WaitTimeout
from ..core.serial import b64
from ..core.status import TERMINAL as TERMINAL
from ..core.status import WaitOutcome
from ..worker import context as _context
from .client import get_client
from .handles import Decision


def _require_run(what: str) -> _context.RunContext:
    ctx = _context.current()
    if ctx is None:
        raise DurableError(
            f"{what} suspends a run, so it only works inside a task run or a %%durable cell; "
            "call it from a function decorated with @dn.task and trigger that task")
    return ctx


def _preview(data: Any) -> Any:
    try:
        json.dumps(data)
        return data
    except (TypeError, ValueError):
        return repr(data)[:4000]


def approval(name: str, data: Any = None, timeout: Any = None) -> Decision:
    """Suspend until a person approves or rejects; the worker is freed meanwhile.

    ``data`` is shown to the approver. After ``timeout`` the decision is not approved
    and has ``timed_out`` set.
    """
    ctx = _require_run("dn.approval()")
    res = ctx.wait("approval", name, data=data, timeout=parse_duration(timeout),
                   preview=_preview(data))
    return Decision(approved=res["outcome"] == WaitOutcome.APPROVED, comment=res.get("comment"),
                    by=res.get("by"), at=res.get("at"), timed_out=res["outcome"] == WaitOutcome.TIMED_OUT)


def wait_for_event(key: str, timeout: Any = None) -> Any:
    """Suspend until ``send_event(key, data)``; returns ``data``. Raises WaitTimeout."""
    ctx = _require_run("dn.wait_for_event()")
    seconds = parse_duration(timeout)
    res = ctx.wait("event", key, timeout=seconds)
    if res["outcome"] == WaitOutcome.TIMED_OUT:
        raise WaitTimeout(f"no event '{key}' arrived within {seconds:g} s")
    return _serial.loads(res.get("data"))


def send_event(key: str, data: Any = None) -> int:
    """Send the event ``key`` (once per key); returns how many waiting runs it resumed."""
    blob = _serial.dumps(data, f"data of event '{key}'")
    ctx = _context.current()
    if ctx is not None:
        return ctx.send_event(key, blob)
    return get_client().request("POST", f"/events/{key}", {"data_b64": b64(blob)})["resumed"]


def sleep(seconds: Any) -> None:
    """Pause the run durably; a long sleep frees the worker and survives restarts."""
    secs = parse_duration(seconds)
    if secs is None:
        raise TypeError("dn.sleep() needs a duration, not None")
    ctx = _context.current()
    if ctx is None:
        time.sleep(secs)
        return
    ctx.wait("sleep", f"{secs:g}s", timeout=secs)


