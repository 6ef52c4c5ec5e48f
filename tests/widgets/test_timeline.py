"""RunHandle.timeline() and dn.timeline(): plotly Gantt charts of real runs, with a failed
attempt, a retried step, a sleep and a child run."""

from __future__ import annotations

from _support import bump, wait_for

import durable_nb as dn
from durable_nb.client.cells import trigger_cell
from durable_nb.widgets.timeline import timeline_bars


@dn.step(retry=dn.Retry(max_attempts=3, min_timeout=0.1, factor=1, randomize=False))
def flaky(marks: str) -> int:
    n = bump(marks, "flaky")
    if n < 3:
        raise ConnectionError(f"service down (call {n})")
    return n


@dn.task(id="timeline-child")
def child(x: int) -> int:
    return x + 1


@dn.task(id="timeline-main", retry=dn.Retry(max_attempts=2, min_timeout=0.1, randomize=False))
def main(marks: str) -> int:
    if bump(marks, "attempt") == 1:
        raise RuntimeError("the first attempt fails")
    n = flaky(marks)
    dn.sleep(0.2)
    return child.trigger_and_wait(n)


def traces(fig) -> dict:
    return {t.name: t for t in fig.data}


def test_timeline_of_a_run_with_retries_a_wait_and_a_child(engine, marks):
    h = main.trigger(str(marks))
    assert h.result(timeout=60) == 4
    fig = h.timeline()
    tr = traces(fig)
    assert {"queued", "completed", "failed", "retry delay"} <= set(tr)
    # the retried step: two failed tries and a completed one on its row, delays between
    failed = tr["failed"]
    assert sorted(failed.y) == ["attempts", "step flaky#1", "step flaky#1"]
    assert list(tr["completed"].y).count("step flaky#1") == 1
    delays = list(tr["retry delay"].y)
    assert delays.count("step flaky#1") == 2
    assert delays.count("attempts") == 1  # between the failed attempt and the next one
    bars = timeline_bars(h)
    step_delays = [b.end - b.start for b in bars
                   if b.row == "step flaky#1" and b.group == "retry_delay"]
    assert all(0.09 <= d <= 1.0 for d in step_delays), step_delays
    tries = [b for b in bars if b.row == "step flaky#1" and b.group == "step"]
    assert [b.status for b in tries] == ["FAILED", "FAILED", "COMPLETED"]
    assert [b.group for b in bars if b.row == "attempts"].count("attempt") >= 2
    # the sleep and the child wait, and the child run itself
    done = set(tr["completed"].y)
    assert {"wait: sleep 0.2s", "wait: children timeline-child"} <= done
    assert any(r.startswith("child run timeline-child · ") for r in done)
    # hover text names what failed
    texts = [c[0] for c in failed.customdata]
    assert any("ConnectionError" in t and "service down" in t for t in texts)
    assert any("RuntimeError" in t and "first attempt fails" in t for t in texts)
    assert fig.layout.xaxis.type == "date"
    assert list(fig.layout.yaxis.categoryarray)[0] == "run timeline-main"


def test_timeline_of_several_runs_and_of_a_cell(engine, marks):
    a = child.trigger(1)
    b = child.trigger(2)
    cell = trigger_cell("x = 1\ny = x + 1\nz = y * 2\n", {})
    for h in (a, b, cell):
        h.wait(timeout=60)
    fig = dn.timeline([a, b.id])
    assert fig.layout.title.text == "Timeline of 2 runs"
    rows = list(fig.layout.yaxis.categoryarray)
    assert f"{a.id[-6:]} · run timeline-child" in rows and f"{b.id[-6:]} · attempts" in rows
    marks_ = [m for m in timeline_bars(cell) if m.group == "checkpoint"]
    assert [m.text for m in marks_] == [f"statement {i} of 3" for i in (1, 2, 3)]
    cfig = cell.timeline()
    assert "checkpoint" in traces(cfig)
    assert len(traces(cfig)["checkpoint"].x) == 3


def test_timeline_of_a_waiting_run_ends_its_open_bars_now(engine):
    @dn.task(id="timeline-approval")
    def ask() -> bool:
        return dn.approval("go").approved

    h = ask.trigger()
    wait_for(lambda: h.status == "WAITING", 30, "the run to wait for its approval")
    bars = [b for b in timeline_bars(h) if b.group == "wait"]
    assert [(b.row, b.status) for b in bars] == [("wait: approval go", "PENDING")]
    assert "waiting" in traces(h.timeline())
    assert bars[0].end >= bars[0].start
    h.approve()
    assert h.result(timeout=30) is True
