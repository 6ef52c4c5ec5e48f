"""The parts of ``%durable debug`` that need no kernel: which step failed, finding a step's
function from a task's code (globals, modules, closures, partials, classes), the frames
shown, an async step called to its end, and the replay of a task between its steps."""

from __future__ import annotations

import functools
import types

import pytest

import durable_nb as dn
from durable_nb.client.replay import ReplayContext, ReplayEnd, StepCallContext, replay_call
from durable_nb.core import serial as _serial
from durable_nb.ipython.debug import call_here, failed_step, find_step, user_frames


@dn.step
def fetch(x):
    return x + 1


@dn.step(name="custom-name")
def renamed(x):
    raise KeyError(x)


@dn.step
async def fetch_async(x):
    raise ValueError(f"async {x}")


helpers = types.ModuleType("helpers")
helpers.fetch = fetch  # type: ignore[attr-defined]


def via_module(x):
    return helpers.fetch(x)


def make_closure():
    step = renamed

    def inner(x):
        return step(x)

    return inner


class Jobs:
    @staticmethod
    def run(x):
        return fetch_async(x)


def test_the_failed_step_is_the_newest_whose_last_try_did_not_complete():
    rows = [{"step_key": "a#1", "status": "COMPLETED"}, {"step_key": "b#1", "status": "FAILED"},
            {"step_key": "b#1", "status": "COMPLETED"}, {"step_key": "c#1", "status": "FAILED"},
            {"step_key": "c#1", "status": "ERRORED"}, {"step_key": "d#1", "status": "COMPLETED"}]
    assert failed_step(rows) == "c#1"
    assert failed_step(rows[:3]) is None
    assert failed_step([]) is None


def test_a_step_is_found_through_modules_closures_partials_and_classes():
    assert find_step([via_module], "fetch") is fetch
    assert find_step([make_closure()], "custom-name") is renamed
    assert find_step([functools.partial(make_closure(), 1)], "custom-name") is renamed
    assert find_step([Jobs], "fetch_async") is fetch_async
    assert find_step([via_module], "nope") is None
    assert fetch.__wrapped__(1) == 2, "the plain function is what debug calls"


def test_the_failure_is_shown_from_the_users_frame_and_raised_as_it_is():
    class Shell:
        class InteractiveTB:
            @staticmethod
            def structured_traceback(etype, exc, tb):
                return [tb.tb_frame.f_code.co_name]

    with pytest.raises(KeyError) as info:
        call_here(Shell(), functools.partial(renamed.__wrapped__, 5))
    assert info.value._render_traceback_() == ["renamed"]
    assert "_render_traceback_" not in info.value.__dict__, "shown that way once"
    tb = info.value.__traceback__
    assert user_frames(tb) is tb, "the caller's frame here is the test's own"
    with pytest.raises(ValueError, match="async 7"):  # on a thread with its own loop
        call_here(Shell(), functools.partial(fetch_async.__wrapped__, 7))


def test_a_replay_returns_recorded_steps_and_stops_where_the_run_never_went():
    calls = []

    @dn.step(name="counted")
    def counted(x):
        calls.append(x)
        return x * 10

    def body(n):
        first = counted(n)
        decision = dn.approval("ok")
        second = counted(first)
        return first, decision.approved, second

    steps = {"counted#1": ("ok", _serial.dumps(99, "x"))}
    waits = {"approval:ok#1": {"outcome": "approved", "comment": None, "by": "ann", "at": 1.0}}
    ctx = ReplayContext("run_x", steps, waits)
    with pytest.raises(ReplayEnd, match="reached step counted#2, which the run never recorded"):
        replay_call(ctx, body, (1,), {})
    assert calls == [], "a recorded step returns its output without running"
    steps["counted#2"] = ("ok", _serial.dumps(7, "x"))
    assert replay_call(ReplayContext("run_x", steps, waits), body, (1,), {}) == (99, True, 7)
    with pytest.raises(ReplayEnd, match="the approval wait approval:ok#1"):
        replay_call(ReplayContext("run_x", steps, {}), body, (1,), {})


def test_a_step_called_again_has_its_idempotency_key_and_calls_its_steps_plainly():
    @dn.step(name="inner")
    def inner(x):
        return x + 1

    @dn.step(name="outer")
    def outer(x):
        return dn.idempotency_key(), inner(x)

    ctx = StepCallContext("run_x", "outer#3")
    assert replay_call(ctx, outer.__wrapped__, (1,), {}) == ("run_x:outer#3", 2)

    def asks():
        return dn.approval("ship")

    with pytest.raises(ReplayEnd, match="the approval wait approval:ship#1"):
        replay_call(StepCallContext("run_x", "asks#1"), asks, (), {})
