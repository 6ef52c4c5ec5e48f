"""Schedules against a real engine (``durable-nb serve`` with worker processes): an
``every="1s"`` schedule across a SIGKILL of the engine loses and doubles no tick;
``dn.schedules()``, pause, resume and delete; ``@dn.task(schedule=...)``, which a worker
importing the module never defines; mistakes refused before and at the API."""

from __future__ import annotations

import base64
import time

import pytest
from _support import wait_for

import durable_nb as dn


@dn.task(id="sched-beat")
def beat() -> str:
    return "beat"


@dn.task(id="sched-add")
def add(a: int, b: int = 0) -> int:
    return a + b


def _ticks(client, sid: str) -> list[float]:
    out = client.request("GET", f"/schedules/{sid}/runs", query={"limit": 10_000})
    return sorted(r["schedule_tick"] for r in out["runs"])


@pytest.mark.slow
def test_every_second_across_an_engine_kill_loses_and_doubles_no_tick(engine):
    s = dn.schedule(beat, every="1s", catch_up="all", overlap="allow", id="every-second")
    assert s.every == 1 and s.next_tick == pytest.approx(time.time(), abs=1.5)
    wait_for(lambda: len(_ticks(engine.client, s.id)) >= 3, 20, "three ticks")
    engine.kill()  # SIGKILL: whatever was journaled is all there is
    time.sleep(2.5)  # ticks fall while no engine runs
    client = engine.start()
    down_ticks = wait_for(lambda: len(_ticks(client, s.id)) >= 8 and _ticks(client, s.id), 30,
                          "the missed ticks caught up and more")
    (again,) = [x for x in dn.schedules() if x.id == "every-second"]
    again.delete()
    ticks = _ticks(client, s.id)
    assert ticks == sorted(set(ticks)), "a tick fired twice"
    assert ticks == [ticks[0] + i for i in range(len(ticks))], f"a tick is missing: {ticks}"
    assert len(ticks) >= len(down_ticks)
    runs = again.runs(limit=3)
    assert runs[0].info()["schedule_id"] == "every-second"
    assert runs[0].result(timeout=30) == "beat"


def test_list_pause_resume_delete(engine):
    s = dn.schedule(add, cron="0 9 * * 1-5", timezone="Europe/Paris", args=(1,),
                    kwargs={"b": 2}, id="weekday-add")
    assert (s.cron, s.timezone, s.overlap, s.catch_up) == ("0 9 * * 1-5", "Europe/Paris",
                                                           "skip", "once")
    assert s.next_tick > time.time() and not s.paused
    assert "cron '0 9 * * 1-5' Europe/Paris" in repr(s)
    assert [x.id for x in dn.schedules()] == ["weekday-add"]
    assert s.pause().paused and s.next_tick is None
    assert "paused" in repr(s)
    assert dn.schedules()[0].paused
    assert not s.resume().paused and s.next_tick is not None
    info = s.info()
    assert info["active_runs"] == 0 and info["task_id"] == "sched-add"
    again = dn.schedule(add, cron="0 9 * * 1-5", timezone="Europe/Paris", args=(1,),
                        kwargs={"b": 2}, id="weekday-add")
    assert again.info()["updated_at"] == info["updated_at"], "the same again changes nothing"
    s.delete()
    assert dn.schedules() == []
    with pytest.raises(dn.ApiError, match="no schedule 'weekday-add'"):
        s.refresh()


def test_a_scheduled_run_gets_the_arguments(engine):
    s = dn.schedule(add, every=1, args=(40,), kwargs={"b": 2}, id="add-every")
    run = wait_for(lambda: s.runs(), 20, "a run")[0]
    assert run.result(timeout=30) == 42
    s.delete()


def test_the_task_decorator_defines_its_schedule(engine):
    @dn.task(id="decorated-report", schedule="@daily")
    def report() -> int:
        return 1

    (s,) = dn.schedules()
    assert (s.id, s.task_id, s.cron, s.every) == ("decorated-report", "decorated-report",
                                                  "0 0 * * *", None)

    @dn.task(id="decorated-often", schedule={"every": "15m", "overlap": "queue"})
    def often() -> int:
        return 2

    often_s = [x for x in dn.schedules() if x.id == "decorated-often"][0]
    assert often_s.every == 900 and often_s.overlap == "queue"
    assert report() == 1, "the task stays callable"
    with pytest.raises(ValueError, match="schedule= is a cron expression"):
        dn.task(schedule=True)(lambda: None)
    with pytest.raises(ValueError, match="not when"):
        dn.task(schedule={"when": "now"})(lambda: None)


@dn.task(id="sched-import-in-worker")
def import_scheduled_module(folder: str) -> str:
    import importlib
    import sys

    sys.path.insert(0, folder)
    module = importlib.import_module("scheduled_in_worker")
    return module.job.id


def test_a_worker_importing_a_scheduled_task_defines_nothing(engine, tmp_path):
    (tmp_path / "scheduled_in_worker.py").write_text(
        "import durable_nb as dn\n\n"
        "@dn.task(id='from-a-worker', schedule='* * * * *')\n"
        "def job():\n    return 1\n")
    run = import_scheduled_module.trigger(str(tmp_path))
    assert run.result(timeout=60) == "from-a-worker"
    assert dn.schedules() == []


def test_mistakes_are_refused_before_sending_and_at_the_api(engine):
    for kwargs, message in [({"cron": "61 * * * *"}, "bad cron"), ({}, "exactly one"),
                            ({"cron": "* * * * *", "every": "1m"}, "got both"),
                            ({"every": "500ms"}, "at least 1 s"),
                            ({"every": 60, "timezone": "Nowhere/City"}, "unknown timezone"),
                            ({"every": 60, "overlap": "later"}, "overlap must be one of"),
                            ({"every": 60, "catch_up": "yes"}, "catch_up must be one of"),
                            ({"every": 60, "id": "a/b"}, "without '/'")]:
        with pytest.raises(ValueError, match=message):
            dn.schedule(beat, **kwargs)
    c = engine.client
    h = beat._register(c)
    body = {"task_hash": h, "payload_b64": base64.b64encode(b"x").decode()}
    for extra, field in [({"cron": "0 9 * *"}, "cron"), ({"every": 0.2}, "every"),
                         ({"every": "soon"}, "every"), ({}, "cron"),
                         ({"every": 60, "timezone": "Mars/Base"}, "timezone"),
                         ({"every": 60, "overlap": "later"}, "overlap")]:
        with pytest.raises(dn.ApiError) as err:
            c.request("PUT", "/schedules/x", {**body, **extra})
        assert err.value.status == 400 and field in str(err.value), (extra, err.value)
    with pytest.raises(dn.ApiError) as err:
        c.request("PUT", "/schedules/x", {**body, "task_hash": "f" * 64, "every": 60})
    assert err.value.status == 409
    for method, path in [("GET", "/schedules/none"), ("DELETE", "/schedules/none"),
                         ("POST", "/schedules/none/pause"), ("GET", "/schedules/none/runs")]:
        with pytest.raises(dn.ApiError) as err:
            c.request(method, path, {} if method == "POST" else None)
        assert err.value.status == 404 and "no schedule 'none'" in str(err.value)
    assert dn.schedules() == []


def test_schedules_tick_with_the_test_environments_clock():
    from durable_nb.testing import TestEnvironment

    with TestEnvironment() as env:
        s = dn.schedule(add, every="1h", args=(2,), kwargs={"b": 3}, overlap="allow")
        env.skip("3h")
        runs = s.runs()
        assert len(runs) == 3 and [r.result(timeout=10) for r in runs] == [5, 5, 5]
        ticks = [r.info()["schedule_tick"] for r in runs]
        assert ticks == sorted(ticks, reverse=True) and ticks[0] - ticks[2] == 7200
        assert s.refresh().last_tick == ticks[0]
