"""Many clients at once: a crowd on the Unix socket, one client shared by threads across an
engine restart, and processes racing to start the engine of one database."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest
from _support import wait_for

import durable_nb as dn
from durable_nb.client.client import Client
from durable_nb.core.paths import runtime_file


def test_250_clients_connect_to_the_socket_at_once(engine):
    """The engine is paused (SIGSTOP) while 250 clients connect, as a busy engine would
    be: they queue, and are all answered once it goes on."""
    path = engine.client.socket_path
    assert path
    n = 250
    me = psutil.Process()
    gc.collect()  # clients of earlier tests' engines close their sockets now, not mid-count
    before = len(me.net_connections(kind="unix"))
    errors: list[str] = []
    answers: list[int] = []

    def one() -> None:
        c = Client(engine.client.url, engine.client.token, socket_path=path)
        try:
            answers.append(c.request("GET", "/health", timeout=60)["pid"])
        except Exception as exc:  # collected: the test shows every failure
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            c._close()

    os.kill(engine.pid, signal.SIGSTOP)
    try:
        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        wait_for(lambda: len(me.net_connections(kind="unix")) - before + len(errors) >= n,
                 what="every client to connect (or fail)")
    finally:
        os.kill(engine.pid, signal.SIGCONT)
    for t in threads:
        t.join(60)
    assert not errors, f"{len(errors)} failed, e.g. {errors[:3]}"
    assert answers == [engine.pid] * n


@pytest.mark.slow
def test_a_client_shared_by_threads_follows_an_engine_restart(engine):
    """Threads keep calling through one client while its engine restarts: each call
    succeeds or raises a durable_nb error that says so, and all succeed again after."""
    client = engine.client
    stop = threading.Event()
    errors: list[str] = []
    after: dict[int, int] = {}
    restarted = threading.Event()

    def hammer(i: int) -> None:
        while not stop.is_set():
            try:
                pid = client.request("GET", "/health", timeout=10)["pid"]
                assert client.max_payload > 0  # cached per engine, refetched after a restart
                if restarted.is_set() and pid == engine.pid:
                    after[i] = after.get(i, 0) + 1
            except dn.DurableError:
                pass  # the engine is away: a clear error, retried
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(16)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads interleave often: races show up in a short test
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            wait_for(lambda: client.request("GET", "/health")["pid"] == engine.pid,
                     what="calls to the engine")
            engine.stop()
            engine.start()
            restarted.set()
            wait_for(lambda: len(after) == len(threads), timeout=30,
                     what="every thread to reach the restarted engine")
            after.clear()
            restarted.clear()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        sys.setswitchinterval(interval)
    assert not errors, errors[:5]


CONNECT = """
import json, sys, time
import durable_nb as dn
go = float(sys.argv[2])
while time.time() < go:
    time.sleep(0.001)
c = dn.connect(db=sys.argv[1])
print(json.dumps({"pid": c.health()["pid"]}))
"""


@pytest.mark.slow
def test_processes_connecting_at_once_share_one_new_engine(tmp_path):
    import time

    db = tmp_path / "race.duckdb"
    go = time.time() + 1.5  # every process is up and waits for the same instant
    procs = [subprocess.Popen([sys.executable, "-c", CONNECT, str(db), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(5)]
    outs = [p.communicate(timeout=120) for p in procs]
    try:
        failed = [err.strip().splitlines()[-1:] for p, (_, err) in zip(procs, outs, strict=True)
                  if p.returncode != 0]
        assert not failed, failed
        pids = {json.loads(out)["pid"] for out, _ in outs}
        info = json.loads(runtime_file(db).read_text())
        assert pids == {info["pid"]}
    finally:
        info = json.loads(runtime_file(db).read_text()) if runtime_file(db).exists() else None
        if info:
            os.kill(info["pid"], 15)
            wait_for(lambda: not runtime_file(db).exists(), what="the engine to stop")
