"""A run view's data against a real engine: `fetch_run` reads a run with its steps, waits,
logs and user-only tracebacks (the newest steps of a big run), and `RunFeed` follows the
run's events to its end, appends log lines in place, reports a lost engine, and stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from _support import wait_for

import durable_nb as dn
from durable_nb.core.tracebacks import user_traceback
from durable_nb.testing import TestEnvironment
from durable_nb.widgets import feed as feed_mod
from durable_nb.widgets.feed import RunFeed, fetch_run
from durable_nb.widgets.streams import HUB

# ---------------------------------------------------------------------- tasks (run in workers)


@dn.step
def add_one(x: int) -> int:
    return x + 1


@dn.task(id="feed-gate")
def gate(x: int) -> dict:
    y = add_one(x)
    d = dn.approval("ship", data={"y": y})
    return {"y": y, "approved": d.approved}


@dn.task(id="feed-chain")
def chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = add_one(x)
    return x


@dn.step
def explode(msg: str) -> None:
    raise ValueError(msg)


@dn.task(id="feed-fails", retry=dn.Retry(max_attempts=1))
def fails(msg: str) -> None:
    explode(msg)


@dn.task(id="feed-talks")
def talks() -> bool:
    print("first", flush=True)
    d = dn.approval("more")
    print("second", flush=True)
    print("third", flush=True)
    return d.approved


# ---------------------------------------------------------------------- helpers

@pytest.fixture
def env() -> Iterator[TestEnvironment]:
    with TestEnvironment() as e:
        yield e


@pytest.fixture
def feeds() -> Iterator[list[RunFeed]]:
    """Feeds a test starts, stopped after it (so no stream outlives its engine)."""
    made: list[RunFeed] = []
    yield made
    for f in made:
        f.stop()


def pending(run: dn.RunHandle) -> dn.RunHandle:
    wait_for(lambda: any(w["outcome"] is None for w in run.waits), 10, "a pending approval")
    return run


def settled(feed: RunFeed) -> None:
    """Wait until the hub has run what was asked of it and the feed's pump is idle."""
    done = threading.Event()
    HUB.call(done.set)
    assert done.wait(5)
    wait_for(lambda: not feed._pump._running, 5, "the pump idle")


class Seen:
    """What a feed published and noticed."""

    def __init__(self) -> None:
        self.data: list[dict] = []
        self.notices: list[str] = []

    def last(self, pred) -> bool:
        return bool(self.data) and bool(pred(self.data[-1]))


def follow(run: dn.RunHandle, feeds: list[RunFeed], logs: int = feed_mod.LOG_TAIL):
    seen = Seen()
    f = RunFeed(run, seen.data.append, seen.notices.append, logs=logs)
    feeds.append(f)
    return f, seen


# ---------------------------------------------------------------------- fetch_run

def test_fetch_run_reads_the_run_with_its_steps_and_waits(env):
    run = pending(gate.trigger(1))
    before = time.time()
    data = fetch_run(env.client, run.id)
    assert data["id"] == run.id and data["task_id"] == "feed-gate"
    assert data["status"] in ("EXECUTING", "WAITING")
    assert [(s["name"], s["status"]) for s in data["steps"]] == [("add_one", "COMPLETED")]
    assert [(w["name"], w["preview"], w["outcome"]) for w in data["waits"]] == \
        [("ship", {"y": 2}, None)]
    assert data["checkpoints"] == []  # a task run, not a cell
    assert data["logs"] == []  # (in-process workers leave stdout alone)
    assert "steps_omitted" not in data
    assert before <= data["now"] <= time.time()
    assert fetch_run(env.client, run.id, logs=0)["logs"] == []
    run.approve("ship")
    assert run.result(timeout=10) == {"y": 2, "approved": True}
    done = fetch_run(env.client, run.id)
    assert done["status"] == "COMPLETED" and done["waits"][0]["outcome"] == "approved"


def test_fetch_run_keeps_the_newest_steps_of_a_big_run(env, monkeypatch):
    monkeypatch.setattr(feed_mod, "MAX_STEP_ROWS", 3)
    run = chain.trigger(5)
    assert run.result(timeout=10) == 5
    every = env.client.request("GET", f"/runs/{run.id}")["steps"]
    data = fetch_run(env.client, run.id)
    assert data["steps_omitted"] == 2
    assert [s["step_key"] for s in data["steps"]] == [s["step_key"] for s in every[-3:]]
    # every step still counts, grouped by name (the view lists a name's steps a page at a time)
    [group] = data["step_groups"]
    assert (group["steps"], group["completed"]) == (5, 5)
    assert "step_groups" not in fetch_run(env.client, gate.trigger(1).id)


def test_fetch_run_shows_only_the_users_frames_of_a_traceback(env):
    run = fails.trigger("no such document")
    with pytest.raises(dn.RunFailed):
        run.result(timeout=10)
    raw = env.client.request("GET", f"/runs/{run.id}")
    data = fetch_run(env.client, run.id)
    raw_step, step = raw["steps"][0], data["steps"][0]
    assert "durable_nb" not in raw_step["traceback"].replace(__file__, "")
    assert step["traceback"] == user_traceback(raw_step["traceback"])
    assert "durable_nb" not in step["traceback"].replace(__file__, "")
    assert "explode" in step["traceback"] and "no such document" in step["traceback"]
    assert data["error"]["traceback"] == user_traceback(raw["error"]["traceback"])
    assert data["attempt_list"][0]["traceback"] == \
        user_traceback(raw["attempt_list"][0]["traceback"])


def test_fetch_run_of_an_unknown_run_raises(env):
    with pytest.raises(dn.RunNotFound):
        fetch_run(env.client, "run_nosuchrun")


# ---------------------------------------------------------------------- RunFeed

def test_feed_follows_the_run_to_its_end_then_stops_listening(env, feeds, monkeypatch):
    monkeypatch.setattr(feed_mod, "FOLLOW_AFTER_END", 0.1)
    run = pending(gate.trigger(3))
    f, seen = follow(run, feeds)
    loaded = f.load()
    assert seen.data == [loaded] and f.data is loaded
    f.start()
    wait_for(lambda: seen.notices == [""], 5, "connected (the engine's hello)")
    run.approve("ship", comment="ok")
    assert run.result(timeout=10) == {"y": 4, "approved": True}
    wait_for(lambda: seen.last(lambda d: d["status"] == "COMPLETED"), 5, "COMPLETED published")
    final = seen.data[-1]
    assert final["id"] == run.id and final["waits"][0]["outcome"] == "approved"
    assert final["waits"][0]["comment"] == "ok"
    # the run stayed finished: the feed stops following it (it was not stopped)
    wait_for(lambda: f._unsubscribe is None, 5, "the feed unsubscribed")
    assert not f.stopped


def test_seed_does_not_publish_and_kick_republishes(env, feeds):
    run = chain.trigger(2)
    run.result(timeout=10)
    f, seen = follow(run, feeds)
    data = fetch_run(env.client, run.id)
    f.seed(data)
    assert seen.data == [] and f.data is data
    f.kick()
    wait_for(lambda: seen.data, 5, "a publication")
    settled(f)
    again = seen.data[-1]
    assert {k: v for k, v in again.items() if k != "now"} == \
        {k: v for k, v in data.items() if k != "now"}
    assert again["now"] >= data["now"]
    # bigger runs are published less often
    assert f._pump.interval == pytest.approx(0.05 + 2 / 2000)


def test_a_stopped_feed_publishes_nothing(env, feeds):
    run = pending(gate.trigger(5))
    f, seen = follow(run, feeds)
    f.load()
    f.start()
    wait_for(lambda: seen.notices == [""], 5, "connected")
    settled(f)
    f.stop()
    assert f.stopped and f._unsubscribe is None
    count = len(seen.data)
    run.approve("ship")
    run.result(timeout=10)
    f.kick()
    f.start()  # a stopped feed does not start again
    settled(f)
    assert len(seen.data) == count and f._unsubscribe is None


def test_feed_appends_log_lines_and_keeps_its_tail(engine, feeds):
    # a real engine: its worker processes send what a task prints to the run's logs
    # (TestEnvironment's in-process workers leave stdout alone)
    run = pending(talks.trigger())
    f, seen = follow(run, feeds, logs=2)
    first = f.load()
    assert [x["line"] for x in first["logs"]] == ["first"]
    f.start()
    wait_for(lambda: seen.notices == [""], 10, "connected")
    run.approve("more")
    assert run.result(timeout=30) is True
    wait_for(lambda: seen.last(lambda d: d["status"] == "COMPLETED"
                               and [x["line"] for x in d["logs"]] == ["second", "third"]),
             10, "the last two lines and COMPLETED")
    assert all(x["stream"] == "stdout" for x in seen.data[-1]["logs"])


def test_feed_notices_a_lost_engine(engine, feeds):
    # a real engine process: its death closes the events WebSocket
    run = pending(gate.trigger(7))
    f, seen = follow(run, feeds)
    f.load()
    f.start()
    wait_for(lambda: seen.notices == [""], 10, "connected")
    engine.kill()
    wait_for(lambda: any(n.startswith("Lost the connection") for n in seen.notices), 10,
             "the lost connection noticed")
    lost = next(n for n in seen.notices if n.startswith("Lost the connection"))
    assert "the event stream closed" in lost
