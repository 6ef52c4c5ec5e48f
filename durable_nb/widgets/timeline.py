"""Gantt charts (plotly) of runs: attempts, steps with their failed tries and retry delays,
waits and child runs, on one time axis."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..client.tasks import RunHandle, get_run
from ..core.status import (
    CANCELED_OR_EXPIRED,
    FAILURES,
    TERMINAL,
    AttemptOutcome,
    RunStatus,
    ShownState,
    StepStatus,
    WaitOutcome,
)

# bars are colored by what happened to them; one legend entry (trace) per category
_R, _A, _S, _W = RunStatus, AttemptOutcome, StepStatus, WaitOutcome
CATEGORIES: dict[str, tuple[str, set[str]]] = {  # name: (color, statuses)
    "completed": ("#2da44e", {_R.COMPLETED, _W.APPROVED, _W.COMPLETED, _W.EVENT, _W.ELAPSED}),
    "failed": ("#cf222e", {*FAILURES, _S.ERRORED, _W.TIMED_OUT}),
    "rejected": ("#e16f24", {_W.REJECTED}),
    "running": ("#0969da", {_R.EXECUTING, ShownState.RUNNING}),
    "waiting": ("#d4a72c", {_R.WAITING, ShownState.PENDING}),
    "retry delay": ("#c297ff", {_R.DELAYED}),
    "queued": ("#d0d7de", {_R.QUEUED}),
    # canceled and expired (never started before its ttl) go together, as in every view
    "suspended / canceled": ("#8c959f", {_A.SUSPENDED, _A.INTERRUPTED, *CANCELED_OR_EXPIRED,
                                         _W.CANCELED, _W.ABANDONED}),
    "checkpoint": ("#57606a", set()),
}


def category(status: str) -> str:
    """The legend category of a run, attempt, step or wait status."""
    for name, (_, statuses) in CATEGORIES.items():
        if status in statuses:
            return name
    return "suspended / canceled"


@dataclass
class Bar:
    """One horizontal bar: a row label, start/end (epoch s), legend group, hover text."""

    row: str
    start: float
    end: float
    group: str  # run, queued, attempt, step, retry_delay, wait, child, checkpoint
    status: str
    text: str


# a chart of more bars than this draws those of a row and category that would overlap (closer
# than a bar's least width, 1/250 of the time span) as one: plotly draws each bar as an SVG
# path, and 10,000 take seconds to draw
MERGE_AT = 1000
# a run with more steps than this has one row per step name (all its steps' tries on it)
# rather than one per step, so a 10,000-step run is a few readable rows
STEP_ROWS = 50


@dataclass
class _Chart:
    bars: list[Bar] = field(default_factory=list)
    marks: list[Bar] = field(default_factory=list)  # instants (checkpoints)
    rows: list[str] = field(default_factory=list)
    _known: set[str] = field(default_factory=set)

    def row(self, label: str) -> str:
        if label not in self._known:
            self._known.add(label)
            self.rows.append(label)
        return label

    def add(self, row: str, start: float | None, end: float | None, group: str, status: str,
            text: str) -> None:
        if start is None:
            return
        end = start if end is None else end
        self.bars.append(Bar(self.row(row), start, max(end, start), group, status or "", text))


def _fmt(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def _handles(runs: Any) -> list[RunHandle]:
    if isinstance(runs, (RunHandle, str)):
        runs = [runs]
    out = []
    for r in runs:
        out.append(r if isinstance(r, RunHandle) else get_run(str(r)))
    return out


def _add_run(chart: _Chart, handle: RunHandle, prefix: str, now: float) -> None:
    """Add one run's bars: the run, its attempts, steps, waits, child runs and checkpoints
    (rows appear in that order)."""
    info = handle.info()
    finished = info["status"] in TERMINAL
    _add_queued_and_running(chart, info, prefix, finished, now)
    _add_attempts(chart, info, prefix, finished, now)
    _add_steps(chart, info, prefix, finished, now)
    _add_waits(chart, info, prefix, finished, now)
    _add_children(chart, handle, info, prefix, now)
    if info.get("kind") == "cell":
        _add_checkpoints(chart, handle, prefix)


def _add_queued_and_running(chart: _Chart, info: dict, prefix: str, finished: bool,
                            now: float) -> None:
    label = f"{prefix}run {info['task_id']}"
    started = info.get("started_at")
    run_end = info.get("finished_at") if finished else now
    chart.add(label, info["created_at"], started or run_end, "queued", RunStatus.QUEUED,
              f"{info['id']} queued")
    if started:
        chart.add(label, started, run_end, "run", info["status"],
                  f"{info['id']} {info['status']}")


def _add_attempts(chart: _Chart, info: dict, prefix: str, finished: bool, now: float) -> None:
    """Each attempt, and the retry delay after a failed or crashed one."""
    attempts = info.get("attempt_list") or []
    arow = f"{prefix}attempts"
    for i, a in enumerate(attempts):
        outcome = a.get("outcome") or (ShownState.RUNNING if not finished else "")
        err = f"<br>{a['error_type']}: {a['error_message']}" if a.get("error_type") else ""
        chart.add(arow, a["started_at"], _or_now(a.get("ended_at"), now), "attempt", outcome,
                  f"attempt {a['number']} {outcome}{err}")
        nxt = attempts[i + 1]["started_at"] if i + 1 < len(attempts) else None
        if outcome in (AttemptOutcome.FAILED, AttemptOutcome.CRASHED) and a.get("ended_at"):
            chart.add(arow, a["ended_at"], nxt if nxt else (a["ended_at"] if finished else now),
                      "retry_delay", RunStatus.DELAYED, f"retry delay after attempt {a['number']}")


def _step_rows(steps: list[dict], prefix: str) -> dict[str, str]:
    """Each step key's row: its own, or its name's when the run has many steps."""
    keys: dict[str, str] = {}
    for s in steps:
        if not s["step_key"].startswith("trigger:"):
            keys.setdefault(s["step_key"], s.get("name") or s["step_key"])
    if len(keys) <= STEP_ROWS:
        return {k: f"{prefix}step {k}" for k in keys}
    count: dict[str, int] = {}
    for name in keys.values():
        count[name] = count.get(name, 0) + 1
    return {k: f"{prefix}steps {name} × {count[name]:,}" for k, name in keys.items()}


def _add_steps(chart: _Chart, info: dict, prefix: str, finished: bool, now: float) -> None:
    """Each try of each step (not the triggers of child runs), then the steps' retry delays
    (``retry`` waits named after their step) on the step's row; a run of more than
    ``STEP_ROWS`` steps has one row per step name."""
    retry_waits: dict[str, list[dict]] = {}
    for w in info.get("waits") or []:
        if w["kind"] == "retry":
            retry_waits.setdefault(w["name"].rsplit(" retry ", 1)[0], []).append(w)
    rows = _step_rows(info.get("steps") or [], prefix)
    for s in info.get("steps") or []:
        key = s["step_key"]
        if key.startswith("trigger:"):
            continue
        row = rows[key]
        err = f"<br>{s['error_type']}: {s['error_message']}" if s.get("error_type") else ""
        chart.add(row, s["started_at"], _or_now(s.get("ended_at"), now), "step", s["status"],
                  f"{key} try {s['attempt']} {s['status']}{err}")
    for key, waits in retry_waits.items():
        for w in waits:
            chart.add(rows.get(key, f"{prefix}step {key}"), w["created_at"],
                      w.get("resolved_at") or (w.get("deadline") if finished else now),
                      "retry_delay", RunStatus.DELAYED, f"{key}: retry delay")


def _add_waits(chart: _Chart, info: dict, prefix: str, finished: bool, now: float) -> None:
    """Each approval, event, sleep and children wait (retry delays go on their step)."""
    for w in info.get("waits") or []:
        if w["kind"] == "retry":
            continue
        outcome = w.get("outcome") or (ShownState.PENDING if not finished else WaitOutcome.CANCELED)
        by = f" by {w['resolved_by']}" if w.get("resolved_by") else ""
        end = w.get("resolved_at") or (now if not finished else info.get("finished_at"))
        what = "children" if w["kind"] == "child" else w["kind"]
        chart.add(f"{prefix}wait: {what} {w['name']}", w["created_at"], end, "wait", outcome,
                  f"{w['kind']} '{w['name']}' {outcome}{by}")


def _add_children(chart: _Chart, handle: RunHandle, info: dict, prefix: str,
                  now: float) -> None:
    """One bar per child run, from its creation to its end (children gone are left out)."""
    for c in info.get("children") or []:
        try:
            ci = RunHandle(c["id"], handle.client).info()
        except Exception:
            continue
        cend = ci.get("finished_at") or now
        chart.add(f"{prefix}child run {c['task_id']} · {c['id'][-6:]}", ci["created_at"], cend,
                  "child", ci["status"], f"child run {c['id']} ({c['task_id']}) {ci['status']}")


def _add_checkpoints(chart: _Chart, handle: RunHandle, prefix: str) -> None:
    """A cell run's checkpoints, as instants on one row."""
    for s in handle.spans:
        if s["kind"] == "checkpoint":
            a = s.get("attributes") or {}
            chart.marks.append(Bar(chart.row(f"{prefix}checkpoints"), s["start_at"],
                                   s["start_at"], "checkpoint", StepStatus.COMPLETED,
                                   f"statement {a.get('statement')} of {a.get('total')}"))


def _or_now(t: float | None, now: float) -> float:
    return t if t is not None else now


def _chart(handles: list[RunHandle]) -> _Chart:
    """The bars of these runs (each row label prefixed with its run id when several)."""
    chart = _Chart()
    now = time.time()
    for h in handles:
        _add_run(chart, h, f"{h.id[-6:]} · " if len(handles) > 1 else "", now)
    return chart


def timeline(runs: Any, title: str | None = None):
    """A plotly Gantt chart of one or several runs (RunHandles or run ids).

    Rows: the run (queued, then executing), its attempts (with the retry delay after a failed
    one), each step (every try; failed tries in red, retry delays hatched violet), each wait,
    each child run, and a cell's checkpoints. Colors say what happened (one legend entry per
    outcome); hover a bar for its status, duration and error. A run of more than
    ``STEP_ROWS`` steps has one row per step name, and a chart of more than ``MERGE_AT``
    bars draws those that would overlap as one.
    """
    handles = _handles(runs)
    return figure(_chart(handles), _title(handles) if title is None else title)


def figure(chart: _Chart, title: str):
    """The plotly figure of a chart's bars: one trace per legend category, its bars as
    arrays (bars that would overlap merged), so a 10,000-step run builds in tens of
    milliseconds and draws as fast as a small one."""
    import plotly.graph_objects as go

    layout = {
        "title": {"text": title, "x": 0.01, "xanchor": "left"},
        "barmode": "overlay",
        "height": 150 + 26 * max(len(chart.rows), 1),
        "margin": {"l": 10, "r": 10, "t": 80, "b": 40},
        "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1.0,
                   "xanchor": "right"},
        "xaxis": {"type": "date", "title": {"text": None}},
        "yaxis": {"categoryorder": "array", "categoryarray": chart.rows,
                  "autorange": "reversed", "title": {"text": None}},
    }
    fig = go.Figure(data=_bar_traces(chart) + _checkpoint_traces(chart))
    fig.update_layout(template="plotly_white", **layout)
    return fig


def _title(handles: list[RunHandle]) -> str:
    if len(handles) > 1:
        return f"Timeline of {len(handles)} runs"
    return f"Run {handles[0].id}" if handles else "No runs"


def _local_ms(t: float) -> float:
    """Epoch seconds as the milliseconds a plotly date axis shows as this local time."""
    offset = datetime.fromtimestamp(t).astimezone().utcoffset()
    return (t + (offset.total_seconds() if offset else 0.0)) * 1000


def _merged(bars: list[Bar], gap: float) -> list[Bar]:
    """Bars of one row and category less than ``gap`` seconds apart as one bar (its text
    says how many, from which to which): a row of 3,000 steps of a few milliseconds each
    becomes a few bars, drawn as fast as a small run's and looking the same."""
    out: list[Bar] = []
    run: list[Bar] = []
    reach = 0.0  # where the bars of ``run`` end

    def close() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            first, last = run[0], run[-1]
            out.append(Bar(first.row, first.start, reach, first.group, first.status,
                           f"{len(run):,} bars, from<br>{first.text}<br>to<br>{last.text}"))
        run.clear()

    for b in sorted(bars, key=lambda b: (b.row, b.start)):
        if run and (b.row != run[-1].row or b.start - reach > gap):
            close()
        reach = max(reach, b.end) if run else b.end
        run.append(b)
    close()
    return out


def _bar_traces(chart: _Chart) -> list[dict]:
    """One horizontal bar trace per legend category that has bars; a chart of more than
    ``MERGE_AT`` bars draws those that would overlap as one."""
    if not chart.bars:
        return []
    lo = min(b.start for b in chart.bars)
    span = max(b.end for b in chart.bars) - lo
    least = max(span * 1000 * 0.004, 1.0)  # ms: keep instant bars (fast steps) visible
    shift = _local_ms(lo) - lo * 1000  # one offset: a run does not span two time zones
    by_category: dict[str, list[Bar]] = {}
    for b in chart.bars:
        by_category.setdefault(category(b.status), []).append(b)
    if len(chart.bars) > MERGE_AT:  # closer than a bar's least width: they overlap anyway
        gap = least / 1000
        by_category = {k: _merged(v, gap) for k, v in by_category.items()}
    traces = []
    for name, (color, _) in CATEGORIES.items():
        bars = by_category.get(name)
        if bars:
            traces.append({
                "type": "bar", "name": name, "orientation": "h", "y": [b.row for b in bars],
                "base": [b.start * 1000 + shift for b in bars],
                "x": [max((b.end - b.start) * 1000, least) for b in bars],
                "marker": {"color": color, "line": {"width": 0},
                           "pattern": {"shape": "/" if name == "retry delay" else ""}},
                "opacity": 0.75 if name in ("queued", "retry delay") else 1.0,
                "customdata": [[b.text, _fmt(b.end - b.start)] for b in bars],
                "hovertemplate": "%{customdata[0]}<br>%{customdata[1]}<extra></extra>",
                "width": 0.6,
            })
    return traces


def _checkpoint_traces(chart: _Chart) -> list[dict]:
    """The checkpoints (instants) as diamonds."""
    marks = chart.marks
    if not marks:
        return []
    return [{
        "type": "scatter", "name": "checkpoint", "mode": "markers", "y": [m.row for m in marks],
        "x": [_local_ms(m.start) for m in marks],
        "marker": {"symbol": "diamond", "size": 9, "color": CATEGORIES["checkpoint"][0]},
        "customdata": [[m.text] for m in marks],
        "hovertemplate": "%{customdata[0]}<extra></extra>",
    }]


def timeline_bars(runs: Any) -> list[Bar]:
    """The bars `timeline` draws (for tests and custom plots)."""
    chart = _chart(_handles(runs))
    return chart.bars + chart.marks
