"""Exceptions users see. Each message says what happened and what to do."""

from __future__ import annotations

import base64
import pickle
import sys
from typing import Any


class DurableError(Exception):
    """Base class of every error raised by durable_nb."""


class AbortRun(Exception):
    """Raise inside a task or step to fail the run at once, with no retry."""


class RunNotFound(DurableError, LookupError):
    """No run has this id in the store."""


class WaitConflict(DurableError):
    """A wait was already resolved, or the run is not waiting on it."""


class NotPicklable(DurableError, TypeError):
    """A value that must be stored durably cannot be serialized."""


class PayloadTooLarge(DurableError, ValueError):
    """A value to store is over the configured size limit."""


class EngineUnavailable(DurableError, ConnectionError):
    """No engine could be found or started for the database."""


class EngineLocked(DurableError):
    """The database file is already owned by another engine process."""


class RunFailed(DurableError):
    """The run ended without a result (FAILED, CRASHED, CANCELED, TIMED_OUT, EXPIRED).

    ``RunFailed.from_error`` (what ``RunHandle.result`` raises) is also an instance of the
    run's exception type when it can be rebuilt here, so that ``except ValueError`` works;
    ``original`` is that exception. IPython shows the user's frames in the worker."""

    original: BaseException | None = None  # the run's exception, rebuilt (None if it can't be)

    def __init__(self, run_id: str, status: str, error: dict | None):
        self.run_id = run_id
        self.status = status
        self.error = error or {}
        detail = ""
        if self.error:
            detail = f": {self.error.get('type', 'Error')}: {self.error.get('message', '')}"
        Exception.__init__(self, f"run {run_id} ended {status}{detail}")  # not the 2nd base's

    def __str__(self) -> str:  # the message, whatever the exception type it is also of
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple:
        return (RunFailed.from_error, (self.run_id, self.status, self.error))

    @property
    def traceback(self) -> str | None:
        """The traceback recorded by the worker, if any: the user's frames."""
        from .tracebacks import user_traceback

        return user_traceback(self.error.get("traceback"))

    def _render_traceback_(self) -> list[str]:
        """IPython shows these lines: the run, then the user's frames in the worker."""
        from .tracebacks import clean_traceback

        lines = clean_traceback(self.error.get("traceback"))
        if not lines:
            return [f"RunFailed: {self}"]
        return [f"RunFailed: run {self.run_id} ended {self.status}", *lines]

    @classmethod
    def from_error(cls, run_id: str, status: str, error: dict | None) -> RunFailed:
        """A RunFailed that is also of the type of the run's exception when Python allows
        (else ``__cause__`` is that exception); with the worker's traceback as a note."""
        original = _rebuild(error or {})
        exc: RunFailed | None = None
        klass = _also_of(type(original)) if original is not None else None
        if original is not None and klass is not None:
            try:
                exc = klass(run_id, status, error)
                _copy_state(original, exc)
            except Exception:
                exc = None
        if exc is None:
            exc = cls(run_id, status, error)
            exc.__cause__ = original
        exc.original = original
        tb = exc.traceback
        if tb:
            # printed under the exception by Python 3.11+ (IPython uses _render_traceback_)
            exc.__dict__["__notes__"] = [f"The run's traceback, in its worker:\n{tb.rstrip()}"]
        return exc


_COMBINED: dict[type, type[RunFailed] | None] = {}


def _also_of(t: type) -> type[RunFailed] | None:
    """A class deriving from RunFailed and ``t``, or None when Python refuses the pair."""
    if issubclass(t, (StopIteration, StopAsyncIteration)):
        return None  # a generator would turn it into a RuntimeError
    if t not in _COMBINED:
        try:
            _COMBINED[t] = type("RunFailed", (RunFailed, t), {
                "__module__": __name__, "__qualname__": f"RunFailed[{t.__qualname__}]"})
        except TypeError:  # a layout conflict, a final class
            _COMBINED[t] = None
    return _COMBINED[t]


def _copy_state(original: BaseException, exc: RunFailed) -> None:
    """The original's attributes (``errno``, those its class sets), where ``exc`` has none."""
    if isinstance(original, OSError) and isinstance(exc, OSError):
        exc.errno, exc.strerror = original.errno, original.strerror
        exc.filename, exc.filename2 = original.filename, original.filename2
    for k, v in vars(original).items():
        exc.__dict__.setdefault(k, v)


def _rebuild(error: dict) -> BaseException | None:
    """The run's exception: unpickled when the worker sent it ("exc_b64"), else of the
    type its name gives, when that class is loaded here, with the message as argument."""
    data = error.get("exc_b64")
    if data:
        try:
            exc = pickle.loads(base64.b64decode(data))
            if isinstance(exc, Exception) and not isinstance(exc, RunFailed):
                return exc
        except Exception:
            pass
    module, _, qualname = (error.get("type") or "").rpartition(".")
    obj: Any = sys.modules.get(module or "builtins")
    for part in qualname.split(".") if qualname else ():
        obj = getattr(obj, part, None)
    if not isinstance(obj, type) or not issubclass(obj, Exception) or issubclass(obj, RunFailed):
        return None
    try:
        exc = obj.__new__(obj)
        exc.args = (error.get("message", ""),)
        return exc
    except Exception:
        return None


class StepNotRecorded(DurableError):
    """A step try's call or output that the store does not hold (see the message why)."""


class WaitTimeout(DurableError, TimeoutError):
    """A `wait_for_event` reached its timeout before the event was sent."""


class StoreUnavailable(DurableError):
    """The store cannot write right now (a full disk, a failing device); reads still work.

    Nothing acknowledged is lost: the engine refuses new writes until it can make them
    durable again, and resumes by itself when it can."""


class Forbidden(DurableError, PermissionError):
    """The caller is authenticated but lacks the permission this call needs (HTTP 403)."""


class ApiError(DurableError):
    """The engine refused a request; `status` is the HTTP status code."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class FormInvalid(ApiError, ValueError):
    """Values given for an approval's typed form do not match its schema (HTTP 422,
    code ``invalid_form``); ``field`` names the field at fault and ``rule`` the rule."""

    def __init__(self, message: str, field: str | None = None, rule: str | None = None):
        super().__init__(422, message)
        self.field = field
        self.rule = rule

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.field, self.rule))

    def answer(self) -> dict:
        """The API's answer: ``{"error", "code": "invalid_form", "field", "rule"}``."""
        out: dict[str, Any] = {"error": str(self), "code": "invalid_form"}
        if self.field is not None:
            out["field"] = self.field
        if self.rule is not None:
            out["rule"] = self.rule
        return out


class ReplayDivergence(DurableError):
    """Code that runs again (a resume, a retry) called a step differently from the record:
    a recorded step key with other arguments, or another step where a recorded one stood.

    Returning the recorded output would be wrong data, so the run fails at once, with no
    retry (a retry would meet the same record). ``step`` is the key called now,
    ``recorded`` and ``new`` describe the recorded and the new call, ``where`` is the
    user's line that made it (``File "Cell In[5]", line 7: summarize(doc)``)."""

    def __init__(self, step: str, recorded: str, new: str, where: str = "",
                 kind: str = "arguments"):
        self.step, self.recorded, self.new, self.where, self.kind = (
            step, recorded, new, where, kind)
        at = f" at {where}" if where else ""
        if kind == "arguments":
            what = (f"step '{step}' is called{at} with {new}, but the recorded run called it "
                    f"with {recorded}")
        else:
            what = (f"step '{step}' ({new}) is called{at} where the recorded run called "
                    f"step '{recorded}'")
        super().__init__(
            f"replay divergence: {what}. Code between steps runs again on a resume or retry "
            "and must make the same step calls with the same arguments: compute values that "
            "change (time, random numbers, files) inside a step. Start the run anew with "
            "run.replay(), or declare @dn.task(on_divergence=\"warn\") to only warn.")

    def __reduce__(self) -> tuple:
        return (type(self), (self.step, self.recorded, self.new, self.where, self.kind))


class ReplayDivergenceWarning(UserWarning):
    """A replay divergence in a task declared with ``on_divergence="warn"``: the run goes
    on, and a recorded step returns its recorded output."""
