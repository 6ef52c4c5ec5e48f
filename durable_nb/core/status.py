"""The one vocabulary of states: run statuses, attempt outcomes, step statuses, wait outcomes.

Every value is stored in databases and sent over the REST API, so values never change.
Members are ``str`` (equal to, hashed and formatted as their value), so they mix freely with
the strings read back from the store; they pickle as plain ``str``, so a journal record or
a stored resolution never refers to this module.

The views keep copies: ``durable_nb/widgets/static/run_graph.js`` (``TERMINAL``, ``STATUS_COLORS``,
``KIND_OF``), ``durable_nb/widgets/static/widgets.js`` (``STATUS_FILTERS``) and the Lab extension
(``labextension/src/api.ts``: ``RunStatus``, ``ACTIVE``, ``FAILED``, ``CANCELED``, ``RESUMABLE``;
``panel.ts``: ``FILTERS``). ``tests/core/test_status.py`` checks each copy against this module.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any


class _Vocabulary(str, enum.Enum):
    """A str enum that prints as its value and pickles as a plain str."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return format(str.__str__(self), format_spec)

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        return (str, (str.__str__(self),))


class RunStatus(_Vocabulary):
    """Where a run is: QUEUED -> EXECUTING -> (WAITING | DELAYED -> QUEUED)* -> terminal."""

    QUEUED = "QUEUED"  # ready, waiting for a worker (or for its queue's limit)
    DELAYED = "DELAYED"  # waiting for its start time or for a retry delay to pass
    EXECUTING = "EXECUTING"  # an attempt is running in a worker
    WAITING = "WAITING"  # suspended on an approval, event, sleep or child runs
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"  # the task raised, and no retry is left
    CANCELED = "CANCELED"
    CRASHED = "CRASHED"  # the worker died, and no retry is left
    TIMED_OUT = "TIMED_OUT"  # killed after its kill_after
    EXPIRED = "EXPIRED"  # never started before its ttl


class AttemptOutcome(_Vocabulary):
    """How one attempt (one try of a run in a worker) ended."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    SUSPENDED = "SUSPENDED"  # the worker was freed while the run waits
    INTERRUPTED = "INTERRUPTED"  # the engine stopped during the attempt
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED_OUT"


class StepStatus(_Vocabulary):
    """How one try of a step ended."""

    COMPLETED = "COMPLETED"  # its output is recorded and never recomputed
    FAILED = "FAILED"  # a try that will be retried
    ERRORED = "ERRORED"  # the failure raised into the task


class WaitOutcome(_Vocabulary):
    """How a wait (approval, event, sleep, retry delay, child runs) was resolved."""

    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"  # an approval or event not in time
    ELAPSED = "elapsed"  # a sleep or retry delay passed
    EVENT = "event"  # the awaited event was sent
    COMPLETED = "completed"  # the awaited child runs finished
    ABANDONED = "abandoned"  # the run went on (a retry) or ended without it
    CANCELED = "canceled"  # the run was canceled


class ShownState(_Vocabulary):
    """What views show for something not ended yet; never stored."""

    RUNNING = "RUNNING"  # an attempt or step still running
    PENDING = "PENDING"  # a wait not resolved yet


ACTIVE: frozenset[RunStatus] = frozenset({
    RunStatus.QUEUED, RunStatus.DELAYED, RunStatus.EXECUTING, RunStatus.WAITING})
TERMINAL: frozenset[RunStatus] = frozenset(RunStatus) - ACTIVE
# work to do now: while runs are in these, a Jupyter server hosting the engine is not idle
BUSY: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.EXECUTING})
# ended by an error
FAILURES: frozenset[RunStatus] = frozenset({
    RunStatus.FAILED, RunStatus.CRASHED, RunStatus.TIMED_OUT})
# ended by a decision, not an error: canceled, or expired (never started before its ttl:
# nothing ran, nothing failed; Celery likewise revokes a task past its `expires`)
CANCELED_OR_EXPIRED: frozenset[RunStatus] = frozenset({RunStatus.CANCELED, RunStatus.EXPIRED})
# can be resumed: continued in a new attempt after the last recorded step or checkpoint
RESUMABLE: frozenset[RunStatus] = FAILURES | {RunStatus.CANCELED}
# every run status, active first (in the order runs move) then terminal ones sorted
STATUSES: tuple[RunStatus, ...] = (
    RunStatus.QUEUED, RunStatus.DELAYED, RunStatus.EXECUTING, RunStatus.WAITING,
    *sorted(TERMINAL))

# The filters run lists offer (label: statuses), in the order they are offered.
FILTER_GROUPS: Mapping[str, tuple[RunStatus, ...]] = {
    "active": tuple(s for s in STATUSES if s in ACTIVE),
    "completed": (RunStatus.COMPLETED,),
    "failed": tuple(s for s in STATUSES if s in FAILURES),
    "canceled / expired": tuple(s for s in STATUSES if s in CANCELED_OR_EXPIRED),
}

# The color group ("dng-k-<kind>" in run_graph.js) of every value a view colors.
VIEW_KIND: Mapping[str, str] = {
    **{s: "ok" for s in (RunStatus.COMPLETED, WaitOutcome.APPROVED, WaitOutcome.EVENT,
                         WaitOutcome.ELAPSED, WaitOutcome.COMPLETED)},
    **{s: "bad" for s in (*FAILURES, StepStatus.ERRORED, WaitOutcome.REJECTED,
                          WaitOutcome.TIMED_OUT)},
    **{s: "run" for s in (RunStatus.EXECUTING, ShownState.RUNNING)},
    **{s: "wait" for s in (RunStatus.WAITING, RunStatus.DELAYED, ShownState.PENDING)},
    **{s: "idle" for s in (RunStatus.QUEUED, AttemptOutcome.SUSPENDED,
                           AttemptOutcome.INTERRUPTED)},
    **{s: "off" for s in (*CANCELED_OR_EXPIRED, WaitOutcome.CANCELED, WaitOutcome.ABANDONED)},
}


def sql_list(values: Iterable[str]) -> str:
    """``'A','B'`` for ``IN (...)``: sorted, so a query's text is stable (values are ours)."""
    return ",".join(f"'{v}'" for v in sorted(values))


def csv(values: Iterable[str]) -> str:
    """``A,B`` as the ``status`` filter of the API takes it (in the order of STATUSES)."""
    wanted = set(values)
    return ",".join(s for s in STATUSES if s in wanted)
