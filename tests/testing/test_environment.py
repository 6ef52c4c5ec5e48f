"""durable_nb.testing.TestEnvironment: users test their own tasks in-process, with
time that skips (a day of sleep, minutes of retry back-off, an approval's timeout)."""

from __future__ import annotations

import sys
import time

import pytest

import durable_nb as dn
from durable_nb.client.client import get_client, use_client
from durable_nb.testing import TestEnvironment

TRIES: dict[str, int] = {}


@dn.step(retry=dn.Retry(max_attempts=3, min_timeout=600, max_timeout=600, randomize=False))
def flaky_fetch(key: str) -> int:
    TRIES[key] = TRIES.get(key, 0) + 1
    if TRIES[key] < 3:
        raise ConnectionError("the model server is busy")
    return 21


@dn.task()
def nightly(key: str) -> dict:
    dn.sleep("1d")
    value = flaky_fetch(key)
    decision = dn.approval("publish", data={"value": value}, timeout="2h")
    return {"value": value * 2, "approved": decision.approved}


@dn.task()
def gated() -> str:
    decision = dn.approval("ship")
    return "shipped" if decision.approved else "held"


@dn.task(retry=dn.Retry(max_attempts=2, min_timeout=3600, max_timeout=3600, randomize=False))
def always_fails() -> None:
    raise ValueError("bad input")


def test_a_day_of_sleep_retries_and_a_timeout_pass_in_no_time():
    TRIES.clear()
    started = time.monotonic()
    with TestEnvironment() as env:
        begin = env.now
        run = nightly.trigger("k1")
        assert run.result(timeout=30) == {"value": 42, "approved": False}
        skipped = env.now - begin
    assert TRIES["k1"] == 3
    assert skipped == pytest.approx(86400 + 2 * 600 + 7200, abs=5), skipped
    assert time.monotonic() - started < 20  # the time skipped is not waited


def test_the_test_decides_an_approval_while_time_stands_still():
    with TestEnvironment() as env:
        run = gated.trigger()
        dn.get_run(run.id)  # the API points at the environment
        for _ in range(200):
            if run.status == "WAITING" or any(w["outcome"] is None for w in run.waits):
                break
            time.sleep(0.01)
        before = env.now
        run.approve("ship", comment="fine")
        assert run.result(timeout=30) == "shipped"
        assert env.now == before, "no timer was due: time did not move"


def test_skip_moves_time_by_hand():
    with TestEnvironment(auto_skip=False) as env:
        run = nightly.trigger("k2")
        with pytest.raises(TimeoutError):
            run.result(timeout=0.5)  # asleep for a day; time does not skip by itself
        env.skip("1d")
        for _ in range(3):
            env.skip("10m")
        env.skip("2h")
        assert run.result(timeout=30)["approved"] is False


def test_a_failing_task_raises_run_failed_after_its_retries():
    with TestEnvironment() as env:
        begin = env.now
        with pytest.raises(dn.RunFailed, match="bad input"):
            always_fails.trigger().result(timeout=30)
        assert env.now - begin == pytest.approx(3600, abs=1)


def test_the_default_client_is_restored_after_the_environment():
    marker = object()
    previous = use_client(marker)  # type: ignore[arg-type]
    try:
        with TestEnvironment() as env:
            assert get_client() is env.client
        assert get_client() is marker
    finally:
        use_client(previous)


@dn.task()
def chatty(n: int) -> int:
    print(f"working on {n}")
    print("a warning", file=sys.stderr)
    return n


def test_what_a_task_prints_reaches_its_run_log_not_the_tests_output(capsys):
    with TestEnvironment():
        run = chatty.trigger(7)
        assert run.result(timeout=30) == 7
        lines = sorted((entry["stream"], entry["line"]) for entry in run.logs)
    assert lines == [("stderr", "a warning"), ("stdout", "working on 7")]
    out = capsys.readouterr()
    assert "working on" not in out.out and "a warning" not in out.err
    print("the test's own output")
    assert capsys.readouterr().out == "the test's own output\n", "streams restored"
