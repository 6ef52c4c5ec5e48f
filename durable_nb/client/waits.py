"""The waits a run can suspend on: approvals, events and durable sleeps."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from ..core import serial as _serial
from ..core.durations import parse_duration
from ..core.errors import DurableError, WaitTimeout
from ..core.forms import form_schema, form_values
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


def approval(name: str, data: Any = None, timeout: Any = None, form: Any = None) -> Decision:
    """Suspend until a person approves or rejects; the worker is freed meanwhile.

    ``data`` is shown to the approver. After ``timeout`` the decision is not approved
    and has ``timed_out`` set. ``form`` (a dataclass, a TypedDict, a pydantic model or a
    JSON schema dict; see ``core.forms``) is a form the approver fills in: the views show
    its fields, the engine checks the values, and ``Decision.values`` is an instance of it.
    """
    ctx = _require_run("dn.approval()")
    schema = None if form is None else form_schema(form)
    res = ctx.wait("approval", name, data=data, timeout=parse_duration(timeout),
                   preview=_preview(data), form=schema)
    return decision_of(res, form)


def decision_of(res: Mapping[str, Any], form: Any = None) -> Decision:
    """The Decision of an approval's resolution; its values as an instance of ``form``
    when approved (a rejection's values stay a dict)."""
    approved = res["outcome"] == WaitOutcome.APPROVED
    values = res.get("values")
    if approved and form is not None:
        values = form_values(form, values)
    return Decision(approved=approved, comment=res.get("comment"), by=res.get("by"),
                    at=res.get("at"), timed_out=res["outcome"] == WaitOutcome.TIMED_OUT,
                    values=values)


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


# -- awaitable forms: for async tasks and cells; they compose with asyncio.gather and
# asyncio.wait (``worker.async_waits``)


def approval_async(name: str, data: Any = None, timeout: Any = None,
                   form: Any = None) -> asyncio.Future[Decision]:
    """``approval`` as an awaitable: ``await dn.approval_async("ship")``, or several at once
    with ``asyncio.gather`` / ``asyncio.wait(..., return_when=FIRST_COMPLETED)``. While
    the run's loop has nothing to do but such waits, the run suspends and frees its
    worker; it resumes when one of them resolves."""
    ctx = _require_run("dn.approval_async()")
    schema = None if form is None else form_schema(form)
    return ctx.wait_async("approval", name, lambda res: decision_of(res, form), data=data,
                          timeout=parse_duration(timeout), preview=_preview(data),
                          form=schema)


def wait_for_event_async(key: str, timeout: Any = None) -> asyncio.Future[Any]:
    """``wait_for_event`` as an awaitable (see ``approval_async``); raises WaitTimeout
    when awaited after ``timeout`` without the event."""
    ctx = _require_run("dn.wait_for_event_async()")
    seconds = parse_duration(timeout)
    return ctx.wait_async("event", key, lambda res: _event_data(res, key, seconds),
                          timeout=seconds)


def sleep_async(seconds: Any) -> asyncio.Future[None]:
    """``sleep`` as an awaitable (see ``approval_async``): a durable timer. Outside a run,
    ``asyncio.sleep``."""
    secs = parse_duration(seconds)
    if secs is None:
        raise TypeError("dn.sleep_async() needs a duration, not None")
    ctx = _context.current()
    if ctx is None:
        return asyncio.ensure_future(asyncio.sleep(secs))
    return ctx.wait_async("sleep", f"{secs:g}s", lambda res: None, timeout=secs)


def _event_data(res: Mapping[str, Any], key: str, seconds: float | None) -> Any:
    if res["outcome"] == WaitOutcome.TIMED_OUT:
        raise WaitTimeout(f"no event '{key}' arrived within {seconds or 0:g} s")
    return _serial.loads(res.get("data"))
