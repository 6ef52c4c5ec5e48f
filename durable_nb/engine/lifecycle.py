"""How attempts and runs end: completed, failed (retried by the task's policy), suspended
at a wait, crashed with their worker, killed for a timeout or a cancel, or expired.

A failed or crashed attempt starts a new generation after the retry delay: steps that
completed stay recorded, failed tries are forgotten. A run that ends resolves every wait
it still has, wakes its parent's wait on it, cancels its children if it was canceled
(unless the cancel abandoned them) and tells ``on_finish`` (lifecycle hooks start there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.status import AttemptOutcome, RunStatus, WaitOutcome
from ..store.records import Update
from .cancellation import unfinished_descendants
from .model import Run, Wait, error_json
from .scheduler import Scheduler
from .state import EngineState
from .waits import Waits

MAX_CRASHES = 5  # crashes in a row with nothing recorded between them end the run


def crash_pause(crashes: int) -> float:
    """Seconds before resuming after the ``crashes``-th crash in a row: 0, 0.5, 1, 2, ..."""
    return 0.0 if crashes <= 1 else min(10.0, 0.5 * 2 ** (crashes - 2))


def _new_generation(run: Run) -> None:
    """Start over from the completed steps: failed tries and errored steps are forgotten."""
    run.generation += 1
    run.step_failures.clear()
    run.steps = {k: v for k, v in run.steps.items() if v[0] == "ok"}


class Lifecycle:
    """Ends attempts and runs."""

    def __init__(self, state: EngineState, scheduler: Scheduler, waits: Waits):
        self.s = state
        self.scheduler = scheduler
        self.waits = waits
        # called with (run, status) once a run has ended, in the same journal batch
        # (lifecycle hooks: ``hooks.Hooks.run_finished``)
        self.on_finish: list[Callable[[Run, str], None]] = []
        self.abandoned: set[str] = set()  # canceled runs whose children go on running

    def done(self, run: Run, worker: Any, output: bytes | None) -> None:
        self.end_attempt(run, worker, AttemptOutcome.COMPLETED)
        self.finish(run, RunStatus.COMPLETED, output=output)

    def failed(self, run: Run, worker: Any, error: dict) -> None:
        self.end_attempt(run, worker, AttemptOutcome.FAILED, error)
        self.after_failure(run, AttemptOutcome.FAILED, error)

    def suspended(self, run: Run, worker: Any) -> None:
        """The worker gave the run up at a wait: it waits, or is queued if resolved."""
        s = self.s
        self.end_attempt(run, worker, AttemptOutcome.SUSPENDED)
        waits = self.waits.still_waiting(run)  # one blocking wait, or the loop's idle ones
        if not waits:
            s.set_status(run, RunStatus.QUEUED, "resuming")
            s.enqueue(run)
        else:
            s.set_status(run, RunStatus.WAITING,
                         ", ".join(f"{w.kind} '{w.name}'" for w in waits))
        self.scheduler.dispatch()

    def worker_exited(self, worker: Any) -> None:
        """A worker ended: if it was executing, the engine killed it or it crashed."""
        run = worker.run
        if run is not None and run.worker is worker:
            why = run.stopping
            if why == RunStatus.CANCELED:
                self.end_attempt(run, worker, AttemptOutcome.CANCELED)
                self.finish(run, RunStatus.CANCELED)
            elif why == RunStatus.TIMED_OUT:
                limit = run.task.options.get("kill_after")
                err = {"type": "TimedOut", "message": f"the attempt ran longer than kill_after "
                       f"({limit:g} s) and its worker was killed", "traceback": None}
                self.end_attempt(run, worker, AttemptOutcome.TIMED_OUT, err)
                self.finish(run, RunStatus.TIMED_OUT, error=err)
            elif not self.s.stopped:
                err = {"type": "WorkerCrashed", "message": _crash_message(worker),
                       "traceback": None}
                self.end_attempt(run, worker, AttemptOutcome.CRASHED, err)
                self.after_crash(run, err)
        if not self.s.stopped:
            self.scheduler.dispatch()

    def end_attempt(self, run: Run, worker: Any, outcome: str,
                    error: dict | None = None) -> None:
        """Free the worker and record how the attempt ended."""
        run.worker = None
        run.stopping = None
        run.suspending = False
        worker.run = None
        for t in run.attempt_timers:
            t.cancel()
        run.attempt_timers = []
        self.s.executing[run.group] -= 1
        err = error or {}
        self.s.write([
            Update("attempts", {"run_id": run.id, "number": run.attempts}, {
                "ended_at": self.s.now(), "outcome": outcome, "error_type": err.get("type"),
                "error_message": err.get("message"), "traceback": err.get("traceback")}),
        ])

    def after_crash(self, run: Run, error: dict) -> None:
        """Resume the run after its worker died: a crash is not the task's exception, so
        it neither needs nor spends the retry policy. The next attempt continues after the
        last recorded step or checkpoint, in the same generation (as after an engine
        restart). Crashes in a row with nothing recorded between them are a crash loop: the
        run is resumed at once, then after growing pauses, and ends CRASHED at the
        ``MAX_CRASHES``-th."""
        s = self.s
        run.crashes = 1 if run.progress > run.attempt_progress else run.crashes + 1
        if run.crashes >= MAX_CRASHES:
            error = {**error, "message": (
                f"{error['message']}; it crashed {run.crashes} times in a row without "
                "recording a step or checkpoint, so it is not resumed again. Fix the cause "
                f"(e.g. memory), then resume it: RunHandle.resume() or `%durable resume "
                f"{run.id}`")}
            self.finish(run, RunStatus.CRASHED, error=error)
            return
        run.error = error_json(error)
        run.current_wait = None
        delay = crash_pause(run.crashes)
        reason = f"resuming after the worker crashed in attempt {run.attempts}"
        if delay == 0:
            s.set_status(run, RunStatus.QUEUED, reason, error=run.error)
            s.enqueue(run)
            return
        until = s.now() + delay
        run.delay_until = until
        s.set_status(run, RunStatus.DELAYED, f"{reason} ({run.crashes} in a row; pausing "
                     f"{delay:g} s)", delay_until=until, error=run.error)
        s.arm(run, until, lambda: self.scheduler.undelay(run))

    def after_failure(self, run: Run, outcome: str, error: dict) -> None:
        """Retry the run after the policy's delay in a new generation, or end it."""
        s = self.s
        run.failures += 1
        delay = None if error.get("abort") else run.task.retry.delay(run.failures)
        if delay is None:
            final = RunStatus.CRASHED if outcome == AttemptOutcome.CRASHED else RunStatus.FAILED
            self.finish(run, final, error=error)
            return
        run.current_wait = None
        for w in list(run.waits.values()):  # step tries of this generation will not resume
            if w.kind == "retry" and w.resolution is None:
                self.waits.resolve(run, w, {"outcome": WaitOutcome.ABANDONED})
        _new_generation(run)
        # pending waits stay: a wait key has one row and one resolution for ever, so the next
        # attempt meets the same wait (and its deadline) again instead of a second one
        run.current_wait = None
        until = s.now() + delay
        run.delay_until = until
        run.error = error_json(error)
        s.set_status(run, RunStatus.DELAYED, f"retry in {delay:g} s after {outcome.lower()} "
                     f"attempt {run.attempts}", delay_until=until,
                     error=run.error, generation=run.generation)
        s.arm(run, until, lambda: self.scheduler.undelay(run))

    def finish(self, run: Run, status: str, output: bytes | None = None,
               error: dict | None = None) -> None:
        """End ``run`` with the terminal ``status``."""
        s = self.s
        now = s.now()
        for t in run.timers + run.attempt_timers:
            t.cancel()
        run.timers, run.attempt_timers = [], []
        run.current_wait = None
        run.idle_waits = set()  # the waits resolved below do not queue it again
        outcome = WaitOutcome.CANCELED if status == RunStatus.CANCELED else WaitOutcome.ABANDONED
        for w in list(run.waits.values()):  # every wait row gets its one resolution
            if w.resolution is None:
                self.waits.resolve(run, w, {"outcome": outcome})
        s.runs.pop(run.id, None)
        run.finished_at, run.output = now, output
        if error:
            run.error = error_json(error)
        elif status == RunStatus.COMPLETED:
            run.error = None
        s.set_status(run, status, "finished", finished_at=now, output=output, error=run.error)
        s.remember(run.row())
        s.write([], lambda: s.notify_done(run.id))
        for cid in s.children_of.pop(run.id, []):
            s.child_results.pop(cid, None)
        if status == RunStatus.CANCELED and run.id not in self.abandoned:
            for child in [s.runs[c] for c in run.children if c in s.runs]:
                self._cancel_one(child)
        self.abandoned.discard(run.id)
        if run.parent_run_id and run.parent_run_id in s.runs:
            self._tell_parent(run, status, output, error)
        for fn in self.on_finish:
            fn(run, status)

    def _tell_parent(self, run: Run, status: str, output: bytes | None,
                     error: dict | None) -> None:
        s = self.s
        parent = s.runs[run.parent_run_id or ""]
        s.children_of[parent.id].append(run.id)
        s.child_results[run.id] = (status, output, error)
        for wait in parent.waits.values():
            if (wait.kind == "child" and wait.resolution is None
                    and run.id in (wait.target or [])):
                self.waits.try_resolve_now(parent, wait)

    def cancel(self, run: Run, children: str = "cancel",
               via: list[str] | tuple = ()) -> list[str]:
        """Cancel ``run`` and, unless ``children`` is "abandon", every unfinished
        descendant (``via``: descendants' ids from the store, to reach those below finished
        runs), all in this loop turn's journal batch; returns the descendants' ids. A run
        executing is killed and ends when its worker exits."""
        below: list[Run] = []
        if children == "abandon":
            self.abandoned.add(run.id)
        else:
            below = unfinished_descendants(self.s, run.id, via)
        for r in [run, *below]:
            if r.id in self.s.runs:
                self._cancel_one(r)
        return [r.id for r in below]

    def _cancel_one(self, run: Run) -> None:
        """Kill ``run``'s attempt's worker (whose exit ends it) or end it now."""
        if run.worker is not None:
            self.scheduler.kill(run, run.worker, RunStatus.CANCELED)
        else:
            self.finish(run, RunStatus.CANCELED)
            self.scheduler.dispatch()

    def resume(self, run: Run, by: str | None = None) -> None:
        """Continue a FAILED, CRASHED, CANCELED or TIMED_OUT run (loaded by
        ``recovery.read_run``) in a new attempt: after its last recorded step or checkpoint,
        in a new generation with a whole retry policy. Waits its end abandoned or canceled
        are pending again, with their timeouts counted from now."""
        s = self.s
        now = s.now()
        old = run.status
        _new_generation(run)
        run.failures = run.crashes = 0
        run.finished_at = run.output = None
        for wait in run.waits.values():
            if wait.kind != "retry" and (wait.resolution or {}).get("outcome") in (
                    WaitOutcome.ABANDONED, WaitOutcome.CANCELED):
                self._reopen(run, wait, now)
        s.runs[run.id] = run
        s.finished.pop(run.id, None)
        s.set_status(run, RunStatus.QUEUED, f"resumed from {old}" + (f" by {by}" if by
                     else ""), finished_at=None, output=None, generation=run.generation)
        s.enqueue(run)
        for w in run.waits.values():
            self.waits.arm(run, w)
        self.scheduler.dispatch()

    def _reopen(self, run: Run, wait: Wait, now: float) -> None:
        if wait.deadline is not None:
            wait.deadline = now + max(0.0, wait.deadline - wait.created_at)
        wait.resolution = None
        wait.timer = None
        self.s.write([Update("waits", {"run_id": run.id, "wait_key": wait.key}, {
            "resolved_at": None, "outcome": None, "result": None, "comment": None,
            "resolved_by": None, "deadline": wait.deadline})])


def _crash_message(worker: Any) -> str:
    """What ended the attempt when its worker went away."""
    describe = getattr(worker, "describe", None)  # an attempt on Dask says where and why
    if describe is not None:
        return f"the attempt was lost with {describe()}"
    return (f"the worker process (pid {worker.pid}) died (exit code {worker.exit_code}) "
            "while executing the run")
