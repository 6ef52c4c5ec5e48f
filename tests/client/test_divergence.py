"""Replay divergence against a real engine: a task re-executed after a killed worker that
calls a recorded step with other arguments, or another step where a recorded one stood,
fails with dn.ReplayDivergence (no retry) naming the step, both calls and the user's
line; with on_divergence="warn" it completes with a warning in the run's logs. Values
whose pickle varies between processes (sets of strings) and steps that crashed midway
(re-running the steps they call) are no divergence."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from _support import bump, wait_for

import durable_nb as dn


@dn.step
def save(value):
    return value


@dn.step
def crash_once(marks: str, name: str = "crash") -> None:
    """Kills its worker the first time it runs (a SIGKILL: the attempt is CRASHED)."""
    if bump(marks, name) == 1:
        os.kill(os.getpid(), signal.SIGKILL)


def _edited_between_attempts(path: str, marks: str):
    value = Path(path).read_text()
    saved = save(value)  # the line the divergence names
    Path(path).write_text(value + "!")  # code between steps that does not replay alike
    crash_once(marks)
    return saved


@dn.task(id="div-args")
def div_args(path: str, marks: str):
    return _edited_between_attempts(path, marks)


@dn.task(id="div-args-warn", on_divergence="warn")
def div_args_warn(path: str, marks: str):
    return _edited_between_attempts(path, marks)


@dn.step
def step_a():
    return "a"


@dn.step
def step_b():
    return "b"


@dn.task(id="div-order")
def div_order(flag: str, marks: str):
    if os.path.exists(flag):
        os.remove(flag)
        step_a()
    else:
        step_b()  # where step_a#1 stood
    crash_once(marks)
    return "done"


def test_a_recorded_step_called_with_other_arguments_fails_the_run_at_once(engine, tmp_path,
                                                                           marks):
    path = tmp_path / "value.txt"
    path.write_text("first")
    run = div_args.trigger(str(path), str(marks))
    with pytest.raises(dn.ReplayDivergence) as caught:
        run.result(timeout=60)
    exc = caught.value
    assert isinstance(exc, dn.RunFailed) and exc.status == "FAILED"
    text = str(exc.original)
    assert "save#1" in text
    assert "save('first')" in text and "save('first!')" in text, text
    assert "test_divergence.py" in text and "saved = save(value)" in text, text
    assert exc.original.step == "save#1" and exc.original.kind == "arguments"
    # a divergence is no error a retry fixes: the task's Retry() is not used
    assert [a["outcome"] for a in run.attempts] == ["CRASHED", "FAILED"]
    assert dn.sql(f"select count(*) from steps where run_id = '{run.id}' and "
                  "step_key = 'save#1' and length(args_hash) = 32")[0][0] == 1


def test_with_on_divergence_warn_the_run_completes_with_the_recorded_output(engine, tmp_path,
                                                                            marks):
    path = tmp_path / "value.txt"
    path.write_text("first")
    run = div_args_warn.trigger(str(path), str(marks))
    assert run.result(timeout=60) == "first", "the recorded output, not the new call's"
    lines = [row["line"] for row in run.logs if row["stream"] == "stderr"]
    warned = [line for line in lines if "ReplayDivergenceWarning" in line]
    assert len(warned) == 1, lines
    assert "save('first!')" in warned[0] and "saved = save(value)" in warned[0]
    assert [a["outcome"] for a in run.attempts] == ["CRASHED", "COMPLETED"]


def test_another_step_where_a_recorded_one_stood_is_a_divergence(engine, tmp_path, marks):
    flag = tmp_path / "flag"
    flag.write_text("x")
    run = div_order.trigger(str(flag), str(marks))
    with pytest.raises(dn.ReplayDivergence) as caught:
        run.result(timeout=60)
    original = caught.value.original
    assert original.kind == "step" and original.step == "step_b#1"
    assert original.recorded == "step_a#1"
    assert "step_b()" in str(original) and "test_divergence.py" in str(original)
    assert [a["outcome"] for a in run.attempts] == ["CRASHED", "FAILED"]


@dn.task(id="div-after-engine-kill")
def div_after_wait(path: str):
    value = Path(path).read_text()
    save(value)
    Path(path).write_text(value + "!")
    return dn.approval("go").approved


def test_the_record_outlives_a_killed_engine(engine, tmp_path):
    """The hashes a restarted engine hands to the next attempt come from the store."""
    path = tmp_path / "value.txt"
    path.write_text("first")
    run = div_after_wait.trigger(str(path))
    wait_for(lambda: run.status == "WAITING", what="the run to wait")  # no worker left
    engine.kill()
    engine.start()
    run = dn.get_run(run.id)
    run.approve()
    with pytest.raises(dn.ReplayDivergence, match=r"save\('first!'\)"):
        run.result(timeout=60)


@dn.step
def tagged(tags, meta):
    return sorted(tags)


@dn.step
def inner(i):
    return i * 2


@dn.step
def outer(marks: str):
    total = inner(1) + inner(2)
    crash_once(marks, "outer")  # the worker dies inside the outer step, after its inner ones
    return total + inner(3)


@dn.task(id="div-none")
def div_none(marks: str):
    names = {f"name-{i}" for i in range(50)}  # iterates in another order in each process
    first = tagged(names, {"kinds": frozenset(names), "n": len(names)})
    crash_once(marks)
    return first[:2], outer(marks)


def test_sets_and_a_step_that_crashed_midway_are_no_divergence(engine, marks):
    run = div_none.trigger(str(marks))
    assert run.result(timeout=60) == (["name-0", "name-1"], 12)
    assert [a["outcome"] for a in run.attempts] == ["CRASHED", "CRASHED", "COMPLETED"]
    hashes = dn.sql(f"select step_key, args_hash from steps where run_id = '{run.id}' "
                    "and status = 'COMPLETED' order by step_key")
    assert [k for k, _ in hashes] == ["crash_once#1", "crash_once#2", "inner#1", "inner#2",
                                      "inner#3", "outer#1", "tagged#1"]
    assert all(h for _, h in hashes)


def test_on_divergence_is_checked_where_the_task_is_declared():
    with pytest.raises(ValueError, match="on_divergence must be 'raise'"):
        dn.task(on_divergence="ignore")(lambda: None)
    assert "on_divergence" not in div_args.spec()["options"]  # the default changes no hash
    assert div_args_warn.spec()["options"]["on_divergence"] == "warn"


def test_the_api_refuses_an_unknown_on_divergence(engine):
    spec = div_args_warn.spec()
    body = {"task_id": spec["task_id"], "code_b64": "AA==", "sys_path": [],
            "options": {**spec["options"], "on_divergence": "sometimes"}}
    with pytest.raises(dn.ApiError) as caught:
        engine.client.request("PUT", f"/tasks/{spec['hash']}", body)
    assert caught.value.status in (400, 422)
    assert "on_divergence" in str(caught.value) and "sometimes" in str(caught.value)
