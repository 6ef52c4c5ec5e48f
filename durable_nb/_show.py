"""Text rendering of runs for the CLI: a table of runs and one run as a tree."""

from __future__ import annotations

import time


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


def run_tree(d: dict) -> str:
    """The run's attempts, steps, waits and children in time order, as a tree."""
    head = (f"{d['id']}  {d['task_id']}  {d['status']}  ({d['attempts'] or 0} attempt"
            f"{'s' if (d['attempts'] or 0) != 1 else ''}, {fmt_secs(d.get('duration'))})")
    items: list[tuple[float, str, list[str]]] = []
    for a in d["attempt_list"]:
        dur = (a["ended_at"] - a["started_at"]) if a["ended_at"] else None
        extra = []
        if a["error_type"]:
            extra.append(f"{a['error_type']}: {a['error_message']}")
        items.append((a["started_at"], f"attempt {a['number']}  {a['outcome'] or 'RUNNING'}  "
                      f"{fmt_secs(dur)}  worker pid {a['worker_pid']}", extra))
    for s in d["steps"]:
        dur = (s["ended_at"] - s["started_at"]) if s["ended_at"] else None
        extra = []
        if s["error_type"]:
            extra.append(f"{s['error_type']}: {s['error_message']}")
        label = s["step_key"]
        if label.startswith("trigger:"):
            continue
        items.append((s["started_at"], f"step {label}  {s['status']}  (try {s['attempt']})  "
                      f"{fmt_secs(dur)}", extra))
    for w in d["waits"]:
        if w["kind"] == "retry":
            dur = (w["resolved_at"] or time.time()) - w["created_at"]
            items.append((w["created_at"], f"retry delay {fmt_secs(dur)}", []))
            continue
        state = w["outcome"] or "pending"
        who = f" by {w['resolved_by']}" if w["resolved_by"] else ""
        note = f' "{w["comment"]}"' if w["comment"] else ""
        extra = [f"data: {w['preview']}"] if w["kind"] == "approval" and w["preview"] else []
        items.append((w["created_at"], f"{w['kind']} {w['name']}  {state}{who}{note}", extra))
    for c in d.get("children", []):
        items.append((float("inf"), f"child {c['id']}  {c['task_id']}  {c['status']}", []))
    items.sort(key=lambda x: x[0])
    lines = [head]
    for i, (_, text, extra) in enumerate(items):
        last = i == len(items) - 1
        lines.append(("└─ " if last else "├─ ") + text)
        lines.extend(("   " if last else "│  ") + "  " + e for e in extra)
    err = d.get("error")
    if err and d["status"] not in ("COMPLETED",):
        lines.append(f"error: {err.get('type')}: {err.get('message')}")
        if err.get("traceback"):
            lines.extend("  " + ln for ln in err["traceback"].rstrip().splitlines())
    return "\n".join(lines)
