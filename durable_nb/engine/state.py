"""The state the engine's parts share: the runs not yet finished, the tasks, queues,
events and child results they refer to, and the few operations every part uses (journal a
change, tell subscribers, change a run's status, arm a timer).

One asyncio loop owns it: every method here runs on that loop, never in a thread.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from typing import Any

from ..core.config import EngineConfig
from ..store.records import Insert, Record, Update
from ..store.store import Store
from .clock import Clock, Timer
from .model import Run, TaskInfo, queue_key
from .pool import WorkerPool
from .writer import JournalWriter

RECENT_RUNS = 5000  # final rows kept in memory so result() needs no database read
RECENT_BYTES = 64 * 1024 * 1024


class EngineState:
    """Shared by the scheduler, the waits, the attempts, recovery and the queries."""

    def __init__(self, config: EngineConfig, store: Store, clock: Clock,
                 writer: JournalWriter):
        self.config = config
        self.store = store
        self.clock = clock
        self.writer = writer
        self.pool: WorkerPool | None = None
        self.stopped = False
        self.tasks: dict[str, TaskInfo] = {}
        self.runs: dict[str, Run] = {}  # unfinished runs
        self.rates: dict[str, tuple[int, float]] = {}  # queue -> (starts, per seconds)
        self.starts: dict[tuple, deque[float]] = defaultdict(deque)  # recent, per group
        self.rate_timers: dict[tuple, Timer] = {}  # when a full window frees a start
        # queued runs per group: heaps of (queue_key, seq, run)
        self.groups: dict[tuple, list[tuple[float, int, Run]]] = defaultdict(list)
        self.executing: dict[tuple, int] = defaultdict(int)  # attempts, per group
        self.queues: dict[str, int | None] = {}  # concurrency limits
        self.idem: dict[tuple[str, str], str] = {}  # (task id, idempotency key) -> run
        self.events: dict[str, bytes | None] = {}  # sent events, by key
        self.child_results: dict[str, tuple] = {}  # finished child -> (status, out, err)
        self.children_of: dict[str, list[str]] = defaultdict(list)
        self.finished: OrderedDict[str, dict] = OrderedDict()  # recent final rows
        # blobs a prune is deleting, and checkpoints held until it is done (they refer to
        # one of them: recorded now, they could lose the piece to the delete)
        self.blobs_in_deletion: set[str] = set()
        self.held_checkpoints: list[Callable[[], None]] = []
        self._finished_bytes = 0
        self.seq = itertools.count()  # the order runs were queued in
        self.log_seq = itertools.count()
        self._subscribers: list[Callable[[dict], None]] = []
        self.result_waiters: dict[str, list[asyncio.Future]] = defaultdict(list)
        writer.concurrent = self.concurrent

    def concurrent(self) -> bool:
        """Whether more than one attempt executes: others may send records while one
        batch syncs, so the writer pipelines its syncs (``writer``)."""
        n = 0
        for count in self.executing.values():
            n += count
            if n > 1:
                return True
        return False

    def now(self) -> float:
        return self.clock.now()

    def write(self, records: list[Record], then: Callable[[], None] | None = None) -> None:
        """Journal ``records``; ``then`` runs once they are durable."""
        self.writer.write(records, then)

    def subscribe(self, fn: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``fn(event)`` for every run event; returns the unsubscribe function."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def emit(self, event: dict) -> None:
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:
                pass

    def set_status(self, run: Run, status: str, reason: str = "",
                   **changes: Any) -> list[Record]:
        """Move ``run`` to ``status``: journal the row's change and the transition."""
        now = self.now()
        old, run.status = run.status, status
        changes.update(status=status, updated_at=now)
        records: list[Record] = [
            Update("runs", {"id": run.id}, changes),
            Insert("transitions", {"run_id": run.id, "created_at": now, "from_status": old,
                                    "to_status": status, "reason": reason}),
        ]
        self.write(records)
        self.emit({"type": "run", "run_id": run.id, "task_id": run.task.task_id,
                   "status": status, "from": old, "reason": reason, "at": now})
        return records

    def arm(self, run: Run, at: float, fn: Callable[[], None],
            attempt: bool = False) -> Timer:
        """Call ``fn`` at ``at``; attempt timers end with the attempt, others with the run."""
        h = self.clock.call_at(at, fn)
        (run.attempt_timers if attempt else run.timers).append(h)
        return h

    def enqueue(self, run: Run, since: float | None = None) -> None:
        """Queue ``run`` in its group, ordered by ``queue_key`` (priority with aging) from
        ``since``, when it began waiting (default: now)."""
        at = self.now() if since is None else since
        heapq.heappush(self.groups[run.group], (queue_key(run, at), run.seq, run))

    def notify_done(self, run_id: str) -> None:
        """Wake the callers waiting for the run's result."""
        for fut in self.result_waiters.pop(run_id, []):
            if not fut.done():
                fut.set_result(None)

    def remember(self, row: dict) -> None:
        """Keep recent final rows in memory so result() needs no database read."""
        self.finished[row["id"]] = row
        self._finished_bytes += len(row["output"] or b"")
        while len(self.finished) > RECENT_RUNS or self._finished_bytes > RECENT_BYTES:
            _, old = self.finished.popitem(last=False)
            self._finished_bytes -= len(old["output"] or b"")
