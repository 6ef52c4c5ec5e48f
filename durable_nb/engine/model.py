"""What the engine keeps in memory: the tasks it knows, and each unfinished run with its
steps, waits, timers and current attempt. Finished runs live only in the store."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..core.retry import Retry
from .clock import Timer

DEFAULT_RETRY = Retry()
MAX_INT32 = 2**31 - 1  # INTEGER columns (queue limits, attempt numbers)


@dataclass
class TaskInfo:
    """A task's stored code and options, by content hash."""

    hash: str
    task_id: str
    code: bytes
    sys_path: list[str]
    options: dict

    @property
    def retry(self) -> Retry:
        return Retry.from_dict(self.options.get("retry")) or DEFAULT_RETRY


@dataclass
class Wait:
    """A durable wait of a run (sleep, approval, event, child runs, a step's retry delay).
    Its key has one row and one resolution for ever."""

    key: str
    kind: str
    name: str
    created_at: float
    deadline: float | None = None
    target: list | None = None
    resolution: dict | None = None
    timer: Timer | None = None
    form: dict | None = None  # an approval's typed form (JSON schema): decisions are checked


@dataclass
class Run:
    """An unfinished run as the scheduler sees it."""

    id: str
    task: TaskInfo
    status: str
    queue: str
    ckey: str | None
    payload: bytes
    created_at: float
    seq: int
    parent_run_id: str | None = None
    attempts: int = 0
    failures: int = 0  # attempts that raised (the retry policy counts them)
    crashes: int = 0  # attempts in a row whose worker died with nothing recorded between
    progress: int = 0  # steps, checkpoints and waits recorded (a crash after one resets)
    attempt_progress: int = 0  # ``progress`` when the current attempt started
    generation: int = 0
    started_at: float | None = None
    delay_until: float | None = None
    steps: dict = field(default_factory=dict)
    step_failures: dict = field(default_factory=dict)
    # step key -> [start, end, args hash, args preview, final] (``step_calls``): what a
    # worker checks a re-executed call against; kept across generations
    step_calls: dict = field(default_factory=dict)
    waits: dict[str, Wait] = field(default_factory=dict)
    worker: Any = None  # the pool's worker executing the current attempt
    attempt_started: float = 0.0
    current_wait: str | None = None
    # awaitable waits (``async_waits``): the keys the current attempt registered without
    # blocking (their resolutions go to it as they happen), and the keys its loop idles
    # on (``waits_idle``; once suspended, any of them resolving queues the run again)
    async_waits: set[str] = field(default_factory=set)
    idle_waits: set[str] = field(default_factory=set)
    idle_epoch: int = 0  # each idle report's number: a stale grace timer does nothing
    suspending: bool = False
    stopping: str | None = None  # CANCELED / TIMED_OUT when the engine kills the worker
    timers: list[Timer] = field(default_factory=list)  # delay, ttl and wait deadlines
    attempt_timers: list[Timer] = field(default_factory=list)  # grace, max_duration, kill
    duration_warning: bool = False
    checkpoint: dict | None = None  # cells: statement, manifest, counts of the latest
    tags: list = field(default_factory=list)
    idempotency_key: str | None = None
    replay_of: str | None = None
    ttl: float | None = None
    error: str | None = None
    finished_at: float | None = None
    output: bytes | None = None
    children: list[str] = field(default_factory=list)  # child runs triggered by this one
    origin: str | None = None  # JSON {notebook, cell_id, execution_count} of a cell run
    priority: int = 0  # higher starts first within its queue (``queue_key``)
    metadata: dict = field(default_factory=dict)  # dn.metadata (JSON, runs.metadata)
    progress_report: dict | None = None  # {done, total, text, at}: dn.progress or tqdm
    # dn.metadata calls applied, per scope: the highest <n> of "<scope>#<n>" (a call that
    # re-executed code makes again is not applied twice; kept in memory only)
    metadata_calls: dict[str, int] = field(default_factory=dict)
    schedule_id: str | None = None  # the schedule whose tick fired it
    schedule_tick: float | None = None
    hook_of: str | None = None  # a lifecycle hook run: the run it is for
    hook_kind: str | None = None  # on_success, on_failure or on_cancel
    debounce_key: str | None = None  # triggers with this key collapse into this run
    debounce_until: float | None = None
    traceparent: str | None = None  # the W3C trace context the run's spans continue
    fork_of: str | None = None  # the run this one was forked from
    fork_step: str | None = None  # the step key it runs anew from (a cell: N, restored)

    @property
    def group(self) -> tuple[str, str | None]:
        """The scheduling group: its queue and concurrency key."""
        return (self.queue, self.ckey)

    def row(self) -> dict:
        """The run as its row in the runs table would read (without the payload)."""
        return {
            "id": self.id, "kind": self.task.options.get("kind", "task"),
            "task_id": self.task.task_id, "task_hash": self.task.hash, "status": self.status,
            "queue": self.queue, "concurrency_key": self.ckey,
            "idempotency_key": self.idempotency_key, "tags": self.tags,
            "parent_run_id": self.parent_run_id, "replay_of": self.replay_of,
            "created_at": self.created_at, "started_at": self.started_at,
            "finished_at": self.finished_at, "delay_until": self.delay_until, "ttl": self.ttl,
            "attempts": self.attempts, "output": self.output, "error": self.error,
            "duration_warning": self.duration_warning, "generation": self.generation,
            "origin": self.origin, "priority": self.priority,
            "metadata": json.dumps(self.metadata) if self.metadata else None,
            "progress": json.dumps(self.progress_report) if self.progress_report else None,
            "schedule_id": self.schedule_id, "schedule_tick": self.schedule_tick,
            "hook_of": self.hook_of, "hook_kind": self.hook_kind,
            "debounce_key": self.debounce_key, "debounce_until": self.debounce_until,
            "traceparent": self.traceparent, "fork_of": self.fork_of,
            "fork_step": self.fork_step,
        }


PRIORITY_AGING = 60.0  # seconds by which each level of priority moves a run up its queue
MAX_PRIORITY = 1000


def queue_key(run: Run, now: float) -> float:
    """A queued run's place in its queue: when it was queued, moved earlier by
    ``PRIORITY_AGING`` seconds per level of priority. A higher priority goes first, yet a
    run that has waited longer than the difference in priority times ``PRIORITY_AGING``
    goes before it (aging): no priority starves. Equal places keep creation order."""
    return now - run.priority * PRIORITY_AGING


def aid(run: Run) -> str:
    """The id of the run's current attempt; every engine <-> worker message carries it."""
    return f"{run.id}/{run.attempts}"


def reply(worker: Any, msg: dict, body: dict) -> None:
    """Answer the worker's request ``msg``; the reply names its attempt and request."""
    worker.send({**body, "aid": msg.get("aid"), "re": msg.get("req")})


def error_json(error: dict | None) -> str | None:
    """An error dict as stored in runs.error."""
    if not error:
        return None
    out = {k: error.get(k) for k in ("type", "message", "traceback")}
    # the whole worker traceback and the pickled exception (to rebuild its type), if sent
    out.update({k: error[k] for k in ("traceback_full", "exc_b64") if error.get(k)})
    return json.dumps(out)


def summarize(row: dict) -> dict:
    """The JSON view of a run row (no payload or output bytes)."""
    out = {k: v for k, v in row.items() if k not in ("payload", "output")}
    out["error"] = json.loads(row["error"]) if row.get("error") else None
    out["tags"] = list(row.get("tags") or [])
    out["origin"] = parse_origin(row.get("origin"))
    out["metadata"] = json_or(row.get("metadata"), {})
    out["progress"] = json_or(row.get("progress"), None)
    if "has_output" not in out:
        out["has_output"] = row.get("output") is not None
    created, finished = row.get("created_at"), row.get("finished_at")
    started = row.get("started_at")
    out["duration"] = (finished - started) if finished and started else None
    out["queued_for"] = (started - created) if started and created else None
    return out


def json_or(text: str | None, default: Any) -> Any:
    """A stored JSON column's value (``default`` when empty or unreadable)."""
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


# a run's origin: the notebook cell that started it (stored as JSON in runs.origin)
ORIGIN_FIELDS = {"notebook": str, "cell_id": str, "execution_count": int}


def parse_origin(text: str | None) -> dict | None:
    """A stored origin as {notebook, cell_id, execution_count} (None for runs without one)."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {k: value.get(k) for k in ORIGIN_FIELDS}
