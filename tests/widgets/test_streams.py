"""The kernel's event streams against a real in-process engine: a hub subscription gets the
engine's hello and a run's events on the hub thread, listeners of one run share one
WebSocket (closed with the last), a lost engine is reported as ``disconnected``, and
`Pump` runs its work once at a time, at most once per interval, once after the last kick."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from _support import wait_for

import durable_nb as dn
from durable_nb.client.client import Client
from durable_nb.core.runtime import events_url
from durable_nb.testing import TestEnvironment
from durable_nb.widgets.streams import EventStream, Hub, Pump


@dn.task(id="streams-gate")
def gate() -> str:
    return "yes" if dn.approval("go").approved else "no"


@dn.task(id="streams-quick")
def quick(x: int) -> int:
    return x + 1


# ---------------------------------------------------------------------- helpers

@pytest.fixture
def hub() -> Iterator[Hub]:
    """A hub of the test's own (not the process-wide one), its loop stopped after."""
    h = Hub()
    yield h
    if h.loop is not None:
        h.loop.call_soon_threadsafe(h.loop.stop)


def streams_of(hub: Hub) -> dict:
    """A copy of the hub's streams, read on the hub thread."""
    out: dict = {}
    done = threading.Event()

    def read() -> None:
        out.update(hub._streams)
        done.set()

    hub.call(read)
    assert done.wait(5)
    return out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_hub(hub: Hub, fn) -> None:
    """Run ``fn`` on the hub thread and wait for it."""
    done = threading.Event()
    hub.call(lambda: (fn(), done.set()))
    assert done.wait(5)


# ---------------------------------------------------------------------- event streams

def test_the_url_is_the_events_websocket_of_one_run_or_all():
    client = Client("http://127.0.0.1:9/base/", None, None, autostart=False)
    assert EventStream(client, "run_1").url() == events_url(client.url, "run_1")
    assert EventStream(client, "run_1").url().startswith("ws://127.0.0.1:9/base/")
    assert "run_id=run_1" in EventStream(client, "run_1").url()
    assert "run_id" not in EventStream(client, None).url()


def test_a_subscription_gets_hello_then_a_runs_events_on_the_hub_thread(hub):
    with TestEnvironment() as env:
        seen: list[tuple[str, dict]] = []
        stop = hub.subscribe(env.client, None,
                             lambda e: seen.append((threading.current_thread().name, e)))
        wait_for(lambda: any(e["type"] == "hello" for _, e in seen), 5, "hello")
        hello = next(e for _, e in seen if e["type"] == "hello")
        assert hello["instance"] == env.client.request("GET", "/health")["instance"]
        run = quick.trigger(1)
        assert run.result(timeout=10) == 2
        wait_for(lambda: any(e.get("run_id") == run.id and e.get("status") == "COMPLETED"
                             for _, e in seen), 5, "the run's COMPLETED event")
        assert {name for name, _ in seen} == {"durable-nb-events"}
        stop()


def test_one_runs_listeners_share_a_stream_closed_with_the_last(hub):
    with TestEnvironment() as env:
        run = gate.trigger()
        a: list[dict] = []
        b: list[dict] = []
        stop_a = hub.subscribe(env.client, run.id, a.append)
        stop_b = hub.subscribe(env.client, run.id, b.append)
        wait_for(lambda: a and b, 5, "both listeners connected")
        streams = streams_of(hub)
        assert list(streams) == [(id(env.client), run.id)]
        stream = streams[(id(env.client), run.id)]
        assert stream.listeners == [a.append, b.append]
        run.approve("go")
        assert run.result(timeout=10) == "yes"
        for got in (a, b):
            wait_for(lambda got=got: any(e.get("status") == "COMPLETED" for e in got), 5,
                     "COMPLETED for each listener")
            assert {e.get("run_id") for e in got if e["type"] != "hello"} == {run.id}
        stop_a()
        wait_for(lambda: stream.listeners == [b.append], 5, "one listener left")
        assert not stream.closed
        stop_b()
        wait_for(lambda: stream.closed and not streams_of(hub), 5, "the stream closed")


def test_a_failing_listener_does_not_stop_the_others(hub):
    with TestEnvironment() as env:
        seen: list[dict] = []

        def broken(event: dict) -> None:
            raise RuntimeError("a view bug")

        stops = [hub.subscribe(env.client, None, broken),
                 hub.subscribe(env.client, None, seen.append)]
        run = quick.trigger(2)
        run.result(timeout=10)
        wait_for(lambda: any(e.get("run_id") == run.id for e in seen), 5, "the run's events")
        for stop in stops:
            stop()


def test_a_lost_engine_is_told_as_disconnected(hub, engine):
    # a real engine process: its death closes the WebSocket (TestEnvironment's exit leaves
    # open connections to a stopped loop)
    seen: list[dict] = []
    stop = hub.subscribe(engine.client, None, seen.append)
    wait_for(lambda: seen, 10, "hello")
    assert seen[0]["type"] == "hello"
    engine.kill()
    wait_for(lambda: any(e["type"] == "disconnected" for e in seen), 10, "disconnected")
    assert next(e for e in seen if e["type"] == "disconnected")["error"] == \
        "the event stream closed"
    # then it keeps trying: refused connects are reported too
    wait_for(lambda: sum(e["type"] == "disconnected" for e in seen) >= 2, 10, "a retry")
    stop()
    wait_for(lambda: not streams_of(hub), 5, "the stream gone")


def test_an_engine_that_is_not_there_is_retried_with_back_off(hub):
    client = Client(f"http://127.0.0.1:{closed_port()}/", None, None, autostart=False)
    seen: list[tuple[float, dict]] = []
    stop = hub.subscribe(client, None, lambda e: seen.append((time.monotonic(), e)))
    wait_for(lambda: len(seen) >= 3, 10, "three failed connects")
    stop()
    assert all(e["type"] == "disconnected" for _, e in seen)
    assert "ConnectionRefusedError" in seen[0][1]["error"]
    gaps = [seen[1][0] - seen[0][0], seen[2][0] - seen[1][0]]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.39, gaps  # waits 0.2 s, then 0.4 s
    wait_for(lambda: not streams_of(hub), 5, "the stream gone")


# ---------------------------------------------------------------------- hub

def test_call_runs_on_the_hub_thread_in_order(hub):
    names: list[str] = []
    order: list[int] = []
    for i in range(5):
        hub.call(lambda i=i: (order.append(i), names.append(threading.current_thread().name)))
    on_hub(hub, lambda: None)
    assert order == [0, 1, 2, 3, 4]
    assert set(names) == {"durable-nb-events"}
    loop = hub.loop
    hub.call(lambda: None)
    assert hub.loop is loop  # one thread, one loop


# ---------------------------------------------------------------------- pump

class Work:
    """Blocking work that counts its runs, how many overlap, and when each ran."""

    def __init__(self, fail_first: bool = False):
        self.gate = threading.Event()
        self.gate.set()
        self.runs: list[tuple[float, float]] = []
        self.active = 0
        self.most = 0
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def __call__(self) -> None:
        start = time.monotonic()
        with self._lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            assert self.gate.wait(10)
            if self.fail_first and not self.runs:
                raise RuntimeError("refresh failed")
        finally:
            with self._lock:
                self.active -= 1
                self.runs.append((start, time.monotonic()))


def test_pump_coalesces_kicks_during_a_run_into_one_more(hub):
    work = Work()
    work.gate.clear()
    pump = Pump(work, interval=0.01)
    hub.call(pump.kick)
    wait_for(lambda: work.active == 1, 5, "the first run")
    for _ in range(10):
        hub.call(pump.kick)
    on_hub(hub, lambda: None)
    work.gate.set()
    wait_for(lambda: len(work.runs) == 2 and not pump._running, 5, "one more run")
    assert work.most == 1


def test_pump_runs_at_most_once_per_interval(hub):
    work = Work()
    work.gate.clear()
    pump = Pump(work, interval=0.25)
    hub.call(pump.kick)
    wait_for(lambda: work.active == 1, 5, "the first run")
    on_hub(hub, pump.kick)  # asks again during the first run
    work.gate.set()
    wait_for(lambda: len(work.runs) == 2 and not pump._running, 5, "the second run")
    first_end, second_start = work.runs[0][1], work.runs[1][0]
    assert second_start - first_end >= 0.25


def test_pump_goes_on_after_its_work_fails(hub):
    work = Work(fail_first=True)
    pump = Pump(work, interval=0.01)
    hub.call(pump.kick)
    wait_for(lambda: work.runs and not pump._running, 5, "the failed run")
    hub.call(pump.kick)
    wait_for(lambda: len(work.runs) == 2 and not pump._running, 5, "a run after the failure")
