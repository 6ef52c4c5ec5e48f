"""Debounced triggers: triggers of one task with the same key collapse into one run.

A window is kept per (task id, debounce key) and names its run:

- **trailing**: the first trigger creates a DELAYED run due ``delay`` after it. Each later
  trigger while that run is still DELAYED replaces its payload and moves its start to
  ``delay`` after itself; it answers with the same run. Once its delay is over (the run is
  queued in its place, or started), the next trigger opens a new window and a new run.
- **leading**: the first trigger creates a run that starts at once. Each later trigger
  within ``delay`` of the latest one answers with that run (finished or not) and moves the
  window's end; after the window a trigger creates a new run.

The window's mode is the mode of the trigger that opened it. A run canceled or expired
closes its window. Every change (the payload, the new start, the window's end: the
columns ``runs.payload``, ``delay_until``, ``debounce_key`` and ``debounce_until``) is
journaled before the trigger answers, and the windows are rebuilt from the store at start
(``load``), so a restart in the middle of a window keeps one run with the last payload.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.debounce import DebounceSpec, debounce_of
from ..core.errors import PayloadTooLarge
from ..core.serial import fmt_size
from ..core.status import RunStatus
from ..store.records import Update
from .model import Run
from .scheduler import RunOptions, Scheduler
from .state import EngineState

SWEEP_MIN = 1024  # windows kept before ended ones are dropped from memory
CLOSES = (RunStatus.CANCELED, RunStatus.EXPIRED)  # a run that ends so closes its window


@dataclass
class Window:
    """The run that triggers with one key collapse into, and until when."""

    run_id: str
    mode: str
    until: float


class Debouncer:
    """The debounce windows of one engine (on its loop, like the rest of its state)."""

    def __init__(self, state: EngineState, scheduler: Scheduler):
        self.s = state
        self.scheduler = scheduler
        self.windows: dict[tuple[str, str], Window] = {}
        self._key_of: dict[str, tuple[str, str]] = {}  # run id -> its window's key
        self._sweep_at = SWEEP_MIN
        state.subscribe(self._on_event)

    # ------------------------------------------------------------------ at start

    def load(self) -> None:
        """Rebuild the open windows from the store (in a thread, after ``recovery.load``):
        the newest run of each key whose window has not ended. A run not started whose
        start is its window's end is trailing; any other is leading."""
        rows = self.s.store.query(
            "SELECT id, task_id, debounce_key, debounce_until, status, attempts FROM runs "
            "WHERE debounce_key IS NOT NULL AND debounce_until > ? QUALIFY row_number() "
            "OVER (PARTITION BY task_id, debounce_key ORDER BY created_at DESC) = 1",
            [self.s.now()], sync=False)
        for row in rows:
            if row["status"] in CLOSES:
                continue
            trailing = row["status"] == RunStatus.DELAYED and not row["attempts"]
            self._open((row["task_id"], row["debounce_key"]),
                       Window(row["id"], "trailing" if trailing else "leading",
                              row["debounce_until"]))

    # ------------------------------------------------------------------ triggers

    def trigger(self, task_hash: str, payload: bytes, opts: RunOptions,
                debounce: object) -> tuple[str, bool]:
        """Create the run of a debounced trigger, or fold the trigger into its window's
        run; returns (run id, created). The caller makes the records durable."""
        spec = debounce_of(debounce)
        assert spec is not None
        if opts.idempotency_key is not None or opts.delay is not None:
            raise ValueError("debounce cannot be combined with idempotency_key or delay: "
                             "the debounce key already picks the run, and its delay sets "
                             "the start")
        task = self.s.tasks.get(task_hash)
        if task is None:
            raise LookupError(f"unknown task hash {task_hash}")
        key = (task.task_id, spec.key)
        window = self.windows.get(key)
        now = self.s.now()
        if window is not None and now < window.until:
            if window.mode == "leading":
                self._extend_leading(window, now + spec.delay)
                return window.run_id, False
            run = self.s.runs.get(window.run_id)
            if run is not None and run.status == RunStatus.DELAYED and run.attempts == 0:
                self._replace_payload(run, window, payload, now + spec.delay)
                return run.id, False
        return self._new_run(task_hash, key, payload, opts, spec), True

    def _new_run(self, task_hash: str, key: tuple[str, str], payload: bytes,
                 opts: RunOptions, spec: DebounceSpec) -> str:
        s = self.s
        opts.delay = spec.delay if spec.mode == "trailing" else None
        (run_id,), _ = self.scheduler.create_runs(task_hash, [payload], opts)
        run = s.runs.get(run_id)
        until = (run.delay_until if run is not None and run.delay_until else
                 s.now() + spec.delay)
        if run is not None:
            run.debounce_key, run.debounce_until = spec.key, until
        s.write([Update("runs", {"id": run_id},
                        {"debounce_key": spec.key, "debounce_until": until})])
        self._open(key, Window(run_id, spec.mode, until))
        return run_id

    def _extend_leading(self, window: Window, until: float) -> None:
        window.until = until
        run = self.s.runs.get(window.run_id)
        if run is not None:
            run.debounce_until = until
        self.s.write([Update("runs", {"id": window.run_id}, {"debounce_until": until})])

    def _replace_payload(self, run: Run, window: Window, payload: bytes,
                         until: float) -> None:
        """The trailing run takes the latest payload and starts ``until``: its delay timer
        is armed again (with its ttl, the only other timer of a run never started)."""
        s = self.s
        limit = s.config.max_payload
        if len(payload) > limit:
            raise PayloadTooLarge(f"payload of task '{run.task.task_id}' is "
                                  f"{fmt_size(len(payload))}, over the limit of "
                                  f"{fmt_size(limit)} (max_payload_bytes)")
        for timer in run.timers:
            timer.cancel()
        run.timers.clear()
        if run.ttl:
            s.arm(run, run.created_at + run.ttl, lambda: self.scheduler.expire(run))
        s.arm(run, until, lambda: self.scheduler.undelay(run))
        run.payload = payload
        run.delay_until = run.debounce_until = window.until = until
        s.write([Update("runs", {"id": run.id}, {
            "payload": payload, "delay_until": until, "debounce_until": until,
            "updated_at": s.now()})])

    # ------------------------------------------------------------------ bookkeeping

    def _open(self, key: tuple[str, str], window: Window) -> None:
        old = self.windows.get(key)
        if old is not None:
            self._key_of.pop(old.run_id, None)
        self.windows[key] = window
        self._key_of[window.run_id] = key
        if len(self.windows) > self._sweep_at:
            self._sweep()

    def _sweep(self) -> None:
        """Forget the windows that ended (memory stays bounded by the open ones)."""
        now = self.s.now()
        for key, w in list(self.windows.items()):
            if w.until <= now:
                del self.windows[key]
                self._key_of.pop(w.run_id, None)
        self._sweep_at = max(SWEEP_MIN, 2 * len(self.windows))

    def _on_event(self, event: dict) -> None:
        """A run canceled or expired closes its window: the next trigger makes a new run."""
        if event.get("type") != "run" or event.get("status") not in CLOSES:
            return
        key = self._key_of.pop(str(event.get("run_id")), None)
        if key is not None:
            self.windows.pop(key, None)
