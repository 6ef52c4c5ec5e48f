"""The run context inside a worker: how steps, waits and child runs talk to the engine.

User code calls ``step``-decorated functions, ``approval``, ``wait_for_event``, ``sleep``
and ``Task.trigger*``; each looks up the current context. Outside a run there is none,
and steps are plain calls.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ..core import serial as _serial
from ..core.checkpoints import (
    EXTERNAL_BLOB_BYTES,
    CorruptCheckpoint,
    file_reader,
    load,
    manifest_blobs,
)
from ..core.errors import (
    AbortRun,
    DurableError,
    NotPicklable,
    PayloadTooLarge,
    ReplayDivergence,
)
from ..core.messages import (
    AttemptEnd,
    Checkpoint,
    CheckpointState,
    EngineMessage,
    ErrorInfo,
    Log,
    Progress,
    Recorded,
    Reply,
    Request,
    Resolution,
    RunAttempt,
    TaskSpec,
    TriggerOptions,
    WaitFor,
    WaitsIdle,
    WorkerMessage,
)
from ..core.protocol import SyncChannel
from ..core.retry import Retry
from ..core.serial import clean_text
from ..core.tracebacks import user_traceback
from . import piecefiles, snapshot
from . import previews as _previews
from .divergence import ReplayCheck
from .resources import Resources
from .run_info import RunReports

_current: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "durable_nb_run", default=None
)
_ABORT_TYPES = (AbortRun, NotPicklable, PayloadTooLarge, ReplayDivergence)
_Msg = TypeVar("_Msg", bound=WorkerMessage)
_MAX_EXC_BYTES = 64 * 1024  # a larger pickled exception is left out of a run's error
Call = tuple[bytes | None, str | None]  # a try's pickled call and the JSON of its preview


class Suspend(BaseException):
    """Unwinds user code when the engine suspends the run to free the worker."""


def current() -> RunContext | None:
    """The context of the run executing in this worker, or None outside a run."""
    return _current.get()


def _clean(msg: _Msg) -> _Msg:
    """A message with its text fields storable (payloads are bytes and stay as they are)."""
    out: dict[str, Any] = {}
    for k, v in msg.items():
        if isinstance(v, str):
            v = clean_text(v)
        elif isinstance(v, list) and v and isinstance(v[0], str):
            v = [clean_text(x) if isinstance(x, str) else x for x in v]
        elif isinstance(v, dict) and k == "error":
            v = {ek: clean_text(ev) if isinstance(ev, str) else ev for ek, ev in v.items()}
        out[k] = v
    return cast(_Msg, out)  # the same keys, with values of the same types


def error_info(exc: BaseException, with_exception: bool = False) -> ErrorInfo:
    """``exc`` as the engine stores it: "traceback" has the user's frames only (with their
    source lines, notebook cells named by their label), "traceback_full" every frame;
    ``with_exception`` adds the pickled exception ("exc_b64"), so that a client can raise
    one of its type again."""
    t = type(exc)
    name = _serial.type_name(exc)
    full = clean_text("".join(traceback.format_exception(t, exc, exc.__traceback__)))
    info: dict[str, Any] = {
        "type": clean_text(name),
        "message": clean_text(str(exc)),
        "traceback": user_traceback(full) or full,
        "traceback_full": full,
        "abort": isinstance(exc, _ABORT_TYPES),
    }
    data = pickled_exception(exc) if with_exception else None
    if data is not None and len(data) <= _MAX_EXC_BYTES:
        info["exc_b64"] = _serial.b64(data)
    return cast(ErrorInfo, info)  # ErrorInfo's keys, and the optional ones above


def pickled_exception(exc: BaseException) -> bytes | None:
    """The exception pickled (a traceback is never part of it), or None when it cannot be."""
    try:
        return _serial.dumps(exc, "exception")
    except Exception:
        return None


@dataclass
class StepFailed(DurableError):
    """A step's recorded failure, re-raised when its original exception cannot be restored."""

    step: str
    type: str
    message: str

    def __str__(self) -> str:
        return f"step {self.step} failed: {self.type}: {self.message}"


class RunContext:
    """State of one attempt: recorded steps and waits, occurrence counters, the channel."""

    def __init__(self, channel: SyncChannel, msg: RunAttempt):
        self.channel = channel
        self.run_id: str = msg["run_id"]
        self.attempt: int = msg["attempt"]
        self.max_payload: int = msg["max_payload"]
        self.steps: dict[str, Recorded] = msg["steps"]
        self.step_failures: dict[str, int] = msg["step_failures"]
        self.waits: dict[str, Resolution] = msg["waits"]
        self._counts: dict[str, int] = {}
        self._lock = threading.RLock()
        self.step_key: str | None = None
        self.max_checkpoint: int = msg.get("max_checkpoint", self.max_payload)
        self.blob_dir: str = msg.get("blob_dir", "")
        self._checkpoint: CheckpointState | None = msg.get("checkpoint")
        self._sent_blobs: set[str] = set()
        # every message names its attempt, and every reply its request: a message meant for
        # an earlier attempt, or a late reply, is dropped instead of being taken for ours
        self.aid: str = msg.get("aid") or f"{self.run_id}/{self.attempt}"
        self.generation: int = msg.get("generation", 0)  # task-level retries so far
        self._req = 0
        self.reports = RunReports(self)  # dn.metadata and dn.progress (``run_info``)
        self.replay = ReplayCheck(msg)  # step calls checked against the record
        self.resources = Resources()  # dn.resource: made once per attempt
        # messages of this attempt no request waits for: async waits' resolutions and a
        # ``suspend`` (set by ``async_waits`` while the attempt has awaitable waits)
        self.on_message: Callable[[EngineMessage], None] | None = None

    def next_key(self, name: str) -> str:
        name = clean_text(name)  # keys are stored: the same text in memory and on disk
        with self._lock:
            n = self._counts.get(name, 0) + 1
            self._counts[name] = n
            return f"{name}#{n}"

    def reached(self, key: str) -> bool:
        """Whether this attempt has made the call that gets ``key`` ("<name>#<n>")."""
        name, _, n = key.rpartition("#")
        return n.isdigit() and self._counts.get(name, 0) >= int(n)

    def request(self, msg: Request) -> Reply:
        """Send ``msg`` and return the engine's reply to it."""
        with self._lock:
            self.reports.flush()  # a progress value held back goes first
            self._req += 1
            n = self._req
            out = _clean(msg)
            out["aid"], out["req"] = self.aid, n
            self.channel.send(out)
            while True:  # the reply names this attempt and this request
                got = self.channel.recv()
                if got.get("aid") == self.aid and "re" in got and got["re"] == n:
                    return got
                self._other(got)

    def _recv(self, wanted: Callable[[EngineMessage], bool]) -> EngineMessage:
        """The next message of this attempt that ``wanted`` accepts (caller holds the lock)."""
        while True:
            msg = self.channel.recv()
            if msg.get("aid") == self.aid and wanted(msg):
                return msg
            self._other(msg)

    def _other(self, msg: EngineMessage) -> None:
        """A message of this attempt that the current read did not ask for."""
        if msg.get("aid") == self.aid and self.on_message is not None:
            self.on_message(msg)

    def poll(self) -> None:
        """Hand the messages readable now to ``on_message``; never waits for one. A thread
        inside a request reads the channel itself (and hands them over): then nothing."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            while self.channel.ready():
                self._other(self.channel.recv())
        finally:
            self._lock.release()

    def send(self, msg: Log | Progress | AttemptEnd | WaitFor | WaitsIdle) -> None:
        """Send ``msg`` (a message that takes no reply) for this attempt."""
        with self._lock:
            out = _clean(msg)
            out["aid"] = self.aid
            self.channel.send(out)

    # -- steps ----------------------------------------------------------------------

    def step_begin(self, name: str) -> tuple[str, int, Recorded | None]:
        """(key, attempt number, recorded outcome or None) for the next call of step ``name``."""
        key = self.next_key(name)
        return key, self.step_failures.get(key, 0) + 1, self.steps.get(key)

    def step_replay(self, key: str, recorded: Recorded) -> Any:
        kind, data = recorded
        if kind == "ok":
            return _serial.loads(data)
        raise self._restore_error(key, data)

    def step_ok(self, key: str, name: str, attempt: int, start: float, result: Any,
                call: Call = (None, None)) -> None:
        """Record a completed try with its call (``previews.record_call``) and output."""
        data = _serial.dumps(result, f"output of step '{key}'", self.max_payload)
        end = time.time()
        self.request({"op": "step", "key": key, "name": name, "attempt": attempt,
                      "start": start, "end": end, "output": data, "args": call[0],
                      "args_preview": call[1], "output_preview": _previews.output_preview(result),
                      "args_hash": self.replay.hashes.get(key)})
        self.steps[key] = ("ok", data)

    def step_failed(self, key: str, name: str, attempt: int, start: float,
                    exc: BaseException, retry: Retry | None,
                    call: Call = (None, None)) -> float | None:
        """Record a failed try (with its call); returns the delay before the next try, or
        None if final."""
        info = error_info(exc)
        delay = None if info["abort"] or retry is None else retry.delay(attempt)
        final = delay is None
        self.request({
            "op": "step_failed", "key": key, "name": name, "attempt": attempt,
            "start": start, "end": time.time(), "error": info, "final": final,
            "exc": pickled_exception(exc) if final else None, "delay": delay,
            "args": call[0], "args_preview": call[1], "args_hash": self.replay.hashes.get(key),
        })
        if final:
            self.steps[key] = ("err", None)
        return delay

    def _retry_wait(self, key: str, attempt: int, delay: float | None) -> None:
        """Sit out the delay after failed try ``attempt`` of step ``key`` (a durable wait:
        one per try and task retry, met again if the attempt is resumed)."""
        gen = f" g{self.generation}" if self.generation else ""
        self.wait("retry", f"{key} retry {attempt}{gen}", timeout=delay)

    def _resume_retry(self, key: str, attempt: int, retry: Retry | None) -> None:
        """A step resumed after a failed try: its retry delay (recorded as a wait, maybe
        already elapsed) still comes before the next try."""
        if attempt > 1 and retry is not None:
            self._retry_wait(key, attempt - 1, retry.delay(attempt - 1) or 0.0)

    def call_step(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict,
                  retry: Retry | None) -> Any:
        key, attempt, recorded = self.step_begin(name)
        self.replay.call(key, name, args, kwargs, recorded is not None, self.step_key is not None)
        if recorded is not None:
            return self.step_replay(key, recorded)
        self._resume_retry(key, attempt, retry)
        call = _previews.record_call(args, kwargs, min(_previews.MAX_ARGS, self.max_payload))
        while True:
            self.channel.check()  # no step starts once the engine is gone
            start = time.time()
            outer, self.step_key = self.step_key, key
            try:
                result = fn(*args, **kwargs)
                self.step_ok(key, name, attempt, start, result, call)
                return result
            except Exception as exc:
                delay = self.step_failed(key, name, attempt, start, exc, retry, call)
                if delay is None:
                    raise
            finally:
                self.step_key = outer
            self._retry_wait(key, attempt, delay)
            attempt += 1

    async def call_step_async(self, name: str, fn: Callable[..., Any], args: tuple,
                              kwargs: dict, retry: Retry | None) -> Any:
        key, attempt, recorded = self.step_begin(name)
        self.replay.call(key, name, args, kwargs, recorded is not None, self.step_key is not None)
        if recorded is not None:
            return self.step_replay(key, recorded)
        self._resume_retry(key, attempt, retry)
        call = _previews.record_call(args, kwargs, min(_previews.MAX_ARGS, self.max_payload))
        while True:
            self.channel.check()  # no step starts once the engine is gone
            start = time.time()
            outer, self.step_key = self.step_key, key
            try:
                result = await fn(*args, **kwargs)
                self.step_ok(key, name, attempt, start, result, call)
                return result
            except Exception as exc:
                delay = self.step_failed(key, name, attempt, start, exc, retry, call)
                if delay is None:
                    raise
            finally:
                self.step_key = outer
            self._retry_wait(key, attempt, delay)
            attempt += 1

    def _restore_error(self, key: str, data: bytes | None) -> BaseException:
        if data is not None:
            try:
                exc = _serial.loads(data)
                if isinstance(exc, BaseException):
                    return exc
            except Exception:
                pass
        return StepFailed(key, "Exception", "recorded failure (see the run's steps)")

    # -- checkpoints (cells) ------------------------------------------------------------

    def restore_checkpoint(self) -> tuple[int, dict] | None:
        """(statements done, variables) of the last checkpoint, with step counters restored.
        Each buffer is read from its files straight into the memory the value will use."""
        cp = self._checkpoint
        if not cp:
            return None
        read = file_reader(self.blob_dir, cp["blobs"])
        sizes = cp.get("sizes") or {h: len(d) for h, d in cp["blobs"].items()}
        placed: list[tuple[bytearray, int]] = []
        try:
            values = {name: load(name, entry, read, sizes, placed)
                      for name, entry in cp["manifest"].items()}
        except CorruptCheckpoint as exc:
            raise DurableError(
                f"the checkpoint after statement {cp['statement']} cannot be restored: {exc}. "
                "Start the cell again as a new run (its earlier statements run again).") from None
        snapshot.remember(placed)
        self._counts = dict(cp["counts"])
        self._sent_blobs = manifest_blobs(cp["manifest"])
        return cp["statement"], values

    def checkpoint(self, statement: int, variables: dict, total: int) -> None:
        """Make the namespace after ``statement`` durable; pieces already stored are not
        written again (``snapshot``), so an unchanged value costs only its hashing. New
        large pieces are written while the rest is hashed when the whole namespace fits
        on the disk; otherwise only once the new bytes are known to fit."""
        started = time.perf_counter()
        values = snapshot.pickled(variables, statement)
        snapshot.check_size(values.sizes, statement, self.max_checkpoint)
        fits = values.size >= EXTERNAL_BLOB_BYTES and not snapshot.room_problem_for(
            values.size, statement, self.blob_dir, self.max_checkpoint)
        writer = piecefiles.Writer(self.blob_dir) if fits else None
        try:
            snap = snapshot.take(values, self._sent_blobs, statement,
                                 writer.add if writer else None)
        finally:
            if writer is not None:
                writer.finish()
        if writer is None:
            snapshot.check_room(snap, statement, self.blob_dir, self.max_checkpoint)
            piecefiles.write_files(snap, self.blob_dir)
        files = piecefiles.large(snap)
        small = {h: bytes(v) for h, v in snap.new.items() if h not in files}
        msg: Checkpoint = {"op": "checkpoint", "statement": statement, "total": total,
                           "manifest": snap.entries, "counts": dict(self._counts),
                           "blobs": small, "files": files, "size": snap.size,
                           "took": time.perf_counter() - started}
        reply = self.request(msg)
        if "missing" in reply:
            # a file found already written was removed meanwhile (a prune of the run that
            # wrote it): write those pieces again, once
            piecefiles.write_files(snap, self.blob_dir, again=reply["missing"])
            reply = self.request(msg)
            if "missing" in reply:
                raise DurableError(
                    f"the checkpoint after statement {statement} could not be stored: its "
                    f"files {', '.join(reply['missing'][:3])} vanish from {self.blob_dir} "
                    "as they are written; is something deleting files there?")
        if "error" in reply:
            raise DurableError(reply["error"])
        self._sent_blobs.update(small)
        self._sent_blobs.update(files)

    # -- waits ----------------------------------------------------------------------

    def wait(self, kind: str, name: str, data: Any = None, timeout: float | None = None,
             target: list[str] | None = None, preview: Any = None,
             form: dict | None = None) -> Resolution:
        """Suspend on a wait until the engine resolves it; returns the resolution.
        ``form``: an approval's typed form, as its JSON schema (``core.forms``)."""
        key = self.next_key(f"{kind}:{name}")
        done = self.waits.get(key)
        if done is not None:
            return done
        blob = None if data is None else _serial.dumps(data, f"data of {kind} '{name}'", self.max_payload)
        with self._lock:
            self.reports.flush()
            self._req += 1
            n = self._req
            request: WaitFor = {
                "op": "wait", "key": key, "kind": kind, "name": clean_text(name), "data": blob,
                "preview": preview, "timeout": timeout, "target": target,
                "aid": self.aid, "req": n,
            }
            if form is not None:
                request["form"] = form
            self.channel.send(request)
            # a suspend, whatever wait it names, ends the attempt (the engine sends one)
            msg = self._recv(lambda m: m.get("re") == n or m.get("op") == "suspend" or (
                m.get("op") == "resolved" and m.get("key") == key))
        if "error" in msg:
            raise DurableError(msg["error"])
        if msg.get("op") == "suspend":
            raise Suspend()
        if "resolution" not in msg:
            raise DurableError(f"the engine answered wait '{key}' with {msg!r:.200}")
        self.waits[key] = msg["resolution"]
        return msg["resolution"]

    def wait_async(self, kind: str, name: str, convert: Callable[[Resolution], Any],
                   data: Any = None, timeout: float | None = None, preview: Any = None,
                   form: dict | None = None) -> asyncio.Future:
        """An awaitable wait (``async_waits``): registered now; its future gets
        ``convert(resolution)`` once resolved. Called from code on a running loop."""
        from . import async_waits

        return async_waits.wait(self, kind, name, convert, data, timeout, preview, form)

    # -- child runs -----------------------------------------------------------------

    def trigger(self, spec: Mapping[str, Any], payloads: list[bytes],
                options: Mapping[str, Any]) -> list[str]:
        """Trigger child runs once per occurrence; re-execution returns the same run ids."""
        key = self.next_key(f"trigger:{spec['task_id']}")
        recorded = self.steps.get(key)
        if recorded is not None:
            return _serial.loads(recorded[1])
        reply = self.request({
            "op": "trigger", "key": key, "task": cast(TaskSpec, spec), "payloads": payloads,
            "options": cast(TriggerOptions, options),
        })
        if "error" in reply:
            raise DurableError(reply["error"])
        if "run_ids" not in reply:
            raise DurableError(f"the engine answered trigger '{key}' with {reply!r:.200}")
        ids = reply["run_ids"]
        self.steps[key] = ("ok", _serial.dumps(ids, "run ids"))
        return ids

    def send_event(self, key: str, data: bytes) -> int:
        reply = self.request({"op": "send_event", "key": key, "data": data})
        if "error" in reply:
            from ..core.errors import WaitConflict

            raise WaitConflict(reply["error"])
        if "resumed" not in reply:
            raise DurableError(f"the engine answered send_event '{key}' with {reply!r:.200}")
        return reply["resumed"]

