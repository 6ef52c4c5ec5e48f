"""``trigger(debounce=dn.Debounce(...))`` against a real engine: triggers with one key
collapse into one run (trailing: the last payload; leading: the first, at once), bad
values are refused at the client and at the API with what to do, and a killed engine
keeps the window."""

from __future__ import annotations

import base64
import time

import pytest

import durable_nb as dn
from durable_nb.core import serial as _serial


@dn.task
def echo(x):
    return x


@dn.task(retry=dn.Retry(max_attempts=1))
def debounces_inside():
    return echo.trigger(1, debounce=dn.Debounce("inner", delay=1)).id


def _runs_of(task_id: str) -> list[dict]:
    return dn.runs(task=task_id, limit=100)


def test_trailing_triggers_become_one_run_with_the_last_payload(engine):
    handles = [echo.trigger(i, debounce=dn.Debounce("user-1", delay=0.5)) for i in range(3)]
    assert len({h.id for h in handles}) == 1
    assert handles[0].status == "DELAYED"
    assert handles[0].result(timeout=30) == 2
    info = handles[0].info()
    assert info["debounce_key"] == "user-1" and info["started_at"] >= info["debounce_until"]
    other = echo.trigger(9, debounce=dn.Debounce("user-2", delay=0.5))
    assert other.id != handles[0].id and other.result(timeout=30) == 9
    assert len(_runs_of("echo")) == 2


def test_leading_runs_the_first_at_once_and_swallows_the_rest_of_the_window(engine):
    first = echo.trigger("a", debounce=dn.Debounce("k", delay=0.5, mode="leading"))
    assert first.result(timeout=30) == "a"
    same = echo.trigger("b", debounce=dn.Debounce("k", delay=0.5, mode="leading"))
    assert same.id == first.id, "a finished run still answers within its window"
    time.sleep(0.6)
    later = echo.trigger("c", debounce=dn.Debounce("k", delay=0.5, mode="leading"))
    assert later.id != first.id and later.result(timeout=30) == "c"


@pytest.mark.parametrize(("args", "message"), [
    (("", 1), "non-empty text"),
    (("k" * 201, 1), "at most 200"),
    (("k", "2d"), "at most 1 day"),
    (("k", 0), "above 0"),
    (("k", "soon"), "not a duration"),
    (("k", 1, "both"), "'trailing' or 'leading'"),
])
def test_a_bad_debounce_is_refused_where_it_is_made(args, message):
    with pytest.raises(ValueError, match=message):
        dn.Debounce(*args)


def test_debounce_with_idempotency_key_or_delay_is_refused(engine):
    d = dn.Debounce("k", delay=1)
    with pytest.raises(ValueError, match="cannot be combined"):
        echo.trigger(1, debounce=d, idempotency_key="x")
    with pytest.raises(ValueError, match="cannot be combined"):
        echo.trigger(1, debounce=d, delay=2)
    with pytest.raises(ValueError, match="must be a dn.Debounce"):
        echo.trigger(1, debounce={"key": "k", "delay": 1})
    assert _runs_of("echo") == []


@pytest.mark.parametrize(("debounce", "extra", "message"), [
    ({"key": "k", "delay": 0}, {}, "field 'debounce.delay' must be greater than 0"),
    ({"key": "k", "delay": 90000}, {}, "field 'debounce.delay'"),
    ({"key": "k", "delay": 1, "mode": "sideways"}, {}, "field 'debounce.mode' must be one of"),
    ({"delay": 1}, {}, "field 'debounce.key' is required"),
    ({"key": "  ", "delay": 1}, {}, "debounce key must be non-empty text"),
    ({"key": "k", "delay": 1}, {"idempotency_key": "i"}, "cannot be combined"),
    ({"key": "k", "delay": 1}, {"delay": 5}, "cannot be combined"),
    (None, {"traceparent": "00-xyz"}, "field 'traceparent'"),
    (None, {"traceparent": f"00-{'0' * 32}-{'a' * 16}-01"}, "all-zero"),
])
def test_the_api_answers_400_saying_what_is_wrong(engine, debounce, extra, message):
    body = {"task_hash": echo._register(engine.client),
            "payload_b64": base64.b64encode(_serial.dumps(((1,), {}), "p")).decode(),
            "debounce": debounce, **extra}
    with pytest.raises(dn.ApiError) as exc:
        engine.client.request("POST", "/runs", body)
    assert exc.value.status == 400 and message in str(exc.value), exc.value
    assert _runs_of("echo") == []


def test_inside_a_run_debounce_is_a_clear_error(engine):
    run = debounces_inside.trigger()
    with pytest.raises(dn.RunFailed, match="for triggers from outside a run"):
        run.result(timeout=60)


@pytest.mark.slow
def test_a_killed_engine_keeps_the_trailing_window_and_the_last_payload(engine):
    d = dn.Debounce("restart", delay=6)  # longer than a restart takes
    first = echo.trigger("before", debounce=d)
    engine.kill()
    engine.start()
    again = echo.trigger("after", debounce=d)
    assert again.id == first.id, "the window outlived the engine"
    assert again.result(timeout=60) == "after"
    assert len(_runs_of("echo")) == 1
