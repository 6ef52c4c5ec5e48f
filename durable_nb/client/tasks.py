"""The Python API: tasks, steps, run handles and the waits a run can suspend on."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ..core import codepickle as _codepickle
from ..core import serial as _serial
from ..core.durations import parse_duration
from ..core.errors import (
    ApiError,
    DurableError,
    NotPicklable,
    PayloadTooLarge,
    RunFailed,
)
from ..core.hooks import hook_task_id
from ..core.placement import check_executor, check_resources
from ..core.retry import Retry
from ..core.serial import b64
from ..core.status import RunStatus
from ..core.versions import source_digest
from ..worker import context as _context
from .client import Client, get_client
from .debounce import IN_A_RUN, Debounce, debounce_fields
from .handles import TERMINAL as TERMINAL  # re-exported: the views import it here
from .handles import Decision as Decision  # the names below stay here for stored code
from .handles import RunHandle as RunHandle
from .handles import RunResult as RunResult
from .handles import SqlResult as SqlResult
from .handles import get_run as get_run
from .handles import runs as runs
from .handles import sql as sql
from .hooks import HookCall, checked_hooks
from .queues import Queue as Queue  # re-exported: stored tasks name it here
from .queues import Rate as Rate
from .tracing import trigger_traceparent
from .versions import function_source, notice_redefined
from .waits import approval as approval
from .waits import send_event as send_event
from .waits import sleep as sleep
from .waits import wait_for_event as wait_for_event

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
    hooks: dict[str, Task] | None = None  # lifecycle hooks: kind -> the hook's own task
    on_divergence: str = "raise"  # a replay divergence raises, or only warns (worker.divergence)
    cell_source: str | None = None  # a %%durable cell's text: its version (client.cells)
    lineage: str | None = None  # an unnamed cell's versions: <notebook>#<cell id>

    def __init__(self, func: Callable, id: str, retry: Retry | None, queue: Queue | None,
                 max_duration: float | None, kill_after: float | None,
                 resources: dict[str, float] | None = None, executor: str | None = None,
                 hooks: dict[str, Callable] | None = None):
        self.resources = check_resources(resources)
        self.executor = check_executor(executor)
        self.hooks = {kind: Task(HookCall(fn, kind), hook_task_id(id, kind), None, None,
                                 None, None, executor=self.executor)
                      for kind, fn in (hooks or {}).items()} or None
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
            if self.on_divergence != "raise":  # only when set, as above
                opts["on_divergence"] = self.on_divergence
            hook_specs = [t.spec() for t in (self.hooks or {}).values()]
            if self.hooks:  # only when set, as above
                opts["hooks"] = {k: t.spec()["hash"] for k, t in self.hooks.items()}
            if self.cell_source is not None:  # a cell's code is the same for every text
                opts["source_hash"] = source_digest(self.cell_source)
            if self.lineage:
                opts["lineage"] = self.lineage
            self._spec = {
                "hash": _serial.task_hash(code, self.id, opts), "task_id": self.id,
                "code": code, "sys_path": [p for p in sys.path if p], "options": opts,
            }
            if hook_specs:  # registered with it when a run triggers it (engine.scheduler)
                self._spec["hook_specs"] = hook_specs
            source = self.cell_source if self.cell_source is not None else \
                function_source(self.func)
            if source is not None:  # kept for diffs between versions, not hashed
                self._spec["source"] = source
        return self._spec

    def _register(self, client: Client) -> str:
        for hook in (self.hooks or {}).values():  # the engine checks they are known
            hook._register(client)
        spec = self.spec()
        key = f"{client.url}|{spec['hash']}"
        if key not in client._registered:
            client.request("PUT", f"/tasks/{spec['hash']}", {
                "task_id": spec["task_id"], "code_b64": b64(spec["code"]),
                "sys_path": spec["sys_path"], "options": spec["options"],
                **({"source": spec["source"]} if "source" in spec else {})})
            client._registered.add(key)
        return spec["hash"]

    def versions(self) -> list:
        """This task's versions, oldest first (``dn.versions``): each registered code hash
        of its id, numbered, with the runs still unfinished on it."""
        from .versions import versions

        return versions(self)

    def _options(self, delay, tags, concurrency_key, ttl, priority=None) -> dict:
        opts = {"delay": parse_duration(delay), "tags": list(tags),
                "concurrency_key": concurrency_key, "ttl": parse_duration(ttl)}
        if priority is not None:  # only when given: engines of earlier releases refuse it
            opts["priority"] = priority
        return opts

    def trigger(self, *args, idempotency_key: str | None = None, delay: Any = None,
                tags: Iterable[str] = (), concurrency_key: str | None = None,
                ttl: Any = None, priority: int | None = None, debounce: Debounce | None = None,
                traceparent: str | None = None, **kwargs) -> RunHandle:
        """Start a run; returns its handle at once. The same ``idempotency_key`` returns
        the existing run. ``delay`` postpones the start; ``ttl`` expires a run not started
        in time. ``priority`` (-1000 to 1000, default 0; higher first) orders it among the
        queued runs of its queue; each level counts as a minute of waiting, so a run of
        lower priority that has waited long enough still goes first (no starvation).
        ``debounce=dn.Debounce(key, delay)`` collapses triggers with the same key into one
        run; ``traceparent`` (default: the caller's current OpenTelemetry span) is the
        trace the run's exported spans continue."""
        opts = self._options(delay, tags, concurrency_key, ttl, priority)
        ctx = _context.current()
        if ctx is not None:
            if debounce is not None or traceparent is not None:
                raise DurableError(IN_A_RUN)
            payload = _payload(self.func, self.id, args, kwargs, ctx.max_payload)
            return RunHandle(ctx.trigger(self.spec(), [payload], opts)[0])
        client = get_client()
        payload = _payload(self.func, self.id, args, kwargs, client.max_payload)
        body = {"payload_b64": b64(payload), "idempotency_key": idempotency_key, **opts,
                **debounce_fields(debounce, idempotency_key, delay)}
        if (trace := trigger_traceparent(traceparent)) is not None:
            body["traceparent"] = trace
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


_DEFINED: dict[str, Task] = {}  # one per task id: the latest (a redefinition replaces it)


def defined_task(task_id: str) -> Task | None:
    """The task of this id that ``@dn.task`` made last in this process: the current
    version a fork runs (``client.forks``), registered or not yet."""
    return _DEFINED.get(task_id)


def task(fn: Callable | None = None, *, id: str | None = None, retry: Retry | None = None,
         queue: Queue | None = None, max_duration: Any = None, kill_after: Any = None,
         resources: dict[str, float] | None = None, executor: str | None = None,
         on_success: Callable[[RunHandle], Any] | None = None,
         on_failure: Callable[[RunHandle], Any] | None = None,
         on_cancel: Callable[[RunHandle], Any] | None = None, schedule: Any = None,
         on_divergence: str = "raise"):
    """Declare a durable task (sync or async function).

    ``retry`` applies to whole attempts (default ``Retry()``: 3 attempts); ``queue``
    limits concurrency; ``max_duration`` warns when an attempt runs longer;
    ``kill_after`` stops it (TIMED_OUT). On an engine whose executor is Dask,
    ``resources`` (``{"GPU": 1}``) are the Dask worker resources each attempt needs, and
    ``executor="local"`` keeps the task on the engine's own worker processes.

    Lifecycle hooks, ``f(run)`` with the ended run's ``RunHandle``: ``on_success`` when a
    run completes, ``on_failure`` when it fails, crashes, times out or expires,
    ``on_cancel`` when it is canceled. The engine runs each as a durable run of its own
    (task ``<id>.on_failure``, retried by ``Retry()``, listed in ``RunHandle.hooks``),
    whichever way the run ended: no client needs to be there. ``f``'s return value is the
    hook run's output.

    ``schedule`` (a cron expression such as ``"0 9 * * 1-5"``, a duration such as
    ``"15m"``, or a dict of ``dn.schedule``'s options) runs the task on that schedule, with
    the task's id as the schedule's id; it is defined when the decorator runs, never in a
    worker (``client.schedules.declared``).

    ``on_divergence``: code that runs again (a resume, a retry) and calls a recorded step
    with other arguments, or another step where a recorded one stood, fails the run with
    ``dn.ReplayDivergence`` (``"raise"``, the default) or only warns (``"warn"``: a line in
    the run's stderr and a ``dn.ReplayDivergenceWarning``; recorded steps return their
    recorded outputs).
    """
    hooks = checked_hooks(on_success=on_success, on_failure=on_failure, on_cancel=on_cancel)
    if on_divergence not in ("raise", "warn"):
        raise ValueError(f"on_divergence must be 'raise' (fail the run at a replay "
                         f"divergence) or 'warn' (only warn), got {on_divergence!r}")

    def deco(f: Callable) -> Task:
        t = Task(f, id or f.__name__, retry, queue, parse_duration(max_duration),
                 parse_duration(kill_after), resources, executor, hooks)
        t.on_divergence = on_divergence  # before anything computes its spec
        notice_redefined(t)  # in a kernel: runs still on an earlier version, if any
        _DEFINED[t.id] = t  # this process's current version of the id (RunHandle.fork)
        if schedule is not None:
            from .schedules import declared

            declared(t, schedule)
        return t

    return deco(fn) if fn is not None else deco



