"""RunHandle.timeline() and dn.timeline(): plotly Gantt charts of real runs, with a failed
attempt, a retried step, a sleep and a child run."""

from __future__ import annotations

from _support import bump, wait_for

import durable_nb as dn
from durable_nb.client.cells import trigger_cell
from durable_nb.widgets import timeline as timeline_mod
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


# ---------------------------------------------------------------------- a big run


@dn.step(name="fetch")
def fetch_page(i: int) -> int:
    return i


@dn.step(name="parse", retry=dn.Retry(max_attempts=2, min_timeout=0.01, randomize=False))
def parse_page(i: int, marks: str) -> int:
    if i == 5 and bump(marks, "parse") == 1:
        raise ValueError("bad page (once)")
    return i


@dn.step(name="save")
def save_page(i: int) -> int:
    return i


@dn.task(id="timeline-big")
def big(n: int, marks: str) -> int:
    for i in range(n):
        fetch_page(i)
        parse_page(i, marks)
        save_page(i)
    return 3 * n


def test_a_big_run_has_one_row_per_step_name_and_one_trace_per_outcome(engine, marks,
                                                                      monkeypatch):
    h = big.trigger(100, str(marks))
    assert h.result(timeout=60) == 300
    fig = h.timeline()
    rows = list(fig.layout.yaxis.categoryarray)
    assert rows == ["run timeline-big", "attempts", "steps fetch × 100", "steps parse × 100",
                    "steps save × 100"]
    tr = traces(fig)
    assert set(tr) == {"queued", "completed", "failed", "retry delay"}  # one per outcome
    assert len(tr["completed"].y) == 1 + 1 + 300  # the run, its attempt, each step
    assert list(tr["failed"].y) == ["steps parse × 100"]  # the try that was retried
    assert fig.layout.height < 400

    # past MERGE_AT bars, bars that would overlap draw as one, and say how many they are
    monkeypatch.setattr(timeline_mod, "MERGE_AT", 100)
    merged = traces(h.timeline())
    assert list(merged["failed"].y) == ["steps parse × 100"]  # an outcome is never merged away
    texts = [c[0] for c in merged["completed"].customdata]
    assert sum(int(t.split(" bars")[0].replace(",", "")) if " bars" in t else 1
               for t in texts) == 302  # every bar is drawn, alone or in a merged one
    assert len(timeline_bars(h)) > 300  # the bars themselves are all there


def test_bars_that_would_overlap_merge_into_one():
    Bar = timeline_mod.Bar
    bars = [Bar("steps a", i * 0.01, i * 0.01 + 0.004, "step", "COMPLETED", f"a#{i}")
            for i in range(1000)]
    bars += [Bar("steps a", 20.0, 21.0, "step", "COMPLETED", "a#late"),
             Bar("steps b", 0.0, 30.0, "step", "COMPLETED", "b#1")]
    out = timeline_mod._merged(bars, gap=0.05)
    assert [(b.row, b.start, round(b.end, 6)) for b in out] == [
        ("steps a", 0.0, 9.994), ("steps a", 20.0, 21.0), ("steps b", 0.0, 30.0)]
    assert out[0].text == "1,000 bars, from<br>a#0<br>to<br>a#999" and out[1].text == "a#late"
