"""The test hosts of tests/hosts.py: a Dask cluster across them shares no files or localhost.

Tests that run durable_nb across machines rely on these guarantees, so they are checked
here once with Dask alone: a scheduler and two workers, each in its own network namespace
with the test's directory hidden, reached from the test's namespace by private address only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _support import wait_for
from hosts import TestHosts, hosts_unavailable

SCHEDULER_PORT = 8786  # free on any host: each host has its own namespace


def _require_hosts() -> None:
    reason = hosts_unavailable()
    if reason is not None:
        pytest.skip(reason)


def _our_netns() -> list[str]:
    """Namespaces this process made that still exist (must be none outside a TestHosts)."""
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True).stdout
    prefix = f"dn{os.getpid()}-"
    return [n["name"] for n in json.loads(out or "[]") if n["name"].startswith(prefix)]


def test_hosts_unavailable_is_none_here_or_says_why():
    """The probe makes and removes real namespaces; where it cannot, it gives a reason."""
    reason = hosts_unavailable()
    if reason is not None:
        assert reason.strip()
        pytest.skip(reason)
    assert _our_netns() == []


def test_test_hosts_addresses_files_and_cleanup(tmp_path):
    """Addresses are private and distinct; a hidden directory is empty and read-only, a
    private one empty and the host's own; nothing is left behind."""
    _require_hosts()
    hidden, private = tmp_path / "hidden", tmp_path / "private"
    hidden.mkdir()
    private.mkdir()
    (hidden / "secret").write_text("x")
    (private / "mine").write_text("x")
    with TestHosts(["h1", "h2"]) as hosts:
        addrs = [hosts.bridge_addr, hosts.addr("h1"), hosts.addr("h2")]
        assert len(set(addrs)) == 3 and all(a.startswith("10.213.") for a in addrs)
        assert "secret" in hosts.run("h1", ["ls", str(hidden)]).stdout
        script = f"ls -A {hidden} {private}; touch {private}/theirs && ls -A {private}; " \
                 f"touch {hidden}/x || echo read-only"
        seen = hosts.run("h1", ["sh", "-c", script], hide=[hidden], private=[private])
        assert seen.stdout.split() == [f"{hidden}:", f"{private}:", "theirs", "read-only"]
        assert sorted(p.name for p in tmp_path.rglob("*")) == \
            ["hidden", "mine", "private", "secret"]
        assert len(_our_netns()) == 2
    assert _our_netns() == []


def _make_probe() -> Callable[..., dict[str, Any]]:
    """The function run on each Dask worker, made locally so that it travels by value
    (the workers cannot import this test module)."""

    def probe(marker: str, local_port: int, bridge: str, bridge_port: int) -> dict[str, Any]:
        """Run on a Dask worker: where it is, what it sees of the test's files and sockets."""
        import os
        import socket

        from distributed import get_worker

        def reachable(host: str, port: int) -> bool:
            try:
                socket.create_connection((host, port), timeout=5).close()
                return True
            except OSError:
                return False

        try:
            with open(os.path.join(os.path.dirname(marker), "written"), "w"):
                pass
            writable = True
        except OSError:
            writable = False
        return {"worker": get_worker().address, "pid": os.getpid(),
                "marker": os.path.exists(marker), "writable": writable,
                "localhost": reachable("127.0.0.1", local_port),
                "bridge": reachable(bridge, bridge_port)}

    return probe


def _dask(hosts: TestHosts, name: str, args: list[str], logs: Path, hidden: Path,
          ) -> subprocess.Popen:
    with open(logs / f"{name}.log", "wb") as log:
        return hosts.popen(name, [sys.executable, "-m", *args], hide=[hidden], cwd="/",
                           stdout=log, stderr=subprocess.STDOUT)


def _start_cluster(hosts: TestHosts, logs: Path, hidden: Path,
                   ) -> tuple[str, Callable[[], bool]]:
    """Start the scheduler on "sched" and a worker on "w1" and "w2", none seeing ``hidden``;
    return the scheduler's address, once it accepts connections, and a liveness check."""
    sched = f"tcp://{hosts.addr('sched')}:{SCHEDULER_PORT}"
    procs = {"sched": _dask(hosts, "sched", [
        "distributed.cli.dask_scheduler", "--host", hosts.addr("sched"),
        "--port", str(SCHEDULER_PORT), "--no-dashboard"], logs, hidden)}
    for w in ("w1", "w2"):
        procs[w] = _dask(hosts, w, [
            "distributed.cli.dask_worker", sched, "--host", hosts.addr(w), "--name", w,
            "--nworkers", "1", "--nthreads", "1", "--no-dashboard"], logs, hidden)

    def alive() -> bool:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}: "
                                     f"{(logs / f'{name}.log').read_text()[-3000:]}")
        return True

    def scheduler_up() -> bool:
        alive()
        try:
            socket.create_connection((hosts.addr("sched"), SCHEDULER_PORT), 1).close()
            return True
        except OSError:
            return False

    wait_for(scheduler_up, 60, "the Dask scheduler on its host")
    return sched, alive


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_dask_across_hosts_shares_no_files_or_localhost(tmp_path):
    """A scheduler and two workers on three hosts; work submitted from the test's namespace
    runs on the workers' private addresses, without the test's files or its localhost."""
    _require_hosts()
    pytest.importorskip("distributed")
    from distributed import Client

    hidden, logs = tmp_path / "db", tmp_path / "logs"
    hidden.mkdir()
    logs.mkdir()
    marker = hidden / "store.duckdb"
    marker.write_bytes(b"only in the test's namespace")
    test_only = socket.create_server(("127.0.0.1", 0))  # reachable here, not from a host
    socket.create_connection(test_only.getsockname(), 5).close()

    with test_only, TestHosts(["sched", "w1", "w2"]) as hosts, \
            socket.create_server((hosts.bridge_addr, 0)) as bridged:
        sched, alive = _start_cluster(hosts, logs, hidden)
        with Client(sched, timeout=60) as client:
            workers = wait_for(
                lambda: alive() and len(w := client.scheduler_info()["workers"]) == 2 and w,
                90, "two Dask workers")
            by_host = {info["host"]: addr for addr, info in workers.items()}
            assert set(by_host) == {hosts.addr("w1"), hosts.addr("w2")}

            futures = {w: client.submit(_make_probe(), str(marker), test_only.getsockname()[1],
                                        hosts.bridge_addr, bridged.getsockname()[1],
                                        workers=[by_host[hosts.addr(w)]],
                                        allow_other_workers=False, pure=False)
                       for w in ("w1", "w2")}
            seen = {w: f.result(timeout=60) for w, f in futures.items()}

    for w, probe in seen.items():
        assert probe["worker"] == by_host[hosts.addr(w)], probe
        assert probe["worker"].startswith(f"tcp://{hosts.addr(w)}:"), probe
        assert probe["marker"] is False, f"{w} sees the test's hidden file"
        assert probe["writable"] is False, f"{w} could write into the hidden directory"
        assert probe["localhost"] is False, f"{w} reached the test's 127.0.0.1 listener"
        assert probe["bridge"] is True, f"{w} could not reach the test at the bridge address"
    assert marker.exists() and not (hidden / "written").exists()
    assert _our_netns() == []
