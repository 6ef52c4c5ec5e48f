"""The messages of the engine <-> worker channel, one TypedDict per op.

They are plain dicts on the wire (``core.protocol`` pickles them), so these types only
name their fields. Values are cloudpickled bytes already, so the engine never unpickles a
user's object. Every message after ``hello`` names its attempt (``aid``, ``"<run>/<n>"``):
a message of an attempt that already ended is dropped. A request carries ``req`` and its
reply ``re``, the same number: a late reply is never taken for the answer to another.
Each message class is final (no subclass), so a check such as ``"error" in reply`` tells
a type checker which one a message is.

Worker -> engine (``WorkerMessage``):

==============  ==========  =====================================================  ============
op              class       fields                                                 reply
==============  ==========  =====================================================  ============
``hello``       Hello       pid (once, before any attempt; on Dask also slot,      -
                            token, worker, host, as JSON)
``log``         Log         stream, lines, at (printed lines)                      -
``step``        Step        key, name, attempt, start, end, output, args,          ok
                            args_preview, output_preview, args_hash
``step_failed`` StepFailed  key, name, attempt, start, end, error, final, exc,     ok
                            delay, args, args_preview, args_hash
``wait``        WaitFor     key, kind, name, data, preview, timeout, target,       resolved,
                            form (an approval's typed form), mode ("async": no     suspend or
                            blocking, the resolution comes when it happens)        error
``waits_idle``  WaitsIdle   keys: the attempt's loop has nothing to do but these   suspend
                            async waits (``worker.async_waits``)                   (after grace)
``trigger``     Trigger     key, task, payloads, options (child runs)              run_ids or
                                                                                   error
``send_event``  SendEvent   key, data                                              resumed or
                                                                                   error
``checkpoint``  Checkpoint  statement, total, manifest, counts, blobs, size        ok or error
``metadata``    MetadataSet change, key, value (JSON text), call (dn.metadata)     ok or
                                                                                   refused
``progress``    Progress    done, total, text, at (dn.progress, tqdm)              -
``done``        Done        output (the attempt's end: completed)                  -
``failed``      Failed      error (the attempt's end: the user's exception)        -
``suspended``   Suspended   (the attempt's end: unwound after ``suspend``)         -
==============  ==========  =====================================================  ============

Engine -> worker (``EngineMessage``):

============  ===========  ======================================================
op            class        fields
============  ===========  ======================================================
``run``       RunAttempt   the attempt: task code, payload, what earlier attempts
                           recorded (steps, step failures, resolved waits, the
                           latest checkpoint, step calls to check replays against),
                           limits
(none)        ``Reply``    to a request: ``OkReply`` {ok}, ``ErrorReply`` {error},
                           ``RunIdsReply`` {run_ids}, ``ResumedReply`` {resumed},
                           ``RefusedReply`` {refused}
``resolved``  Resolved     key, resolution: the wait is over, go on
``suspend``   SuspendRun   key: the wait goes on without a worker, unwind
``refused``   Refused      why: a hello on the Dask listener that proves nothing
============  ===========  ======================================================
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, final

# -- shared field types ------------------------------------------------------------------


class _ErrorExtras(TypedDict, total=False):
    traceback_full: str  # with durable_nb's frames (``traceback``: the user's only)
    exc_b64: str  # the pickled exception, base64, to rebuild its type in the client


class ErrorInfo(_ErrorExtras):
    """A user's exception as the engine stores it (text only, cleaned to be storable)."""

    type: str  # qualified name of the exception's class
    message: str
    traceback: str
    abort: bool  # an error no retry can fix (AbortRun, NotPicklable, PayloadTooLarge)


Recorded = tuple[str, bytes | None]
"""A recorded step: ``("ok", output)`` or ``("err", pickled exception or None)``."""

ChildResult = tuple[str, str, bytes | None, dict[str, Any] | None]
"""A finished child run: (run id, status, output, error)."""


class _ResolutionBase(TypedDict):
    outcome: str  # a WaitOutcome value
    at: float
    by: str | None


class Resolution(_ResolutionBase, total=False):
    """How a wait ended; the extra fields depend on its kind."""

    comment: str | None  # approvals
    values: dict[str, Any] | None  # approvals: the typed form's values, checked
    note: str  # approvals: the name a client gave, beside the authenticated ``by``
    data: bytes | None  # events: the event's data
    results: list[ChildResult]  # child waits
    seq: int  # the order of first delivery to an attempt, among the run's waits


class TaskSpec(TypedDict):
    """A task's code and options, as ``trigger`` sends them (hash by content)."""

    hash: str
    task_id: str
    code: bytes
    sys_path: list[str]
    options: dict[str, Any]


class _TriggerExtras(TypedDict, total=False):
    priority: int  # only when the caller gave one


class TriggerOptions(_TriggerExtras):
    delay: float | None
    tags: list[str]
    concurrency_key: str | None
    ttl: float | None


class _CheckpointBase(TypedDict):
    statement: int  # top-level statements completed
    manifest: dict[str, Any]  # variable -> its entry (``core.checkpoints``)
    counts: dict[str, int]  # step occurrence counters at that point


class CheckpointState(_CheckpointBase, total=False):
    """The latest checkpoint of a cell, sent with the attempt that resumes it."""

    seq: int
    blobs: dict[str, bytes]  # hash -> bytes of the pieces kept in the database
    sizes: dict[str, int]  # hash -> size of every piece of the manifest


# -- worker -> engine ---------------------------------------------------------------------


class _FromAttempt(TypedDict, total=False):
    aid: str  # always present: ``RunContext.send`` and ``request`` add it


class _Request(_FromAttempt, total=False):
    req: int  # always present: ``RunContext.request`` adds it


class _RemoteHello(TypedDict, total=False):
    """What an attempt on Dask adds (sent as JSON: nothing of an unproven peer is
    unpickled): its slot and token, its Dask worker's address and its host name."""

    slot: str
    token: str
    worker: str
    host: str


@final
class Hello(_RemoteHello):
    op: Literal["hello"]
    pid: int


@final
class Log(_FromAttempt):
    op: Literal["log"]
    stream: str  # "stdout" or "stderr"
    lines: list[str]
    at: float


class _StepCall(_Request, total=False):
    """What a step's try was called with, and previews for the views (absent from workers
    of earlier releases)."""

    args: bytes | None  # the pickled (args, kwargs), None when too large or unpicklable
    args_preview: str | None  # JSON (worker.previews): the arguments' previews
    args_hash: str | None  # canonical hash of the call (worker.arghash), None: unhashable


class _StepOutput(_StepCall, total=False):
    output_preview: str | None  # JSON: the output's preview


@final
class Step(_StepOutput):
    op: Literal["step"]
    key: str  # "<name>#<occurrence>"
    name: str
    attempt: int  # the step's try
    start: float
    end: float
    output: bytes


@final
class StepFailed(_StepCall):
    op: Literal["step_failed"]
    key: str
    name: str
    attempt: int
    start: float
    end: float
    error: ErrorInfo
    final: bool  # no try follows
    exc: bytes | None  # the pickled exception, when final
    delay: float | None  # seconds before the next try, when not final


class _WaitExtras(_Request, total=False):
    form: dict[str, Any]  # an approval's typed form: its JSON schema (``core.forms``)
    mode: Literal["async"]  # an awaitable wait: no blocking, resolved whenever it happens


@final
class WaitFor(_WaitExtras):
    op: Literal["wait"]
    key: str  # "<kind>:<name>#<occurrence>"
    kind: str  # approval, event, sleep, retry, child
    name: str
    data: bytes | None
    preview: Any  # JSON shown to an approver
    timeout: float | None
    target: list[str] | None  # child waits: the run ids


@final
class Trigger(_Request):
    op: Literal["trigger"]
    key: str
    task: TaskSpec
    payloads: list[bytes]  # one child run each
    options: TriggerOptions


@final
class SendEvent(_Request):
    op: Literal["send_event"]
    key: str
    data: bytes


@final
class Checkpoint(_Request):
    op: Literal["checkpoint"]
    statement: int
    total: int  # statements in the cell
    manifest: dict[str, Any]  # variable -> its entry (``core.checkpoints``)
    counts: dict[str, int]
    blobs: dict[str, bytes]  # new small pieces, for the database
    files: dict[str, int]  # new large pieces (hash -> size), already durable as files
    size: int  # bytes of every value of the manifest
    took: float  # seconds the worker spent on it (pickling, hashing, writing files)


@final
class MetadataSet(_Request):
    """A ``dn.metadata`` change, answered once durable (``core.run_reports``)."""

    op: Literal["metadata"]
    change: str  # set, increment or append
    key: str
    value: str  # the JSON text of the value (increment: of the number to add)
    call: str  # "<scope>metadata:<key>#<n>": a re-executed call is not applied again


@final
class Progress(_FromAttempt):
    """A run's progress (``dn.progress`` or the outermost tqdm bar); no reply."""

    op: Literal["progress"]
    done: float
    total: float | None
    text: str | None
    at: float


@final
class Done(_FromAttempt):
    op: Literal["done"]
    output: bytes


@final
class Failed(_FromAttempt):
    op: Literal["failed"]
    error: ErrorInfo


@final
class Suspended(_FromAttempt):
    op: Literal["suspended"]


@final
class WaitsIdle(_FromAttempt):
    """The attempt's event loop has nothing left to do but wait for these async waits:
    after the grace period the engine suspends the run; any of them resumes it."""

    op: Literal["waits_idle"]
    keys: list[str]


Request = Step | StepFailed | WaitFor | Trigger | SendEvent | Checkpoint | MetadataSet
"""The messages the engine answers (``Reply``, or for ``wait`` also Resolved/Suspend)."""

AttemptEnd = Done | Failed | Suspended

WorkerMessage = Hello | Log | Progress | WaitsIdle | Request | AttemptEnd
"""Every message a worker sends."""


# -- engine -> worker ---------------------------------------------------------------------


class _RunBase(TypedDict):
    op: Literal["run"]
    run_id: str
    attempt: int
    aid: str
    task_id: str
    task_hash: str
    code: bytes  # the cloudpickled task function
    sys_path: list[str]
    payload: bytes  # cloudpickled (args, kwargs)
    generation: int  # task-level retries so far
    steps: dict[str, Recorded]
    step_failures: dict[str, int]  # step key -> failed tries so far
    waits: dict[str, Resolution]  # wait key -> resolution, for waits already resolved
    max_payload: int
    max_checkpoint: int
    blob_dir: str  # where large checkpoint pieces are files


@final
class RunAttempt(_RunBase, total=False):
    """An attempt to execute; ``checkpoint`` when a cell resumes."""

    checkpoint: CheckpointState
    # step key -> (start, end, args hash, args preview): the record replayed calls are
    # checked against (``engine.step_calls``, ``worker.divergence``)
    step_calls: dict[str, tuple[float, float, str | None, str | None]]
    on_divergence: str  # "raise" (default) or "warn": the task's on_divergence


class _ReplyBase(TypedDict):
    aid: str
    re: int | None  # the request's ``req``


@final
class OkReply(_ReplyBase):
    ok: bool


@final
class ErrorReply(_ReplyBase):
    error: str


@final
class RunIdsReply(_ReplyBase):
    run_ids: list[str]


@final
class ResumedReply(_ReplyBase):
    resumed: int  # waiting runs the event resumed


@final
class MissingReply(_ReplyBase):
    missing: list[str]  # a checkpoint's files that are not there: the worker writes them again


class Refusal(TypedDict):
    """Why a ``metadata`` change was refused, and the exception the worker raises for it."""

    type: str  # TypeError, ValueError or PayloadTooLarge
    message: str


@final
class RefusedReply(_ReplyBase):
    refused: Refusal  # a ``metadata`` change that was not applied


Reply = OkReply | ErrorReply | RunIdsReply | ResumedReply | MissingReply | RefusedReply


@final
class Resolved(TypedDict):
    op: Literal["resolved"]
    aid: str
    key: str
    resolution: Resolution


@final
class SuspendRun(TypedDict):
    op: Literal["suspend"]
    aid: str
    key: str


@final
class Refused(TypedDict):
    """To a peer on the Dask listener whose hello proves nothing (or an attempt that
    already ran elsewhere); the engine closes the connection after it."""

    op: Literal["refused"]
    why: str


EngineMessage = RunAttempt | Reply | Resolved | SuspendRun | Refused
"""Every message the engine sends a worker."""

Message = WorkerMessage | EngineMessage
