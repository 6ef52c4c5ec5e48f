"""Lifecycle hooks against a real engine and real worker processes: each hook gets the
ended run's handle and sees its final status; a worker SIGKILLed until the run ends
CRASHED still fires on_failure (no client is involved); a hook that raises is retried."""

from __future__ import annotations

import os
import signal
import time

import pytest
from _support import bump, count

import durable_nb as dn


def saw(run: dn.RunHandle) -> dict:
    """A hook: what it was given (its return value is the hook run's output)."""
    return {"id": run.id, "status": run.status, "type": type(run).__name__}


def flaky_alert(run: dn.RunHandle) -> str:
    """A hook whose first try fails (the marks folder is the run's tag)."""
    if bump(run.info()["tags"][0], run.id) == 1:
        raise ConnectionError("the alert service is down")
    return run.status


def gated(run: dn.RunHandle) -> str:
    """A hook that runs until the test opens its gate (the marks folder is the run's tag)."""
    marks = run.info()["tags"][0]
    bump(marks, "hook-started")
    while not os.path.exists(os.path.join(marks, "gate")):
        time.sleep(0.02)
    return run.status


@dn.task(id="hooked-gated", on_success=gated)
def quick() -> int:
    return 1


@dn.task(id="hooked", retry=dn.Retry(max_attempts=1), on_success=saw, on_failure=saw,
         on_cancel=saw)
def hooked(what: str) -> str:
    if what == "fail":
        raise ValueError("as asked")
    if what == "wait":
        dn.wait_for_event("hooked-never", timeout="1h")
    return what


@dn.task(id="hooked-crash", on_failure=saw)
def crashes() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@dn.task(id="hooked-flaky", retry=dn.Retry(max_attempts=1), on_failure=flaky_alert)
def fails() -> None:
    raise RuntimeError("down")


@dn.task(id="hooked-parent")
def parent_of_hooked() -> str:
    return hooked.trigger_and_wait("as a child")


def _hook(run: dn.RunHandle, timeout: float = 60) -> dn.RunHandle:
    """The run's one hook run, once it exists."""
    from _support import wait_for

    (hook,) = wait_for(lambda: run.hooks, timeout, f"the hook run of {run.id}")
    return hook


def test_each_hook_receives_the_handle_and_sees_the_final_status(engine):
    ok, bad, waiting = hooked.trigger("ok"), hooked.trigger("fail"), hooked.trigger("wait")
    assert ok.result(timeout=60) == "ok"
    with pytest.raises(dn.RunFailed):
        bad.result(timeout=60)
    from _support import wait_for

    wait_for(lambda: waiting.status == "WAITING", 60, "the run to wait")
    waiting.cancel()
    for run, kind, status in ((ok, "on_success", "COMPLETED"), (bad, "on_failure", "FAILED"),
                              (waiting, "on_cancel", "CANCELED")):
        hook = _hook(run)
        assert hook.result(timeout=60) == {"id": run.id, "status": status, "type": "RunHandle"}
        info = hook.info()
        assert (info["hook_of"], info["hook_kind"], info["task_id"]) == (
            run.id, kind, f"hooked.{kind}")
        assert run.info()["hooks"][0]["hook_kind"] == kind


def test_a_worker_killed_until_the_run_crashes_still_fires_on_failure(engine):
    run = crashes.trigger()
    with pytest.raises(dn.RunFailed) as err:
        run.result(timeout=90)
    assert err.value.status == "CRASHED"
    assert _hook(run).result(timeout=60)["status"] == "CRASHED"


def test_a_hook_that_raises_is_retried(engine, marks):
    run = fails.trigger(tags=[str(marks)])
    with pytest.raises(dn.RunFailed):
        run.result(timeout=60)
    hook = _hook(run)
    assert hook.result(timeout=60) == "FAILED"
    outcomes = [a["outcome"] for a in hook.attempts]
    assert outcomes == ["FAILED", "COMPLETED"], "retried by the hook task's Retry()"
    assert "ConnectionError" in (hook.attempts[0]["error_type"] or "")
    assert hook.hooks == [], "a hook run has no hooks of its own"


def test_show_lists_a_run_s_hooks_and_a_hook_run_says_what_it_is_for(engine):
    from durable_nb.client.show import run_tree

    run = hooked.trigger("ok")
    run.result(timeout=60)
    hook = _hook(run)
    hook.result(timeout=60)
    assert f"hook on_success {hook.id}  hooked.on_success  COMPLETED" in run_tree(run.info())
    assert f"on_success hook of run {run.id}" in run_tree(hook.info())


def test_a_hook_must_be_callable():
    with pytest.raises(TypeError, match="on_failure must be a function"):
        dn.task(on_failure="alert")(lambda: None)


def test_an_engine_killed_while_a_hook_runs_resumes_it_and_never_doubles_it(engine, marks):
    from _support import wait_for

    run = quick.trigger(tags=[str(marks)])
    assert run.result(timeout=60) == 1
    wait_for(lambda: count(marks, "hook-started") >= 1, 60, "the hook to start")
    engine.kill()
    engine.start()
    (marks / "gate").touch()
    hook = _hook(run)
    assert hook.result(timeout=60) == "COMPLETED"
    assert [a["outcome"] for a in hook.attempts] == ["INTERRUPTED", "COMPLETED"]
    engine.restart()
    assert len(run.hooks) == 1, "one hook run per ending, across restarts"


def test_a_child_run_triggered_inside_a_run_fires_its_hooks_too(engine):
    run = parent_of_hooked.trigger()
    assert run.result(timeout=60) == "as a child"
    child = dn.get_run(run.info()["children"][0]["id"])
    assert _hook(child).result(timeout=60)["status"] == "COMPLETED"
    assert run.hooks == [], "the parent's task has no hooks"
