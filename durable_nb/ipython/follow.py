"""Following a run from a kernel: its log lines, rich outputs and status changes shown in the
output of the cell that asked, and readable text for runs and their errors.

A ``Follower`` is a background thread with its own event loop that reads the engine's event
WebSocket for one run. It runs in a copy of the calling cell's context: ipykernel keeps the
parent message in context variables, so what the thread prints lands in that cell's output
even while other cells execute."""

from __future__ import annotations

import asyncio
import contextvars
import json
import sys
import threading
import time
from typing import TypeVar

from ..client.show import fmt_secs
from ..client.tasks import RunHandle
from ..core.errors import DurableError
from ..core.runtime import events_url
from ..core.status import TERMINAL, RunStatus, StepStatus
from ..core.tracebacks import clean_traceback
from .outputs import Outputs, collapse, parse

ExcT = TypeVar("ExcT", bound=BaseException)
PREFIX = "[durable]"
DISPLAY = "display"  # the log stream of output records (see worker.display)
BACKFILL_LINES = 1000


def say(text: str, err: bool = False) -> None:
    """One notice line, into the current cell's output."""
    stream = sys.stderr if err else sys.stdout
    print(f"{PREFIX} {text}", file=stream, flush=True)


def shown(exc: ExcT, lines: list[str] | None = None) -> ExcT:
    """``exc``, displayed by IPython as ``lines`` (default: one line) instead of a traceback."""
    text = lines or [f"{type(exc).__name__}: {exc}"]
    exc.__dict__["_render_traceback_"] = lambda: list(text)  # IPython's custom-traceback hook
    return exc


def drop_connection(run: RunHandle) -> None:
    """After an interrupt mid-request, the thread's keep-alive connection is unusable."""
    local = run.client._local
    conn = getattr(local, "conn", None)
    if conn is not None:
        conn.close()
        local.conn = None


def short_type(name: str | None) -> str:
    """``durable_nb.core.errors.NotPicklable`` -> ``NotPicklable``; other types stay as they are."""
    name = name or "Error"
    return name.rsplit(".", 1)[-1] if name.startswith("durable_nb.") else name


def error_lines(error: dict | None, source: str | None = None) -> list[str]:
    """What went wrong, for a person: the user's frames, else ``Type: message``."""
    error = error or {}
    lines = clean_traceback(error.get("traceback") or "", source)
    return lines or [f"{short_type(error.get('type'))}: {error.get('message', '')}"]


def what(summary: dict) -> str:
    """``cell 'ingest'`` or ``task 'process-document'``."""
    return f"{summary.get('kind') or 'task'} '{summary.get('task_id') or '?'}'"


def describe(run: RunHandle) -> str:
    """A few lines on a run: what, status, progress, what it waits for, how to act on it."""
    try:
        d = run.info()
    except DurableError as exc:
        return f"<durable run {run.id}: {exc}>"
    status, n = d["status"], d.get("attempts") or 0
    if status in TERMINAL:
        when = f"in {fmt_secs(d.get('duration'))}" if d.get("duration") is not None else ""
    elif d.get("started_at"):
        when = f"running {fmt_secs(time.time() - d['started_at'])}"
    else:
        when = f"queued {fmt_secs(time.time() - d['created_at'])}"
    tries = f"{n} attempt{'s' if n != 1 else ''}, " if n else ""
    lines = [f"durable run {d['id']}  {what(d)}  {status}  ({tries}{when})"]
    if d.get("kind") == "cell":
        try:
            cp = run.client.request("GET", f"/runs/{run.id}/checkpoint")
            if cp.get("statement"):
                lines.append(f"  statement {cp['statement']} of {cp.get('total') or '?'} done; "
                             f"variables: {', '.join(sorted(cp['variables'])) or '-'}")
        except DurableError:
            pass
    for w in d.get("waits", []):
        if w["outcome"] is None and w["kind"] == "approval":
            lines.append(f"  waiting for approval '{w['name']}': %durable approve {run.id} "
                         "[--comment TEXT]  or  %durable reject " + run.id)
        elif w["outcome"] is None and w["kind"] == "event":
            lines.append(f"  waiting for event '{w['name']}': dn.send_event('{w['name']}', data)")
    if d.get("error") and status != RunStatus.COMPLETED:
        err = d["error"]
        lines.append(f"  error: {short_type(err.get('type'))}: {err.get('message', '')}")
    verbs = "status attach" + ("" if status in TERMINAL else " cancel")
    lines.append("  " + "  ·  ".join(f"%durable {v} {run.id}" for v in verbs.split()))
    return "\n".join(lines)


def end_line(summary: dict) -> str:
    n = summary.get("attempts") or 0
    took = f" in {fmt_secs(summary['duration'])}" if summary.get("duration") is not None else ""
    after = f" after {n} attempts" if n > 1 else ""
    return f"run {summary['id']} ({what(summary)}) {summary['status']}{took}{after}"


class Follower:
    """Shows one run's logs, outputs (``outputs.Outputs``) and status changes in the calling
    cell until the run ends.

    ``announce_end`` prints the final status (and the error) too; with ``--wait`` the magic
    does that itself. Connection losses are retried, so a restarted engine is followed."""

    def __init__(self, run: RunHandle, *, announce_end: bool = True, source: str | None = None,
                 end_hint: str = ""):
        self.run = RunHandle(run.id, run._client)
        self.announce_end = announce_end
        self.source = source
        self.end_hint = end_hint
        self.final: dict | None = None
        self.done = threading.Event()
        self._printed: set[tuple[float, str]] = set()
        self.outputs = Outputs(run.id)
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn = None
        ctx = contextvars.copy_context()  # the cell's parent message travels with the thread
        self._thread = threading.Thread(target=ctx.run, args=(self._main,), daemon=True,
                                        name=f"durable-follow-{run.id}")

    def start(self) -> Follower:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        """Stop following (the run goes on)."""
        self._stopping = True
        loop, conn = self._loop, self._conn
        if loop is not None and conn is not None:
            loop.call_soon_threadsafe(conn.close)

    def _main(self) -> None:
        try:
            asyncio.run(self._follow())
        except Exception as exc:  # never let a display helper kill silently
            say(f"stopped following run {self.run.id}: {exc}", err=True)
        finally:
            self.done.set()

    async def _follow(self) -> None:
        from tornado.httpclient import HTTPClientError

        self._loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping:
            try:
                conn = await self._connect()
            except (OSError, HTTPClientError, DurableError, asyncio.TimeoutError):
                failures += 1
                if failures > 8:
                    say(f"lost the engine; `%durable attach {self.run.id}` follows the run "
                        "again", err=True)
                    return
                await asyncio.sleep(min(5.0, 0.2 * 2 ** failures))
                try:
                    self.run._poll()  # a client bound to a database follows it to a new engine
                except DurableError:
                    pass
                continue
            failures = 0
            if await self._pump(conn):
                return

    async def _connect(self):
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        client = self.run.client
        url = events_url(client.url, self.run.id)
        headers = {"Authorization": f"token {client.token}"} if client.token else {}
        req = HTTPRequest(url, headers=headers, connect_timeout=10, request_timeout=10)
        return await websocket_connect(req)

    async def _pump(self, conn) -> bool:
        """Read events until the run ends (True) or the connection drops (False)."""
        self._conn = conn
        try:
            if await conn.read_message() is None:  # the hello: we are subscribed
                return False
            # status first: if the run had ended, the logs read next are all of them (reads
            # see every write before them); if not, its end arrives on the socket
            summary = self.run._poll()
            self._backfill()
            if summary["status"] in TERMINAL:
                self._finish(summary)
                return True
            while not self._stopping:
                msg = await conn.read_message()
                if msg is None:
                    return False
                if self._event(json.loads(msg)):
                    return True
            return True
        except DurableError:
            return False
        finally:
            conn.close()
            self._conn = None

    def _backfill(self) -> None:
        """Show what was logged before we subscribed, in order, each message once: text,
        and output records as a notebook shows them in the end (a display with its last
        update, a progress bar in its final state)."""
        logs = self.run.client.request("GET", f"/runs/{self.run.id}/logs",
                                       query={"limit": BACKFILL_LINES})["logs"]
        if len(logs) == BACKFILL_LINES and not self._printed:
            say(f"(earlier log lines not shown; only the last {BACKFILL_LINES})")
        batches: list[tuple[tuple[float, str], list[str]]] = []
        for row in logs:  # oldest first; a message's lines share its time and stream
            key = (row["at"], row["stream"])
            if batches and batches[-1][0] == key:
                batches[-1][1].append(row["line"])
            elif key not in self._printed:
                batches.append((key, [row["line"]]))
        records = collapse([parse(lines[0]) if key[1] == DISPLAY and len(lines) == 1 else None
                            for key, lines in batches], self.outputs.known())
        for (key, lines), rec in zip(batches, records, strict=True):
            if key[1] == DISPLAY and len(lines) == 1:
                self._printed.add(key)
                if rec is not None:
                    self._show(rec)
            else:
                self._print_batch(key, lines)

    def _print_batch(self, key: tuple[float, str], lines: list[str]) -> None:
        if key in self._printed:
            return
        self._printed.add(key)
        if key[1] == DISPLAY:
            for line in lines:
                rec = parse(line)
                if rec is not None:
                    self._show(rec)
            return
        self.outputs.before_output()
        stream = sys.stderr if key[1] == "stderr" else sys.stdout
        stream.write("".join(line + "\n" for line in lines))
        stream.flush()

    def _show(self, rec: dict) -> None:
        try:
            self.outputs.show(rec)
        except Exception as exc:  # one output that cannot be shown does not stop the rest
            say(f"an output of the run could not be shown: {type(exc).__name__}: {exc}",
                err=True)

    def _event(self, ev: dict) -> bool:
        kind = ev.get("type")
        if kind == "log":
            self._print_batch((ev["at"], ev["stream"]), ev["lines"])
        elif kind == "run":
            if ev["status"] in TERMINAL:
                self._finish(self.run._poll())
                return True
            reason = f" ({ev['reason']})" if ev.get("reason") else ""
            say(f"{ev['status']}{reason}")
        elif kind == "wait" and ev.get("kind") in ("approval", "event"):
            self._wait_event(ev)
        elif kind == "step" and ev.get("status") == StepStatus.FAILED:
            err = ev.get("error") or {}
            say(f"step {ev['key']} failed (try {ev['attempt']}): {short_type(err.get('type'))}: "
                f"{err.get('message', '')}; it will be retried", err=True)
        elif kind == "warning":
            say(f"warning: {ev.get('message', '')}", err=True)
        return False

    def _wait_event(self, ev: dict) -> None:
        name, rid = ev["name"], self.run.id
        if ev["state"] == "pending" and ev["kind"] == "approval":
            say(f"waiting for approval '{name}': `%durable approve {rid} --comment ...` or "
                f"`%durable reject {rid}` (the worker is freed meanwhile)")
        elif ev["state"] == "pending":
            say(f"waiting for event '{name}': dn.send_event('{name}', data)")
        else:
            by = f" by {ev['by']}" if ev.get("by") else ""
            say(f"{ev['kind']} '{name}' {ev['state']}{by}")

    def _finish(self, summary: dict) -> None:
        self.final = summary
        if not self.announce_end:
            return
        if summary["status"] == RunStatus.COMPLETED:
            say(end_line(summary) + (f"; {self.end_hint}" if self.end_hint else ""))
            return
        say(end_line(summary), err=True)
        sys.stderr.write("".join(f"  {line}\n" for line in
                                 error_lines(summary.get("error"), self.source)))
        sys.stderr.flush()
