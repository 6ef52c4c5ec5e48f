"""Exceptions users see. Each message says what happened and what to do."""

from __future__ import annotations


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
    """The run ended without a result (FAILED, CRASHED, CANCELED, TIMED_OUT, EXPIRED)."""

    def __init__(self, run_id: str, status: str, error: dict | None):
        self.run_id = run_id
        self.status = status
        self.error = error or {}
        detail = ""
        if self.error:
            detail = f": {self.error.get('type', 'Error')}: {self.error.get('message', '')}"
        super().__init__(f"run {run_id} ended {status}{detail}")

    @property
    def traceback(self) -> str | None:
        """The traceback recorded by the worker, if any."""
        return self.error.get("traceback")


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
