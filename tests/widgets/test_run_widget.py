"""The run widget against a real engine: live trait updates from engine events (also while
the main thread is busy, and from inside a real kernel), approvals through the widget's
kernel-side handler, tracebacks, logs, checkpoints and the display fallbacks."""

from __future__ import annotations

import getpass
import os
import queue
import sys
import time
from pathlib import Path

import pytest
from _support import wait_for as _wait_for

import durable_nb as dn
from durable_nb.widgets import run_widget as _widgets
from durable_nb.widgets.run_widget import RunWidget

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


# ---------------------------------------------------------------------- tasks (run in workers)

@dn.step
def tick(i: int) -> int:
    print(f"tick {i}", flush=True)
    time.sleep(0.25)
    return i


@dn.task(id="widgets-ticks")
def ticks(n: int) -> int:
    return sum(tick(i) for i in range(n))


@dn.task(id="widgets-approve")
def needs_approval(x: int) -> dict:
    y = tick(x)
    d = dn.approval("ship", data={"x": y}, timeout=60)
    return {"approved": d.approved, "by": d.by, "comment": d.comment}


@dn.step
def explode(msg: str) -> None:
    raise ValueError(msg)


@dn.task(id="widgets-fails", retry=dn.Retry(max_attempts=1))
def fails(msg: str) -> None:
    explode(msg)


@dn.task(id="widgets-slow", max_duration=0.3)
def slow() -> None:
    time.sleep(0.8)


@dn.task(id="widgets-idle")
def idle() -> None:
    return None


# ---------------------------------------------------------------------- helpers

def busy(seconds: float, until=None) -> None:
    """Keep the main thread computing (no sleeping) for ``seconds`` or until ``until()``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(2000))
        if until is not None and until():
            return


def wait_for(pred, timeout: float = 20.0, what: str = "condition"):
    """Fine-grained polling: these tests time updates against a 0.5 s bound."""
    return _wait_for(pred, timeout, what, interval=0.02)


class Recorder:
    """Records each value of a widget trait with the time it was set."""

    def __init__(self, widget, name: str):
        self.seen: list[tuple[float, dict]] = []
        widget.observe(lambda ch: self.seen.append((time.time(), ch["new"])), names=[name])

    def first(self, pred) -> float | None:
        for at, value in list(self.seen):
            if pred(value):
                return at
        return None


# ---------------------------------------------------------------------- run widget

def test_run_widget_updates_within_half_a_second_while_main_thread_busy(engine):
    h = ticks.trigger(4)
    w = RunWidget(h)
    rec = Recorder(w, "run")
    assert w.run["id"] == h.id and w.run_id == h.id
    # the main thread computes the whole time; only the background thread can update
    busy(30, until=lambda: w.run.get("status") == "COMPLETED")
    assert w.run["status"] == "COMPLETED", w.run["status"]
    info = h.info()
    steps = [s for s in info["steps"] if s["status"] == "COMPLETED"]
    assert len(steps) == 4
    for s in steps:
        seen = rec.first(lambda run, key=s["step_key"]: any(
            x["step_key"] == key and x["status"] == "COMPLETED" for x in run.get("steps", [])))
        assert seen is not None, f"the widget never showed {s['step_key']}"
        assert seen - s["ended_at"] < 0.5, f"{s['step_key']} shown {seen - s['ended_at']:.3f} s late"
    done = rec.first(lambda run: run.get("status") == "COMPLETED")
    assert done - info["finished_at"] < 0.5
    # the log tail followed the run's output
    assert [x["line"] for x in w.run["logs"]] == [f"tick {i}" for i in range(4)]
    w.close()


def test_approve_through_the_widget_handler(engine):
    h = needs_approval.trigger(7)
    w = RunWidget(h)
    pending = wait_for(lambda: [x for x in w.run.get("waits", [])
                                if x["kind"] == "approval" and x["resolved_at"] is None],
                       what="a pending approval in the widget")
    assert pending[0]["name"] == "ship" and pending[0]["preview"] == {"x": 7}
    out = w.decide(True, comment="looks good", by="alice")
    assert out["ok"] and out["outcome"] == "approved"
    assert h.result(timeout=30) == {"approved": True, "by": getpass.getuser(),
                                    "comment": "looks good"}
    wait_for(lambda: w.run.get("status") == "COMPLETED", 5, "COMPLETED in the widget")
    wait = [x for x in w.run["waits"] if x["kind"] == "approval"][0]
    assert wait["outcome"] == "approved" and wait["resolved_by"] == getpass.getuser()
    again = w.decide(False, comment="too late")
    assert not again["ok"] and "COMPLETED" in again["error"]
    w.close()


def test_second_decision_is_refused_with_a_clear_message(engine):
    h = needs_approval.trigger(1)
    w = RunWidget(h)
    replies: list[dict] = []
    w.send = replies.append  # capture what would go to the browser
    wait_for(lambda: any(x["kind"] == "approval" for x in w.run.get("waits", [])), what="approval")
    path = f"/runs/{h.id}/approve"
    w._answer(w, {"type": "api", "id": "a", "method": "POST", "path": path,
                  "body": {"wait": "ship", "comment": "first"}}, [])
    assert replies[-1]["id"] == "a" and replies[-1]["status"] == 200
    # a second widget (or the CLI) was quicker: the engine refuses, the view gets the reason
    other = RunWidget(h.id)
    assert other.decide(True)["ok"] is False
    w._answer(w, {"type": "api", "id": "b", "method": "POST", "path": path, "body": {}}, [])
    assert replies[-1]["status"] == 409
    assert "already resolved" in replies[-1]["body"]["error"] or "not waiting" in \
        replies[-1]["body"]["error"]
    w._answer(w, {"type": "api", "id": "c", "method": "GET", "path": f"/runs/{h.id}/logs?limit=5",
                  "body": None}, [])
    assert replies[-1]["status"] == 200 and "logs" in replies[-1]["body"]
    w._answer(w, {"type": "api", "id": "d", "method": "POST", "path": "/sql", "body": {}}, [])
    assert replies[-1]["status"] == 403
    h.result(timeout=30)
    w.close()
    other.close()


def test_failed_step_carries_its_traceback(engine):
    h = fails.trigger("no such document")
    w = RunWidget(h)
    wait_for(lambda: w.run.get("status") == "FAILED", 30, "FAILED")
    step = [s for s in w.run["steps"] if s["name"].endswith("explode")][0]
    assert step["status"] == "ERRORED" and step["error_type"] == "ValueError"
    assert "no such document" in step["error_message"]
    assert "Traceback" in step["traceback"] and "explode" in step["traceback"]
    assert w.run["error"]["type"] == "ValueError"
    w.close()


def test_finished_run_needs_no_stream_and_display_bundle_says_how_to_reattach(engine):
    h = idle.trigger()
    h.result(timeout=30)
    w = RunWidget(h)
    assert w.run["status"] == "COMPLETED" and w.feed._unsubscribe is None
    bundle, _ = w._repr_mimebundle_()
    assert bundle[_widgets.WIDGET_MIME]["model_id"] == w.model_id
    assert f"%durable attach {h.id}" in bundle["text/plain"]
    assert f"widgets-idle · {h.id}: COMPLETED" in bundle["text/plain"]
    html = _widgets.fallback_html(h.id, "idle", "COMPLETED")
    assert f"%durable attach {h.id}" in html and 'data-durable-run="' in html
    assert w.engine["instance"] == engine.client.health()["instance"]
    # not the Jupyter server's engine: the JupyterLab extension could not find the run
    assert _widgets.RUN_MIME not in bundle
    w.engine = {**w.engine, "server": True}
    bundle, _ = w._repr_mimebundle_()
    assert bundle[_widgets.RUN_MIME] == {
        "run_id": h.id, "task_id": "widgets-idle", "kind": "task", "status": "COMPLETED",
        "updated_at": w.run.get("updated_at") or w.run["finished_at"],
        "instance": w.engine["instance"], "outputs_in_cell": False}
    # a %%durable cell prints the run's output below its view: the view folds its own copy
    w.outputs_in_cell = True
    assert w._repr_mimebundle_()[0][_widgets.RUN_MIME]["outputs_in_cell"] is True
    static = bundle["text/html"]  # the last known state, for GitHub and nbviewer
    assert f'data-durable-run="{h.id}"' in static and "COMPLETED" in static
    assert "widgets-idle" in static and "<script" not in static and "class=" not in static
    w.close()


def test_static_snapshot_shows_steps_approvals_and_error_escaped():
    steps = [{"name": "fetch", "status": "COMPLETED", "started_at": 1.0, "ended_at": 1.5}
             for _ in range(3)] + [
        {"name": "<b>parse</b>", "status": "ERRORED", "started_at": 2.0, "ended_at": 4.5}]
    run = {"id": "run_1", "task_id": "<script>alert(1)</script>", "kind": "task",
           "status": "FAILED", "duration": 3.5, "steps": steps, "updated_at": 5.0,
           "waits": [{"kind": "approval", "name": "ship & <go>", "resolved_at": None},
                     {"kind": "approval", "name": "done", "resolved_at": 3.0}],
           "error": {"type": "ValueError", "message": "bad <img src=x onerror=alert(1)>"}}
    html = _widgets.run_html(run)
    assert "<script" not in html and "<img" not in html and "<b>parse" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "fetch × 3" in html and "1.50 s" in html  # a loop folds into one line
    assert "&lt;b&gt;parse&lt;/b&gt;" in html and "ERRORED" in html and "2.50 s" in html
    assert "waiting for approval: <b>ship &amp; &lt;go&gt;</b>" in html and "done" not in html
    assert "ValueError: bad &lt;img src=x onerror=alert(1)&gt;" in html
    assert "FAILED" in html and "3.50 s" in html
    text = _widgets.run_text(run)
    assert "FAILED in 3.50 s; waiting for approval: ship & <go>" in text
    many = {**run, "steps": [{"name": f"s{i}", "status": "COMPLETED"} for i in range(40)]}
    assert "… 10 earlier" in _widgets.run_html(many) and "s39" in _widgets.run_html(many)


def test_widget_follows_an_engine_restart(engine):
    h = ticks.trigger(30)
    w = RunWidget(h)
    wait_for(lambda: w.run.get("status") == "EXECUTING", 20, "EXECUTING")
    # the values, not the Client: a client whose engine went away repoints itself
    old_url, old_token = h.client.url, h.client.token
    engine.restart()  # a new port and token: the widget's client follows its database
    assert old_url != engine.client.url or old_token != engine.client.token
    wait_for(lambda: w.notice == "" and w.run.get("status") in ("EXECUTING", "QUEUED",
                                                                  "COMPLETED"),
             30, "the widget to reconnect")
    h.cancel()
    wait_for(lambda: w.run.get("status") == "CANCELED", 20, "CANCELED after the restart")
    w.close()


def test_max_duration_overrun_shows_up_live(engine):
    h = slow.trigger()
    w = RunWidget(h)
    wait_for(lambda: w.run.get("duration_warning") is True, 10, "the duration warning")
    assert w.run["status"] == "EXECUTING"  # the warning came while the run was going on
    h.result(timeout=30)
    w.close()


def test_cell_run_shows_its_checkpoints(engine):
    from durable_nb.client.cells import trigger_cell

    h = trigger_cell("a = 1\nb = a + 1\nprint('b is', b)\n", {}, name="widget-cell")
    w = RunWidget(h)
    wait_for(lambda: w.run.get("status") == "COMPLETED", 30, "COMPLETED")
    wait_for(lambda: len(w.run["checkpoints"]) == 3, 5, "three checkpoints")
    assert [c["statement"] for c in w.run["checkpoints"]] == [1, 2, 3]
    assert all(c["total"] == 3 for c in w.run["checkpoints"])
    assert w.run["kind"] == "cell" and w.run["logs"][-1]["line"] == "b is 2"
    w.close()


def test_run_handle_display_outside_a_kernel_is_its_repr(capsys):
    h = dn.RunHandle("run_nowhere", summary={"task_id": "t", "status": "QUEUED"})
    assert not _widgets.in_kernel()
    h._ipython_display_()
    assert capsys.readouterr().out.strip() == "<RunHandle run_nowhere task='t' status=QUEUED>"


# ---------------------------------------------------------------------- inside a real kernel

@pytest.mark.slow
def test_display_is_sent_again_with_the_final_state(engine):
    """In a real kernel using the Jupyter server's engine (as a kernel that server started
    sees it): one output per display, with the run's id for the JupyterLab extension; when
    the run ends the kernel updates that display, so a notebook saved then has the end."""
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "DURABLE_NB_URL": engine.client.url,
           "DURABLE_NB_TOKEN": engine.client.token or "", "JPY_PARENT_PID": str(os.getpid()),
           "PYTHONPATH": os.pathsep.join([str(TESTS), str(HERE), *sys.path])}
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        kc.execute_interactive("from test_run_widget import ticks\n"
                               "h = ticks.trigger(3)\nh", timeout=60)
        shown: list[dict] = []
        deadline = time.monotonic() + 60
        msg_id = kc.execute("h.result(timeout=30)")
        while time.monotonic() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["msg_type"] in ("display_data", "update_display_data"):
                shown.append(msg)
            if msg["msg_type"] == "update_display_data" and msg["content"]["data"][
                    _widgets.RUN_MIME]["status"] == "COMPLETED":
                break
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
        updates = [m for m in shown if m["msg_type"] == "update_display_data"]
        assert updates, [m["msg_type"] for m in shown]
        last = updates[-1]["content"]
        assert last["data"][_widgets.RUN_MIME]["status"] == "COMPLETED"
        assert "COMPLETED" in last["data"]["text/html"] and "tick × 3" in last["data"]["text/html"]
        assert _widgets.WIDGET_MIME in last["data"]
        assert last["transient"]["display_id"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_comm_messages_leave_a_busy_kernel(engine):
    """In a real ipykernel, the background thread sends widget updates while the cell that
    created the widget is still computing."""
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "DURABLE_NB_URL": engine.client.url,
           "DURABLE_NB_TOKEN": engine.client.token or "",
           "PYTHONPATH": os.pathsep.join([str(TESTS), str(HERE), *sys.path])}
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        code = (
            "import time, durable_nb as dn\n"
            "from durable_nb.widgets.views import RunWidget\n"
            "from test_run_widget import ticks\n"
            "h = ticks.trigger(3)\n"
            "w = RunWidget(h)\n"
            "t0 = time.monotonic()\n"
            "while h.status != 'COMPLETED' and time.monotonic() - t0 < 30:\n"
            "    sum(range(100000))\n"
            "t1 = time.monotonic()\n"
            "while time.monotonic() - t1 < 0.6:\n"
            "    sum(range(100000))\n"
        )
        msg_id = kc.execute(code)
        statuses: list[str] = []
        shown: dict[str, float] = {}  # step key -> when the browser would have got it
        ended: dict[str, float] = {}
        done = False
        deadline = time.monotonic() + 60
        while not done and time.monotonic() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id and msg["msg_type"] != "comm_msg":
                continue
            if msg["msg_type"] == "comm_msg":
                state = msg["content"]["data"].get("state") or {}
                if "run" in state:
                    statuses.append(state["run"].get("status"))
                    for st in state["run"].get("steps", []):
                        if st["status"] == "COMPLETED":
                            shown.setdefault(st["step_key"], time.time())
                            ended[st["step_key"]] = st["ended_at"]
            elif msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                done = True
        assert done, "the cell did not finish"
        # every update below arrived before the cell finished, i.e. while it was busy
        assert "COMPLETED" in statuses, statuses
        assert len(statuses) >= 4, statuses
        assert len(shown) == 3
        late = {k: round(shown[k] - ended[k], 3) for k in shown}
        assert all(v < 0.5 for v in late.values()), late
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture(autouse=True)
def _close_widgets():
    yield
    for w in list(_widgets._live.values()):
        w.close()
    _widgets._live.clear()
