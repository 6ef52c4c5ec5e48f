"""Run handles and the values runs give back: `RunHandle`, `RunResult`, `Decision`,
`SqlResult`, and the queries that return handles (`runs`, `get_run`, `sql`)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core import serial as _serial
from ..core import views as _views
from ..core.durations import parse_duration
from ..core.errors import DurableError, RunFailed
from ..core.hooks import check_children
from ..core.status import TERMINAL as TERMINAL
from ..core.status import RunStatus
from .client import Client, get_client
from .steps import StepRecord, step_records


@dataclass(frozen=True)
class Decision:
    """How an approval was resolved. ``values``: what the approver filled in the typed
    form (``dn.approval(form=F)``): an instance of F when approved (a dict for a
    TypedDict or a JSON schema), the values a rejection carried as a dict, else None."""

    approved: bool
    comment: str | None = None
    by: str | None = None
    at: float | None = None
    timed_out: bool = False
    values: Any = None  # last: checkpoints pickled before it keep loading, as None


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
    def metadata(self) -> dict:
        """What the run set with ``dn.metadata`` (a dict; empty if nothing), as of now:
        live while the run executes, and kept after it ends."""
        return dict(self._poll().get("metadata") or {})

    @property
    def progress(self) -> dict | None:
        """The run's last progress report (``dn.progress`` or its outermost tqdm bar):
        ``{"done": 63, "total": 100, "text": "embedding"}`` (total and text None when not
        given), or None when the run reported none. ``GET /runs/{id}`` also has its time
        (``at``)."""
        value = self._poll().get("progress")
        if not value:
            return None
        return {"done": value.get("done"), "total": value.get("total"), "text": value.get("text")}

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

    def cancel(self, children: str = "cancel") -> None:
        """Cancel the run. ``children="cancel"`` (the default) cancels every unfinished run
        below it too (its child runs, theirs, ...), in the same durable write;
        ``"abandon"`` leaves them running. A run executing stops when its worker is
        killed."""
        mode = check_children(children)  # the engine's default needs no body (older ones)
        self.client.request("POST", f"/runs/{self.id}/cancel",
                            {"children": mode} if mode != "cancel" else None)

    @property
    def hooks(self) -> list[RunHandle]:
        """The runs of this run's lifecycle hooks (``@dn.task(on_success=..., on_failure=...,
        on_cancel=...)``), oldest first; each one's ``info()`` has ``hook_of`` (this run)
        and ``hook_kind``."""
        return [RunHandle(h["id"], self._client, h) for h in self.info().get("hooks", [])]

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

    def fork(self, from_step: str | int | None = None, task: Any = None) -> RunHandle:
        """A new run linked to this finished one (its ``fork_of``) that reuses the steps
        this run recorded before ``from_step`` (a step key such as ``"summarize#3"``;
        default: the step that failed) and runs that step and the rest with ``task``'s
        code (a ``@dn.task``; default: the current version of this task id, the one this
        process defined last, else the newest the engine knows). The payload, tags,
        queue, concurrency key and priority are this run's. A cell run is forked from a
        statement number N: the checkpoint after statement N is restored and its text runs
        from statement N+1 (``%%durable fork RUN --from N`` runs new text)."""
        from .forks import fork_run

        return fork_run(self, from_step, task)

    @property
    def fork_of(self) -> RunHandle | None:
        """The run this one was forked from (``fork``), or None."""
        summary = self._summary if self._summary and "fork_of" in self._summary \
            else self._poll()
        source = summary.get("fork_of")
        return RunHandle(source, self._client) if source else None

    @property
    def forks(self) -> list[RunHandle]:
        """The runs forked from this one, oldest first (each one's ``fork_of`` is this)."""
        tree = self.client.request("GET", f"/runs/{self.id}/forks")
        return [RunHandle(r["id"], self._client, r) for r in tree["runs"]
                if r["fork_of"] == self.id]

    def approve(self, name: str | None = None, comment: str | None = None,
                by: str | None = None, values: dict | None = None) -> dict:
        """Approve the pending approval (``name`` picks one); refused if already resolved.
        ``values`` fills its typed form (a dict of field -> value); the engine checks them
        against the form and raises ``FormInvalid`` naming the field at fault."""
        return self.client.request("POST", f"/runs/{self.id}/approve",
                                   _decision_body(name, comment, by, values))

    def reject(self, name: str | None = None, comment: str | None = None,
               by: str | None = None, values: dict | None = None) -> dict:
        """Reject the pending approval; ``values`` (optional) are checked as for approve,
        except that no field is required."""
        return self.client.request("POST", f"/runs/{self.id}/reject",
                                   _decision_body(name, comment, by, values))

    @property
    def version(self) -> dict | None:
        """The version of its task's code the run ran: ``number`` (``v3`` is the 3rd code
        hash registered for the task id), ``hash``, ``created_at``, ``latest`` (no newer
        version registered)."""
        return self.info().get("version")

    def compare(self, other: RunHandle | str):
        """This run (A) and ``other`` (B) side by side (``dn.compare``)."""
        from .compare import compare

        return compare(self, other, self._client)

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


def _decision_body(name: str | None, comment: str | None, by: str | None,
                   values: dict | None) -> dict:
    body: dict[str, Any] = {"wait": name, "comment": comment, "by": by}
    if values is not None:  # engines of earlier releases refuse a field they do not know
        body["values"] = values
    return body


# ---------------------------------------------------------------------- queries

def runs(status: str | None = None, task: str | None = None, limit: int = 100,
         q: str | None = None, tags: Iterable[str] | None = None,
         since: str | float | None = None) -> list[RunHandle]:
    """Runs, newest first, optionally filtered by status (or "A,B"), task id, ``q`` (text
    in the run id, task or cell name, tags or notebook, any case), ``tags`` (runs that
    have every one of them, as given to ``trigger(tags=...)``) and ``since`` (created
    within that long before now: "1h", "30m", "2d" or seconds)."""
    wanted = list(tags or ())
    if any("," in t for t in wanted):
        raise ValueError("a tag to filter by cannot contain a comma")
    if since is not None:
        parse_duration(since)  # a malformed duration fails here, naming itself
    client = get_client()
    out = client.request("GET", "/runs", query={"status": status, "task": task, "limit": limit,
                                                "q": q, "tags": ",".join(wanted) or None,
                                                "since": since})
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
