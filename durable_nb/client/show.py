"""Text rendering of runs for the CLI: a table of runs, one run as a tree, a run's logs."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence

from ..core.status import RunStatus, ShownState
from ..core.tracebacks import user_traceback
from .show_reports import report_lines
from .versions import version_line


def fmt_secs(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.2f} s"
    return f"{s / 60:.1f} min"


def fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def runs_table(runs: list[dict]) -> str:
    head = ("RUN", "TASK", "STATUS", "CREATED", "DURATION", "ATTEMPTS")
    rows = [(r["id"], r["task_id"] or "", r["status"], fmt_time(r["created_at"]),
             fmt_secs(r.get("duration")), str(r.get("attempts") or 0)) for r in runs]
    return table(head, rows, "no runs")


def table(head: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    """Rows as columns padded to their widest cell under ``head``; ``empty`` without rows."""
    if not rows:
        return empty
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=False)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in (head, *rows))


def _branch(lines: list[str], items: list[tuple[str, list[str], list]], prefix: str) -> None:
    for i, (text, extra, children) in enumerate(items):
        last = i == len(items) - 1
        lines.append(prefix + ("└─ " if last else "├─ ") + text)
        inner = prefix + ("   " if last else "│  ")
        lines.extend(inner + "  " + e for e in extra)
        _branch(lines, children, inner)


def _step_item(s: dict) -> tuple[float, tuple]:
    dur = (s["ended_at"] - s["started_at"]) if s["ended_at"] else None
    extra = [f"{s['error_type']}: {s['error_message']}"] if s["error_type"] else []
    return s["started_at"], (f"step {s['step_key']}  {s['status']}  (try {s['attempt']})  "
                             f"{fmt_secs(dur)}", extra, [])


def _wait_item(w: dict) -> tuple[float, tuple]:
    if w["kind"] == "retry":
        dur = (w["resolved_at"] or time.time()) - w["created_at"]
        return w["created_at"], (f"retry delay {fmt_secs(dur)}", [], [])
    state = w["outcome"] or "pending"
    who = f" by {w['resolved_by']}" if w["resolved_by"] else ""
    note = f' "{w["comment"]}"' if w["comment"] else ""
    extra = [f"data: {w['preview']}"] if w["kind"] == "approval" and w["preview"] else []
    if w.get("values"):  # what the decision filled in its typed form
        extra.append("values: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in w["values"].items()))
    elif w.get("form") and w["outcome"] is None:
        extra.append("form: " + ", ".join(w["form"].get("properties", {})))
    return w["created_at"], (f"{w['kind']} {w['name']}  {state}{who}{note}", extra, [])


def _worker(a: dict) -> str:
    """Where an attempt ran: its Dask worker's address and pid, or its local worker's pid."""
    if a.get("worker"):  # an engine before schema 5 does not send the key
        return f"worker {a['worker']} (pid {a['worker_pid']})"
    return f"worker pid {a['worker_pid']}"


def run_tree(d: dict) -> str:
    """The run as a tree: each attempt with the steps and waits that happened in it."""
    n = d["attempts"] or 0
    prio = f", priority {d['priority']}" if d.get("priority") else ""
    head = (f"{d['id']}  {d['task_id']}  {d['status']}  ({n} attempt{'s' if n != 1 else ''}, "
            f"{fmt_secs(d.get('duration'))}{prio})")
    events = [_step_item(s) for s in d["steps"] if not s["step_key"].startswith("trigger:")]
    events += [_wait_item(w) for w in d["waits"]]
    events.sort(key=lambda e: e[0])
    attempts = []
    for a in d["attempt_list"]:
        end = a["ended_at"] or float("inf")
        inside = [item for t, item in events if a["started_at"] <= t <= end]
        events = [(t, item) for t, item in events if not a["started_at"] <= t <= end]
        dur = (a["ended_at"] - a["started_at"]) if a["ended_at"] else None
        extra = [f"{a['error_type']}: {a['error_message']}"] if a["error_type"] else []
        attempts.append((a["started_at"], (
            f"attempt {a['number']}  {a['outcome'] or ShownState.RUNNING}  {fmt_secs(dur)}  "
            f"{_worker(a)}", extra, inside)))
    top = sorted(attempts + events, key=lambda e: e[0])
    items = [item for _, item in top]
    items += [(f"child {c['id']}  {c['task_id']}  {c['status']}", [], [])
              for c in d.get("children", [])]
    items += [(f"hook {k['hook_kind']} {k['id']}  {k['task_id']}  {k['status']}", [], [])
              for k in d.get("hooks") or []]
    items += [(f"fork {f['id']}  {_fork_step(f)}  {f['status']}", [], [])
              for f in (d.get("fork_tree") or {}).get("runs", [])
              if f.get("fork_of") == d.get("id")]
    lines = [head, *report_lines(d)]  # progress and metadata
    if (version := version_line(d)) is not None:
        lines.append(version)
    if d.get("hook_of"):
        lines.append(f"{d.get('hook_kind')} hook of run {d['hook_of']}")
    if d.get("fork_of"):  # a fork: its source, and the step it ran anew from
        lines.append(f"fork of run {d['fork_of']} {_fork_step(d)}")
    if d.get("schedule_id"):
        lines.append(f"fired by schedule {d['schedule_id']} for its tick of "
                     f"{fmt_time(d.get('schedule_tick'))}")
    _branch(lines, items, "")
    err = d.get("error")
    if err and d["status"] != RunStatus.COMPLETED:
        lines.append(f"error: {err.get('type')}: {err.get('message')}")
        tb = user_traceback(err.get("traceback"))  # a run stored before workers cleaned it
        if tb:
            lines.extend("  " + ln for ln in tb.rstrip().splitlines())
    return "\n".join(lines)


_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")


def _png_size(b64: str) -> str:
    """`` 640x480`` from a base64 PNG's header, or '' when it is not one."""
    try:
        head = base64.b64decode(b64[:32])
    except (ValueError, TypeError):
        return ""
    if len(head) < 24 or not head.startswith(b"\x89PNG"):
        return ""
    return f" {int.from_bytes(head[16:20], 'big')}x{int.from_bytes(head[20:24], 'big')}"


def record_text(rec: dict) -> str | None:
    """What a text view shows of an output record (a "display" log row): an image as
    ``[image/png 640x480]``, else its text/plain, else ``[its type]``; None for a clear."""
    if rec.get("op") not in ("display", "update"):
        return None
    data = rec.get("data") or {}
    for mime in _IMAGES:
        if mime in data:
            value = data[mime]
            size = _png_size(value) if mime == "image/png" and isinstance(value, str) else ""
            return f"[{mime}{size}]"
    text = data.get("text/plain")
    if isinstance(text, str):
        return text
    return f"[{next(iter(data))}]" if data else None


def log_lines(rows: list[dict]) -> list[tuple[str, str]]:
    """(stream, text) of a run's log rows (oldest first) for a text view: output records as
    their text, a later update of a display replacing its text (a progress bar is one line
    in its final state), clears left out."""
    out: list[list[str]] = []
    where: dict[str, int] = {}  # display id -> its line in out
    for row in rows:
        if row["stream"] != "display":
            out.append([row["stream"], row["line"]])
            continue
        try:
            rec = json.loads(row["line"])
        except ValueError:
            continue
        text = record_text(rec) if isinstance(rec, dict) else None
        rid = rec.get("id") if isinstance(rec, dict) else None
        if text is None:
            continue
        if rec.get("op") == "update" and rid in where:
            out[where[rid]][1] = text
            continue
        if isinstance(rid, str):
            where[rid] = len(out)
        out.append(["display", text])
    return [(stream, text) for stream, text in out]


def _fork_step(run: dict) -> str:
    """Where a fork ran anew from: "from summarize#3", a cell's "after statement 2"."""
    step = run.get("fork_step")
    if step is None:
        return "after its last step"
    return f"after statement {step}" if run.get("kind") == "cell" else f"from {step}"
