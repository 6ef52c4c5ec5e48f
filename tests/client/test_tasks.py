"""The Python API's own behaviour: tasks and steps called directly run as plain functions,
queues check their limits, and results and handles behave as values. Triggered runs are
tested against real engines in the engine tests."""

import pytest

import durable_nb as dn
from durable_nb.client.tasks import RunResult, SqlResult


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
