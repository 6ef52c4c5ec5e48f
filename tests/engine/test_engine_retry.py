"""Step and task retries with the recorded backoff; AbortRun fails at once (acceptance 3)."""

import pytest
from _support import bump, count

import durable_nb as dn

STEP_RETRY = dn.Retry(max_attempts=3, min_timeout=0.2, factor=2, randomize=False)


@dn.step(retry=STEP_RETRY)
def flaky(marks: str, failures: int) -> str:
    n = bump(marks, "flaky")
    if n <= failures:
        raise ConnectionError(f"flaky failure {n}")
    return f"ok after {n}"


@dn.task(id="flaky-task", retry=dn.Retry(max_attempts=1))
def flaky_task(marks: str, failures: int) -> str:
    return flaky(marks, failures)


def test_step_retries_with_backoff_recorded_in_trace(engine, marks):
    run = flaky_task.trigger(str(marks), 2)
    assert run.result(timeout=60) == "ok after 3"
    spans = run.spans
    delays = sorted((s for s in spans if s["kind"] == "retry_delay"), key=lambda s: s["start_at"])
    assert len(delays) == 2
    d1, d2 = (s["end_at"] - s["start_at"] for s in delays)
    assert 0.18 <= d1 <= 0.6, d1
    assert 0.38 <= d2 <= 0.9, d2
    tries = [s for s in spans if s["kind"] == "step"]
    assert [s["status"] for s in tries] == ["FAILED", "FAILED", "COMPLETED"]
    assert [s["attributes"].get("retry_delay") for s in tries[:2]] == [0.2, 0.4]
    # step retries stay inside the attempt; a delay longer than the grace suspends the run
    assert {a["outcome"] for a in run.attempts} <= {"SUSPENDED", "COMPLETED"}


def test_exhausted_step_retries_fail_the_run_with_traceback(engine, marks):
    run = flaky_task.trigger(str(marks), 10)
    with pytest.raises(dn.RunFailed) as err:
        run.result(timeout=60)
    assert err.value.status == "FAILED"
    assert "ConnectionError" in err.value.error["type"]
    assert "flaky failure 3" in err.value.traceback
    assert "def flaky" in err.value.traceback or "in flaky" in err.value.traceback
    assert count(marks, "flaky") == 3
    errored = [s for s in run.steps if s["status"] == "ERRORED"]
    assert len(errored) == 1 and errored[0]["traceback"]


@dn.task(id="always-fails", retry=dn.Retry(max_attempts=3, min_timeout=0.1, randomize=False))
def always_fails(marks: str, abort: bool):
    bump(marks, "attempt")
    if abort:
        raise dn.AbortRun("the input is invalid; retrying cannot help")
    raise RuntimeError("boom")


def test_task_retries_then_fails(engine, marks):
    run = always_fails.trigger(str(marks), False)
    with pytest.raises(dn.RunFailed, match="boom"):
        run.result(timeout=60)
    assert [a["outcome"] for a in run.attempts] == ["FAILED"] * 3
    assert count(marks, "attempt") == 3


def test_abort_run_fails_at_once(engine, marks):
    run = always_fails.trigger(str(marks), True)
    with pytest.raises(dn.RunFailed, match="retrying cannot help"):
        run.result(timeout=60)
    assert len(run.attempts) == 1
    assert count(marks, "attempt") == 1
