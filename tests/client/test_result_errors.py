"""``run.result()`` of a failed run raises a RunFailed that is also of the task's exception
type when it can be rebuilt, shows the user's frames only, and keeps its attributes."""

from __future__ import annotations

import base64
import pickle
import traceback
from pathlib import Path

import pytest
from _support import run_cli

import durable_nb as dn
from durable_nb.core.errors import RunFailed

PKG = str(Path(dn.__file__).resolve().parent)


class RateLimited(Exception):
    def __init__(self, retry_after: float):
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class Sealed(Exception):
    """An exception type that no class may derive from."""

    def __init_subclass__(cls, **kwargs):
        raise TypeError("Sealed is final")


@dn.step
def check(x: int) -> int:
    if x < 0:
        raise ValueError("bad input")
    return x


@dn.task(id="result-errors-bad", retry=dn.Retry(max_attempts=1))
def validate(x: int) -> int:
    return check(x) * 2


@dn.task(id="result-errors-limited", retry=dn.Retry(max_attempts=1))
def limited() -> None:
    raise RateLimited(2.5)


@dn.task(id="result-errors-sealed", retry=dn.Retry(max_attempts=1))
def sealed() -> None:
    raise Sealed("no subclass")


def test_the_error_is_both_run_failed_and_the_tasks_type_with_the_users_lines(engine):
    run = validate.trigger(-1)
    with pytest.raises(ValueError, match="bad input") as caught:
        run.result(timeout=60)
    err = caught.value
    assert isinstance(err, RunFailed) and (err.run_id, err.status) == (run.id, "FAILED")
    assert str(err) == f"run {run.id} ended FAILED: ValueError: bad input"
    assert err.error["type"] == "ValueError" and type(err.original) is ValueError
    tb = err.traceback
    assert tb is not None and PKG not in tb
    assert "in validate\n    return check(x) * 2" in tb and 'raise ValueError("bad input")' in tb
    shown = err._render_traceback_()  # what IPython prints
    assert shown[0] == f"RunFailed: run {run.id} ended FAILED" and shown[-1] == (
        "ValueError: bad input")
    assert not any(PKG in line for line in shown)
    printed = "".join(traceback.format_exception(err))  # plain Python: the worker's frames too
    assert "The run's traceback, in its worker:" in printed and "in validate" in printed
    with pytest.raises(RunFailed):
        run.result()


def test_durable_nb_show_prints_the_users_frames(engine):
    run = validate.trigger(-2)
    run.wait(timeout=60)
    env = {"DURABLE_NB_URL": engine.client.url, "DURABLE_NB_TOKEN": engine.client.token}
    out = run_cli("show", run.id, env=env)
    assert out.returncode == 0, out.stderr
    assert "error: ValueError: bad input" in out.stdout
    assert "in validate" in out.stdout and 'raise ValueError("bad input")' in out.stdout
    assert PKG not in out.stdout and "durable_nb/" not in out.stdout


def test_a_user_exception_type_is_rebuilt_by_name(engine):
    run = limited.trigger()
    with pytest.raises(RateLimited) as caught:
        run.result(timeout=60)
    assert isinstance(caught.value, RunFailed) and "retry after 2.5 s" in str(caught.value)
    again = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(again, RateLimited) and again.run_id == run.id


def test_a_type_that_cannot_be_combined_is_the_cause_of_a_plain_run_failed(engine):
    run = sealed.trigger()
    with pytest.raises(RunFailed) as caught:
        run.result(timeout=60)
    err = caught.value
    assert not isinstance(err, Sealed) and type(err) is RunFailed
    assert isinstance(err.__cause__, Sealed) and err.original is err.__cause__
    assert "raise Sealed" in (err.traceback or "")


def test_the_pickled_exception_when_sent_keeps_its_attributes():
    exc_b64 = base64.b64encode(pickle.dumps(RateLimited(9.0))).decode()
    err = RunFailed.from_error("run_1", "FAILED", {
        "type": f"{__name__}.RateLimited", "message": "retry after 9.0 s", "exc_b64": exc_b64})
    assert isinstance(err, RateLimited) and err.retry_after == 9.0
    assert err.original is not None and err.original.retry_after == 9.0  # type: ignore[attr-defined]


def test_without_an_error_record_or_a_known_type_it_is_plain_run_failed():
    for error in (None, {"type": "no.such.Module.Error", "message": "m"},
                  {"type": "durable_nb.core.errors.RunFailed", "message": "child failed"}):
        err = RunFailed.from_error("run_2", "CANCELED", error)
        assert type(err) is RunFailed and err.original is None and err.__cause__ is None
    crashed = RunFailed.from_error("run_3", "CRASHED", {"type": "WorkerCrashed",
                                                        "message": "exit 9", "traceback": None})
    assert crashed._render_traceback_() == [
        "RunFailed: run run_3 ended CRASHED: WorkerCrashed: exit 9"]
