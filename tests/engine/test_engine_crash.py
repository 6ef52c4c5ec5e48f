"""A killed worker and a killed engine lose nothing: acceptance 1 and 2 of the engine."""

import os
import signal
import time

import pytest
from _support import bump, count, wait_for

import durable_nb as dn


@dn.step()
def numbered(marks: str, i: int) -> int:
    bump(marks, f"step{i}")
    if i == 3 and count_file(marks, "step3") == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies in step 3, first time only
    return i * 10


def count_file(marks, name):
    return os.path.getsize(os.path.join(marks, name))


@dn.task(id="five-steps", retry=dn.Retry(max_attempts=3, min_timeout=0.1, randomize=False))
def five_steps(marks: str) -> list:
    return [numbered(marks, i) for i in range(1, 6)]


def test_killed_worker_resumes_after_recorded_steps(engine, marks):
    run = five_steps.trigger(str(marks))
    assert run.result(timeout=60) == [10, 20, 30, 40, 50]
    assert count(marks, "step1") == 1 and count(marks, "step2") == 1
    assert count(marks, "step3") == 2  # at-least-once: the step in flight ran again
    assert count(marks, "step4") == 1 and count(marks, "step5") == 1
    attempts = run.attempts
    assert [a["outcome"] for a in attempts] == ["CRASHED", "COMPLETED"]
    assert attempts[0]["worker_pid"] != attempts[1]["worker_pid"]
    assert "died" in attempts[0]["error_message"]
    steps = [s for s in run.steps if s["status"] == "COMPLETED"]
    assert sorted(s["step_key"] for s in steps) == [f"numbered#{i}" for i in range(1, 6)]


@dn.step()
def slow_step(marks: str, run_tag: str, i: int) -> str:
    time.sleep(0.15)
    bump(marks, f"{run_tag}-{i}")
    return f"{run_tag}-{i}"


@dn.task(id="slow-five")
def slow_five(marks: str, tag: str) -> list:
    return [slow_step(marks, tag, i) for i in range(5)]


@pytest.mark.slow
def test_killed_engine_recovers_every_run(engine, marks):
    runs = [slow_five.trigger(str(marks), f"r{n}") for n in range(20)]
    # some steps done (some runs mid-way or done, the rest queued), then the kill
    wait_for(lambda: sum(count(marks, f"r{n}-{i}") for n in range(20) for i in range(5)) >= 10,
             30, "ten steps done")
    engine.kill()
    before = {f"r{n}-{i}": count(marks, f"r{n}-{i}") for n in range(20) for i in range(5)}
    assert 0 < sum(before.values()) < 100
    engine.start()
    for n, run in enumerate(runs):
        assert run.result(timeout=120) == [f"r{n}-{i}" for i in range(5)]
    rows = dn.sql(
        "select run_id, step_key, count(*) from steps where status = 'COMPLETED' "
        "group by all having count(*) > 1")
    assert list(rows) == [], "a step was recorded twice"
    recorded = dn.sql("select count(*) from steps where status = 'COMPLETED'")[0][0]
    assert recorded == 100
    for n in range(20):
        twice = [i for i in range(5) if count(marks, f"r{n}-{i}") > 1]
        # only the step in flight at the kill may run again (at-least-once), never more
        assert len(twice) <= 1, (n, twice)
        assert all(count(marks, f"r{n}-{i}") <= 2 for i in range(5))
    interrupted = dn.sql("select count(*) from attempts where outcome = 'INTERRUPTED'")[0][0]
    assert interrupted >= 1
