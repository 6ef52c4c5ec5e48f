"""The Python API's own behaviour: tasks and steps called directly run as plain functions,
queues check their limits, and results and handles behave as values. Triggered runs are
tested against real engines in the engine tests."""

import pytest
from _support import bump

import durable_nb as dn
from durable_nb.client.tasks import RunResult, SqlResult
from durable_nb.core.errors import StepNotRecorded


@dn.step(retry=dn.Retry(max_attempts=3))
def plus_one(x):
    return x + 1


@dn.task(id="tasks-sum", queue=dn.Queue("tasks-q", concurrency_limit=2))
def summed(a, b=1):
    return plus_one(a) + b


def test_called_outside_a_run_tasks_and_steps_are_plain_functions():
    assert summed(1, b=10) == 12
    assert summed.id == "tasks-sum" and repr(summed) == "<durable task 'tasks-sum'>"
    assert summed.__wrapped_task__.__name__ == "summed"


def test_a_task_without_an_id_is_named_after_its_function():
    @dn.task
    def unnamed():
        return 1

    assert unnamed.id == "unnamed"


def test_a_queue_limit_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        dn.Queue("q", concurrency_limit=0)
    assert dn.Queue("q").to_dict() == {"name": "q", "concurrency_limit": None}


def test_a_run_result_unwraps_or_raises_run_failed():
    assert RunResult("run_1", "COMPLETED", output=5).unwrap() == 5
    failed = RunResult("run_2", "FAILED", error={"type": "KeyError", "message": "'k'"})
    assert not failed.ok
    with pytest.raises(dn.RunFailed, match="run run_2 ended FAILED: KeyError"):
        failed.unwrap()


def test_sql_results_are_rows_with_columns():
    r = SqlResult(["a", "b"], [[1, 2], [3, 4]])
    assert r == [(1, 2), (3, 4)] and r.rows == [(1, 2), (3, 4)]
    assert r.to_dicts() == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]


def test_run_handles_are_equal_by_id():
    a, b = dn.RunHandle("run_1"), dn.RunHandle("run_1")
    assert a == b and hash(a) == hash(b) and a != dn.RunHandle("run_2")
    assert len({a, b}) == 1


def test_waits_outside_a_run_say_where_they_belong():
    for call in (lambda: dn.approval("x"), lambda: dn.wait_for_event("k")):
        with pytest.raises(dn.DurableError, match="inside a task run"):
            call()


FLAKES: dict[str, int] = {}


@dn.step(retry=dn.Retry(max_attempts=2, min_timeout=30, max_timeout=30, randomize=False))
def flaky_once(key: str) -> str:
    FLAKES[key] = FLAKES.get(key, 0) + 1
    if FLAKES[key] == 1:
        raise ConnectionError("busy")
    return key


@dn.task(id="tasks-waits")
def with_waits() -> bool:
    flaky_once("w")
    return dn.approval("ship", timeout="1h").approved


def test_waits_are_the_runs_own_and_retry_delays_are_apart():
    from durable_nb.testing import TestEnvironment

    FLAKES.clear()
    with TestEnvironment():
        run = with_waits.trigger()
        assert run.result(timeout=30) is False  # the approval timed out
        assert [(w["kind"], w["name"], w["outcome"]) for w in run.waits] == [
            ("approval", "ship", "timed_out")]
        assert [(w["kind"], w["outcome"]) for w in run.retry_delays] == [("retry", "elapsed")]


# ---------------------------------------------------------------------- steps' calls and outputs

@dn.step(retry=dn.Retry(max_attempts=2, min_timeout=0.05, randomize=False))
def scaled(values, factor=2, *, marks=None):
    if marks is not None and bump(marks, "scaled") == 1:
        raise ConnectionError("first try fails")
    return [v * factor for v in values]


@dn.step
def locked(lock, n):
    return n + 1


@dn.task(id="tasks-io")
def io_task(marks):
    import threading

    return scaled([1, 2, 3], factor=10, marks=marks), locked(threading.Lock(), 41)


@pytest.mark.slow
def test_steps_give_their_recorded_call_and_output(engine, marks):
    run = io_task.trigger(str(marks))
    assert run.result(timeout=60) == ([10, 20, 30], 42)
    steps = run.steps
    assert [(s["step_key"], s["status"]) for s in steps] == [
        ("scaled#1", "FAILED"), ("scaled#1", "COMPLETED"), ("locked#1", "COMPLETED")]
    failed, ok, lock_step = steps
    assert isinstance(ok, dict) and ok["name"] == "scaled"  # still the row, as before
    assert ok.args == ([1, 2, 3],) and ok.kwargs == {"factor": 10, "marks": str(marks)}
    assert ok.output == [10, 20, 30]
    assert ok.output_preview == {"type": "list", "repr": "[10, 20, 30]"}
    assert ok.args_preview["args"] == [{"type": "list", "repr": "[1, 2, 3]"}]
    assert ok.args_preview["kwargs"]["factor"] == {"type": "int", "repr": "10"}
    assert failed.args == ([1, 2, 3],)  # a failed try has its call too, and no output
    with pytest.raises(StepNotRecorded, match="try 1.*FAILED: ConnectionError: first try"):
        _ = failed.output
    # an argument that cannot be pickled: the output is there, the call is not
    assert lock_step.output == 42
    assert lock_step.args_preview["recorded"] is False
    assert "_thread.lock" in lock_step.args_preview["args"][0]["repr"]
    with pytest.raises(StepNotRecorded, match="was not recorded: .*cannot pickle"):
        _ = lock_step.args


@pytest.mark.slow
def test_a_step_recorded_by_an_earlier_release_has_its_output_but_no_call(tmp_path):
    """tests/data/release-0.1.0 kept no step arguments: asking for them says so."""
    import json
    import os
    import shutil
    from pathlib import Path

    from _support import EngineProcess

    store = tmp_path / "old"
    shutil.copytree(Path(__file__).parents[1] / "data" / "release-0.1.0", store)
    for root, _dirs, files in os.walk(store):
        os.chmod(root, 0o700)
        for f in files:
            os.chmod(os.path.join(root, f), 0o600)
    ids = json.loads((store / "runs.json").read_text())
    engine = EngineProcess(store / "store.duckdb", ["--wait-grace", "0.3"])
    engine.start()
    try:
        (step,) = dn.get_run(ids["event"]).steps
        assert step["status"] == "COMPLETED" and step.output == 40
        assert step.args_preview is None and step.output_preview is None
        with pytest.raises(StepNotRecorded, match="recorded by an earlier release"):
            _ = step.args
    finally:
        engine.stop()
