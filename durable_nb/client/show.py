"""Text rendering of runs for the CLI: a table of runs and one run as a tree."""

from __future__ import annotations

import time

from ..core.status import RunStatus, ShownState


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
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=False)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (head, *rows)]
    return "\n".join(lines) if rows else "no runs"


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
    return w["created_at"], (f"{w['kind']} {w['name']}  {state}{who}{note}", extra, [])


def run_tree(d: dict) -> str:
    """The run as a tree: each attempt with the steps and waits that happened in it."""
    n = d["attempts"] or 0
    head = (f"{d['id']}  {d['task_id']}  {d['status']}  ({n} attempt{'s' if n != 1 else ''}, "
            f"{fmt_secs(d.get('duration'))})")
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
            f"worker pid {a['worker_pid']}", extra, inside)))
    top = sorted(attempts + events, key=lambda e: e[0])
    items = [item for _, item in top]
    items += [(f"child {c['id']}  {c['task_id']}  {c['status']}", [], [])
              for c in d.get("children", [])]
    lines = [head]
    _branch(lines, items, "")
    err = d.get("error")
    if err and d["status"] != RunStatus.COMPLETED:
        lines.append(f"error: {err.get('type')}: {err.get('message')}")
        if err.get("traceback"):
            lines.extend("  " + ln for ln in err["traceback"].rstrip().splitlines())
    return "\n".join(lines)
