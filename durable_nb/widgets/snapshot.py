"""Static snapshots of the views, saved in notebook outputs beside the live ones: HTML (inline
styles, no scripts or classes it depends on, so it reads the same sanitized on GitHub and
nbviewer) and plain text, showing the last state the kernel knew.

A run's snapshot: its status, task or cell name, steps (consecutive calls of one step folded
into one line), pending approvals and its error line. The runs table's: one row per run.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from typing import Any

from ..client.show_reports import progress_line
from ..core.status import TERMINAL

MAX_STEP_LINES = 30  # folded step lines a run snapshot shows (the newest)
MAX_ERROR = 300  # characters of an error message shown

_COLORS = {
    "COMPLETED": "#1a7f37", "FAILED": "#cf222e", "CRASHED": "#cf222e", "TIMED_OUT": "#cf222e",
    "ERRORED": "#cf222e", "EXECUTING": "#0969da", "RUNNING": "#0969da", "WAITING": "#bf8700",
    "PENDING": "#bf8700", "DELAYED": "#8250df",
}
_BOX = ("font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif;"
        "font-size:13px;border:1px solid #d0d7de;border-radius:6px;padding:6px 10px;"
        "margin:2px 0;max-width:900px")
_MUTED = "color:#59636e"


def duration(seconds: float | None) -> str:
    """'850 ms', '3.2 s', '4 min 05 s', '2 h 10 min' ('' when unknown)."""
    if seconds is None or seconds != seconds:
        return ""
    s = max(0.0, float(seconds))
    if s < 1:
        return f"{round(s * 1000)} ms"
    if s < 60:
        return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else ""


def _badge(status: str) -> str:
    color = _COLORS.get(status, "#57606a")
    return (f'<span style="color:#fff;background:{color};border-radius:10px;padding:0 7px;'
            f'font-size:11px;font-weight:600">{html.escape(status)}</span>')


def fold_steps(steps: Iterable[dict]) -> list[dict]:
    """Consecutive calls of one step as one line: name, count, last status, total time."""
    lines: list[dict] = []
    for s in steps:
        took = (s["ended_at"] - s["started_at"]) if s.get("ended_at") and s.get(
            "started_at") else None
        last = lines[-1] if lines else None
        if last is not None and last["name"] == s.get("name"):
            last["count"] += 1
            last["status"] = s.get("status") or ""
            last["seconds"] = (last["seconds"] or 0) + (took or 0)
        else:
            lines.append({"name": s.get("name") or "?", "count": 1,
                          "status": s.get("status") or "", "seconds": took})
    return lines


def run_title(run: dict) -> str:
    name = run.get("task_id") or ("cell" if run.get("kind") == "cell" else "run")
    return f"{name} · {run.get('id', '')}"


def _error_line(run: dict) -> str:
    err = run.get("error") or {}
    if not err:
        return ""
    msg = str(err.get("message") or "")
    msg = msg if len(msg) <= MAX_ERROR else msg[:MAX_ERROR] + "…"
    return f"{err.get('type') or 'Error'}: {msg}"


def pending_approvals(run: dict) -> list[str]:
    return [str(w.get("name")) for w in run.get("waits") or []
            if w.get("kind") == "approval" and not w.get("resolved_at")]


def run_text(run: dict) -> str:
    """A run's last known state as one or two lines of text."""
    status = run.get("status") or "?"
    parts = [f"durable_nb run {run_title(run)}: {status}"]
    if run.get("duration") is not None and status in TERMINAL:
        parts.append(f"in {duration(run['duration'])}")
    text = " ".join(parts)
    if approvals := pending_approvals(run):
        text += f"; waiting for approval: {', '.join(approvals)}"
    if err := _error_line(run):
        text += f"\n{err}"
    return text


def run_html(run: dict, *, live_hint: bool = True) -> str:
    """A run's last known state as static HTML (inline styles, every value escaped)."""
    status = str(run.get("status") or "?")
    rid = html.escape(str(run.get("id", "")))
    took = duration(run.get("duration")) if status in TERMINAL else ""
    head = (f'<div><b>{html.escape(str(run.get("task_id") or run.get("kind") or "run"))}</b> '
            f'{_badge(status)} <code style="{_MUTED}">{rid}</code>'
            + (f' <span style="{_MUTED}">{took}</span>' if took else "") + "</div>")
    line = progress_line(run.get("progress"))  # dn.progress, as `durable-nb show` prints it
    if line:
        head += f'<div style="{_MUTED}"><code>{html.escape(line)}</code></div>'
    rows = fold_steps(run.get("steps") or [])
    hidden = len(rows) - MAX_STEP_LINES + int(run.get("steps_omitted") or 0)
    items = [f'<li style="{_MUTED}">… {hidden} earlier</li>'] if hidden > 0 else []
    for r in rows[-MAX_STEP_LINES:]:
        times = f" × {r['count']}" if r["count"] > 1 else ""
        items.append(f"<li>{html.escape(r['name'])}{times} {_badge(r['status'])} "
                     f'<span style="{_MUTED}">{duration(r["seconds"])}</span></li>')
    steps = (f'<ul style="margin:4px 0;padding-left:18px">{"".join(items)}</ul>'
             if items else "")
    approvals = "".join(
        f'<div style="color:#9a6700">waiting for approval: <b>{html.escape(n)}</b></div>'
        for n in pending_approvals(run))
    err = _error_line(run)
    error = (f'<div style="color:#cf222e;white-space:pre-wrap"><code>{html.escape(err)}'
             "</code></div>" if err else "")
    when = _when(run.get("updated_at") or run.get("finished_at") or run.get("now"))
    foot = (f'<div style="{_MUTED};font-size:11px">last known state'
            + (f" ({when})" if when else "")
            + (f"; live in JupyterLab with durable_nb, or <code>%durable attach {rid}</code>"
               if live_hint else "") + "</div>")
    return (f'<div data-durable-run="{rid}" style="{_BOX}">'
            f"{head}{steps}{approvals}{error}{foot}</div>")


def runs_text(rows: list[dict], total: int) -> str:
    shown = "\n".join(f"{r.get('id')}  {r.get('task_id') or ''}  {r.get('status')}"
                      for r in rows)
    return f"durable_nb runs ({len(rows)} of {total if total >= 0 else '?'})\n{shown}"


def runs_html(rows: list[dict], total: int, approvals: dict[str, list[str]]) -> str:
    """The runs table's last known page as static HTML."""
    cell = "padding:2px 8px;text-align:left;border-bottom:1px solid #d0d7de"
    head = "".join(f'<th style="{cell}">{h}</th>' for h in
                   ("run", "task", "status", "created", "duration", "pending approvals"))
    body = []
    for r in rows:
        took = duration(r.get("duration"))
        pend = ", ".join(approvals.get(str(r.get("id")), []))
        body.append(
            "<tr>" + "".join(f'<td style="{cell}">{v}</td>' for v in (
                f"<code>{html.escape(str(r.get('id', '')))}</code>",
                html.escape(str(r.get("task_id") or "")), _badge(str(r.get("status") or "?")),
                html.escape(_when(r.get("created_at"))), took, html.escape(pend))) + "</tr>")
    count = f"{len(rows)} of {total}" if total >= 0 else str(len(rows))
    return (f'<div style="{_BOX}"><div><b>durable_nb runs</b> <span style="{_MUTED}">'
            f"({count}, last known state)</span></div>"
            f'<table style="border-collapse:collapse;font-size:12px;margin-top:4px">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def last_known(run: dict[str, Any]) -> dict[str, Any]:
    """What the MIME output keeps of a run: enough to find it and say where it stood."""
    return {"run_id": run.get("id"), "task_id": run.get("task_id"), "kind": run.get("kind"),
            "status": run.get("status"),
            "updated_at": run.get("updated_at") or run.get("finished_at") or run.get("now")}
