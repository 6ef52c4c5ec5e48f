"""The Python API: tasks, steps, run handles and the waits a run can suspend on."""

from __future__ import annotations

import base64
import functools
import inspect
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..core import codepickle as _codepickle
from ..core import serial as _serial
from ..core import views as _views
from ..core.durations import parse_duration
from ..core.errors import (
    ApiError,
    DurableError,
    NotPicklable,
    PayloadTooLarge,
    RunFailed,
    WaitTimeout,
)
from ..core.placement import check_executor, check_resources
from ..core.retry import Retry
from ..core.serial import b64
from ..core.status import TERMINAL as TERMINAL  # re-exported: the views import it here
from ..core.status import RunStatus, WaitOutcome
from ..worker import context as _context
from .client import Client, get_client
from .queues import Queue as Queue  # re-exported: stored tasks name it here
from .queues import Rate as Rate
from .steps import StepRecord, step_records


@dataclass(frozen=True)
class Decision:
    """How an approval was resolved."""

    approved: bool
    comment: str | None = None
    by: str | None = None
    at: float | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class RunResult:
    """One child's outcome in ``batch_trigger_and_wait``."""

    id: str
    status: str
    output: Any = None
    error: dict | None = None

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.COMPLETED

    def unwrap(self) -> Any:
        """The output, or RunFailed if the child did not complete."""
        if not self.ok:
            raise RunFailed.from_error(self.id, self.status, self.error)
        return self.output


class SqlResult(list):
    """Rows (tuples) of a read-only query, with ``columns``."""

    def __init__(self, columns: list[str], rows: Iterable):
        super().__init__(tuple(r) for r in rows)
        self.columns = columns

    @property
    def rows(self) -> list[tuple]:
        return list(self)

    def to_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, r, strict=True)) for r in self]

    def __repr__(self) -> str:
        return f"SqlResult(columns={self.columns}, rows={list.__repr__(self)})"


# ---------------------------------------------------------------------- run handles

class RunHandle:
    """A run in the store. Cheap to create; every property asks the engine."""

    # set by %%durable: the run's output is printed into the cell that shows this handle,
    # so the handle's view keeps its own copy of the output folded (a class default: handles
    # unpickled from older checkpoints have it too)
    outputs_in_cell = False

    def __init__(self, run_id: str, client: Client | None = None, summary: dict | None = None):
        self.id = run_id
        self._client = client
        self._summary = summary

    @property
    def client(self) -> Client:
        return self._client or get_client()

    def __repr__(self) -> str:
        s = self._summary or {}
        task = f" task={s['task_id']!r}" if s.get("task_id") else ""
        status = f" status={s['status']}" if s.get("status") else ""
        return f"<RunHandle {self.id}{task}{status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _poll(self, timeout: float = 0.0) -> dict:
        self._summary = self.client.request(
            "GET", f"/runs/{self.id}/result", query={"timeout": timeout},
            timeout=timeout + 30)
        return self._summary

    @property
    def status(self) -> str:
        return self._poll()["status"]

    def info(self) -> dict:
        """Everything the store holds about the run (attempts, steps, waits, children)."""
        return self.client.request("GET", f"/runs/{self.id}")

    @property
    def attempts(self) -> list[dict]:
        """The run's attempts, in order: dicts with ``number``, ``outcome``, ``started_at``,
        ``ended_at``, ``error_type``, ``error_message``, ``traceback``, ``worker_pid`` (the
        process that ran it) and ``worker`` (the Dask worker's address, such as
        ``"tcp://10.0.0.3:40123"``, when it ran on a Dask cluster; ``None`` on a local
        worker process)."""
        return self.info()["attempt_list"]

    @property
    def steps(self) -> list[StepRecord]:
        """The run's step tries, in time order: dicts (``step_key``, ``status``, ``error_*``
        ...) with ``.args``, ``.kwargs``, ``.output`` and their previews (`client.steps`)."""
        return step_records(self.id, self.client, self.info()["steps"])

    @property
    def waits(self) -> list[dict]:
        """The run's waits: sleeps, approvals, events and child runs (the retry delays of
        its steps are in ``retry_delays``)."""
        return [w for w in self.info()["waits"] if w["kind"] != "retry"]

    @property
    def retry_delays(self) -> list[dict]:
        """The durable pauses before its steps' retries, as waits of kind ``retry``."""
        return [w for w in self.info()["waits"] if w["kind"] == "retry"]

    @property
    def spans(self) -> list[dict]:
        return self.client.request("GET", f"/runs/{self.id}/spans")["spans"]

    @property
    def logs(self) -> list[dict]:
        return self.client.request("GET", f"/runs/{self.id}/logs")["logs"]

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run finishes (or ``timeout`` seconds); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 25.0 if deadline is None else max(0.0, min(25.0, deadline - time.monotonic()))
            s = self._poll(left)
            if s["status"] in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
                return s["status"]

    def result(self, timeout: float | None = None) -> Any:
        """The run's return value, waiting for it. Ctrl-C stops waiting, not the run.

        Raises RunFailed when the run ended otherwise (an instance of the task's exception
        type too, when it can be rebuilt: ``except ValueError`` works), TimeoutError after
        ``timeout``.
        """
        status = self.wait(timeout)
        if status not in TERMINAL:
            raise TimeoutError(f"run {self.id} is still {status} after {timeout} s")
        summary = self._summary
        if summary is None:  # wait() polled the run at least once
            raise DurableError(f"run {self.id}: no result was fetched")
        if status != RunStatus.COMPLETED:  # of the error's type too, when it can be rebuilt
            raise RunFailed.from_error(self.id, status, summary.get("error"))
        out = summary.get("output_b64")
        return _serial.loads(base64.b64decode(out)) if out else None

    def cancel(self) -> None:
        self.client.request("POST", f"/runs/{self.id}/cancel")

    def resume(self) -> RunHandle:
        """Continue this FAILED, CRASHED, CANCELED or TIMED_OUT run in a new attempt, after
        its last recorded step (a cell: its last checkpoint), with its retry policy whole.
        Returns this handle; ``result()`` waits for the resumed run."""
        self.client.request("POST", f"/runs/{self.id}/resume")
        self._summary = None
        return self

    def replay(self) -> RunHandle:
        """A new run of the same task with the same arguments."""
        out = self.client.request("POST", f"/runs/{self.id}/replay")
        return RunHandle(out["id"], self._client)

    def approve(self, name: str | None = None, comment: str | None = None,
                by: str | None = None) -> dict:
        """Approve the pending approval (``name`` picks one); refused if already resolved."""
        return self.client.request("POST", f"/runs/{self.id}/approve",
                                   {"wait": name, "comment": comment, "by": by})

    def reject(self, name: str | None = None, comment: str | None = None,
               by: str | None = None) -> dict:
        return self.client.request("POST", f"/runs/{self.id}/reject",
                                   {"wait": name, "comment": comment, "by": by})

    def timeline(self):
        """A plotly Gantt chart of the run's attempts, steps (with failed tries and retry
        delays), waits and child runs."""
        if _views.timeline is None:
            raise DurableError("timelines need the widgets: import durable_nb first")
        return _views.timeline([self])

    def _ipython_display_(self) -> None:
        """In a kernel: the live run widget; elsewhere the plain repr."""
        try:
            if _views.display_run is None or not _views.display_run(self):
                print(repr(self))
        except DurableError as exc:
            print(f"{self!r} (no live view: {exc})")


# ---------------------------------------------------------------------- steps

def step(fn: Callable | None = None, *, name: str | None = None, retry: Retry | None = None):
    """Journal calls of ``fn`` inside a run: once its result is recorded, it never runs again.

    Outside a run the function is called as is. ``retry`` retries the step in place.
    """
    def deco(f: Callable) -> Callable:
        sname = name or f.__qualname__
        if inspect.iscoroutinefunction(f):
            @functools.wraps(f)
            async def async_wrapper(*args, **kwargs):
                ctx = _context.current()
                if ctx is None:
                    return await f(*args, **kwargs)
                return await ctx.call_step_async(sname, f, args, kwargs, retry)

            async_wrapper.__dict__["__durable_step__"] = sname  # names the step's wrapper
            return async_wrapper

        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            ctx = _context.current()
            if ctx is None:
                return f(*args, **kwargs)
            return ctx.call_step(sname, f, args, kwargs, retry)

        wrapper.__dict__["__durable_step__"] = sname
        return wrapper

    return deco(fn) if fn is not None else deco


def idempotency_key() -> str:
    """A stable key for the step being executed: the same in every retry and resume."""
    ctx = _context.current()
    if ctx is None or ctx.step_key is None:
        raise DurableError("dn.idempotency_key() is only available inside a step of a run")
    return f"{ctx.run_id}:{ctx.step_key}"


# ---------------------------------------------------------------------- tasks

def _payload(fn: Callable, task_id: str, args: tuple, kwargs: dict, limit: int | None) -> bytes:
    """Pickle (args, kwargs); on failure name the argument at fault."""
    what = f"the arguments of task '{task_id}'"
    try:  # functions among them keep the source of their notebook cells for tracebacks
        data: bytes | None = _codepickle.dumps((args, kwargs))
    except Exception:  # pickling raises many types
        data = None
    if data is None:  # plain cloudpickle, as before; if it fails too, the argument is named
        try:
            data = _serial.dumps((args, kwargs), what)
        except NotPicklable:
            data = None
    if data is not None and (limit is None or len(data) <= limit):
        return data
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        bound = {**{str(i): a for i, a in enumerate(args)}, **kwargs}
    sizes = []
    for argname, value in bound.items():
        one = _serial.dumps(value, f"argument '{argname}' of task '{task_id}'")
        sizes.append((argname, len(one)))
    sizes.sort(key=lambda p: -p[1])
    listing = ", ".join(f"'{n}' {_serial.fmt_size(s)}" for n, s in sizes[:3])
    total = len(data) if data is not None else len(_serial.dumps((args, kwargs), what))
    raise PayloadTooLarge(
        f"{what} are {_serial.fmt_size(total)}, over the limit of "
        f"{_serial.fmt_size(limit or 0)} (max_payload_bytes); largest: {listing}. "
        "Pass a file path instead of the data, or raise the limit with "
        "`durable-nb serve --max-payload-mb N`.")


class Task:
    """A durable function. ``trigger`` starts a run in a worker and returns at once."""

    resources: dict[str, float] | None = None  # tasks pickled by earlier releases lack them
    executor: str | None = None

    def __init__(self, func: Callable, id: str, retry: Retry | None, queue: Queue | None,
                 max_duration: float | None, kill_after: float | None,
                 resources: dict[str, float] | None = None, executor: str | None = None):
        self.resources = check_resources(resources)
        self.executor = check_executor(executor)
        self.func = func
        self.id = id
        self.retry = retry
        self.queue = queue
        self.max_duration = max_duration
        self.kill_after = kill_after
        self.kind = "task"
        self.origin: dict | None = None  # the notebook cell a run comes from (cell runs)
        self._spec: dict | None = None
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<durable task {self.id!r}>"

    def __call__(self, *args, **kwargs):
        """Run the function in this process, without durability (for tests and debugging)."""
        return self.func(*args, **kwargs)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_spec": None}

    @property
    def __wrapped_task__(self) -> Callable:
        return self.func

    def spec(self) -> dict:
        """The task's code and options as the engine stores them (hash by content)."""
        if self._spec is None:
            try:
                code = _codepickle.dumps(self.func)  # with the source of notebook cells
            except Exception as exc:
                raise NotPicklable(
                    f"task '{self.id}' cannot be sent to a worker: {exc}. A task function must "
                    "not capture open files, sockets, locks or generators.") from None
            opts = {
                "retry": self.retry.to_dict() if self.retry else None,
                "queue": self.queue.to_dict() if self.queue else None,
                "max_duration": self.max_duration, "kill_after": self.kill_after,
                "kind": self.kind,
            }
            if self.resources:  # only when set: the hash of other tasks stays as it was
                opts["resources"] = self.resources
            if self.executor:
                opts["executor"] = self.executor
            self._spec = {
                "hash": _serial.task_hash(code, self.id, opts), "task_id": self.id,
                "code": code, "sys_path": [p for p in sys.path if p], "options": opts,
            }
        return self._spec

    def _register(self, client: Client) -> str:
        spec = self.spec()
        key = f"{client.url}|{spec['hash']}"
        if key not in client._registered:
            client.request("PUT", f"/tasks/{spec['hash']}", {
                "task_id": spec["task_id"], "code_b64": b64(spec["code"]),
                "sys_path": spec["sys_path"], "options": spec["options"]})
            client._registered.add(key)
        return spec["hash"]

    def _options(self, delay, tags, concurrency_key, ttl, priority=None) -> dict:
        opts = {"delay": parse_duration(delay), "tags": list(tags),
                "concurrency_key": concurrency_key, "ttl": parse_duration(ttl)}
        if priority is not None:  # only when given: engines of earlier releases refuse it
            opts["priority"] = priority
        return opts

    def trigger(self, *args, idempotency_key: str | None = None, delay: Any = None,
                tags: Iterable[str] = (), concurrency_key: str | None = None,
                ttl: Any = None, priority: int | None = None, **kwargs) -> RunHandle:
        """Start a run; returns its handle at once. The same ``idempotency_key`` returns
        the existing run. ``delay`` postpones the start; ``ttl`` expires a run not started
        in time. ``priority`` (-1000 to 1000, default 0; higher first) orders it among the
        queued runs of its queue; each level counts as a minute of waiting, so a run of
        lower priority that has waited long enough still goes first (no starvation)."""
        opts = self._options(delay, tags, concurrency_key, ttl, priority)
        ctx = _context.current()
        if ctx is not None:
            payload = _payload(self.func, self.id, args, kwargs, ctx.max_payload)
            return RunHandle(ctx.trigger(self.spec(), [payload], opts)[0])
        client = get_client()
        payload = _payload(self.func, self.id, args, kwargs, client.max_payload)
        body = {"payload_b64": b64(payload), "idempotency_key": idempotency_key, **opts}
        if self.origin:
            body["origin"] = self.origin
        for _ in range(2):
            body["task_hash"] = self._register(client)
            try:
                out = client.request("POST", "/runs", body)
                return RunHandle(out["id"], client)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                client._registered.clear()
        raise DurableError(f"the engine did not accept task '{self.id}'")

    def trigger_and_wait(self, *args, **kwargs) -> Any:
        """Trigger a child run and wait for its output (raises RunFailed if it fails).

        Inside a run the parent suspends and frees its worker while the child runs."""
        ctx = _context.current()
        if ctx is None:
            return self.trigger(*args, **kwargs).result()
        res = self._wait_children(ctx, [self.trigger(*args, **kwargs).id])[0]
        return res.unwrap()

    def _items(self, items: Iterable) -> list[tuple[tuple, dict]]:
        return [(tuple(it), {}) if isinstance(it, tuple) else ((it,), {}) for it in items]

    def batch_trigger(self, items: Iterable, *, delay: Any = None, tags: Iterable[str] = (),
                      concurrency_key: str | None = None, ttl: Any = None,
                      priority: int | None = None) -> list[RunHandle]:
        """One run per item (a tuple is the positional arguments, anything else the one
        argument)."""
        pairs = self._items(items)
        ctx = _context.current()
        if ctx is None:
            return [self.trigger(*a, delay=delay, tags=tags, concurrency_key=concurrency_key,
                                 ttl=ttl, priority=priority, **k) for a, k in pairs]
        payloads = [_payload(self.func, self.id, a, k, ctx.max_payload) for a, k in pairs]
        ids = ctx.trigger(self.spec(), payloads,
                          self._options(delay, tags, concurrency_key, ttl, priority))
        return [RunHandle(i) for i in ids]

    def batch_trigger_and_wait(self, items: Iterable, **options) -> list[RunResult]:
        """Trigger one child per item and wait for all; one RunResult each, in order."""
        handles = self.batch_trigger(items, **options)
        ctx = _context.current()
        if ctx is None:
            out = []
            for h in handles:
                try:
                    out.append(RunResult(h.id, RunStatus.COMPLETED.value, h.result()))
                except RunFailed as exc:
                    out.append(RunResult(h.id, exc.status, None, exc.error))
            return out
        return self._wait_children(ctx, [h.id for h in handles])

    def _wait_children(self, ctx: _context.RunContext, ids: list[str]) -> list[RunResult]:
        res = ctx.wait("child", self.id, target=ids)
        return [RunResult(cid, status, _serial.loads(output) if status == RunStatus.COMPLETED else None,
                          error) for cid, status, output, error in res["results"]]


def task(fn: Callable | None = None, *, id: str | None = None, retry: Retry | None = None,
         queue: Queue | None = None, max_duration: Any = None, kill_after: Any = None,
         resources: dict[str, float] | None = None, executor: str | None = None):
    """Declare a durable task (sync or async function).

    ``retry`` applies to whole attempts (default ``Retry()``: 3 attempts); ``queue``
    limits concurrency; ``max_duration`` warns when an attempt runs longer;
    ``kill_after`` stops it (TIMED_OUT). On an engine whose executor is Dask,
    ``resources`` (``{"GPU": 1}``) are the Dask worker resources each attempt needs, and
    ``executor="local"`` keeps the task on the engine's own worker processes.
    """
    def deco(f: Callable) -> Task:
        return Task(f, id or f.__name__, retry, queue, parse_duration(max_duration),
                    parse_duration(kill_after), resources, executor)

    return deco(fn) if fn is not None else deco


# ---------------------------------------------------------------------- waits

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


# ---------------------------------------------------------------------- queries

def runs(status: str | None = None, task: str | None = None, limit: int = 100,
         q: str | None = None, tags: Iterable[str] | None = None) -> list[RunHandle]:
    """Runs, newest first, optionally filtered by status (or "A,B"), task id, ``q`` (text
    in the run id, task or cell name, tags or notebook, any case) and ``tags`` (runs that
    have every one of them, as given to ``trigger(tags=...)``)."""
    wanted = list(tags or ())
    if any("," in t for t in wanted):
        raise ValueError("a tag to filter by cannot contain a comma")
    client = get_client()
    out = client.request("GET", "/runs", query={"status": status, "task": task, "limit": limit,
                                                "q": q, "tags": ",".join(wanted) or None})
    return [RunHandle(r["id"], client, r) for r in out["runs"]]


def get_run(run_id: str) -> RunHandle:
    """The run with this id; RunNotFound if there is none."""
    h = RunHandle(run_id, get_client())
    h._poll()
    return h


def sql(query: str, limit: int = 10_000) -> SqlResult:
    """A read-only SQL query over the store (tables runs, steps, spans, ...), or over
    DataFrames of cells' checkpoints: ``checkpoint_frame('<run>', '<name>')`` (see
    ``client.frames``)."""
    from . import frames

    if frames.uses_frames(query):
        return SqlResult(*frames.query_frames(query, limit, get_run))
    out = get_client().request("POST", "/sql", {"query": query, "limit": limit})
    return SqlResult(out["columns"], out["rows"])
