"""Test hosts: network namespaces on one private bridge, for tests that span machines.

A test that must prove durable_nb assumes neither a shared filesystem nor localhost runs
its remote processes (a Dask scheduler, Dask workers) on "hosts" made here::

    with TestHosts(["sched", "w1", "w2"]) as hosts:
        sched = hosts.popen("sched", ["dask", "scheduler", "--host", hosts.addr("sched")])
        ...

Each host is a network namespace with its own loopback and one veth link to a bridge in
the test's own namespace. The bridge has ``10.213.X.1/24`` (``hosts.bridge_addr``, where an
engine in the test's namespace binds so the hosts can reach it) and the hosts get ``.2``,
``.3``, ... in the order named. These addresses exist only on the bridge and inside the
namespaces; everything stays on that one subnet (L2), so no routing, IP forwarding or other
host-wide setting is touched. ``127.0.0.1`` inside a host is that host's own loopback.

``popen`` also gives the process a private mount namespace in which each ``hide`` path is
covered by an empty read-only tmpfs: the process cannot read what the test keeps there
(e.g. the engine's database directory) and a write there fails instead of going unseen.
Each ``private`` path is covered by an empty writable tmpfs of its own, so a file that one
side leaves there for the other is not found, as between machines. A covered path hides
everything beneath it: never cover the Python environment or the source tree the process
runs from (a CI virtual environment may live under the temporary directory).

Names carry the creating process id (``dn<pid>-<n>-<host>``), so parallel runs never
collide, and a later run removes what a killed run left behind. Needs Linux, root,
iproute2 (``ip``) and util-linux (``unshare``, ``mount``); ``hosts_unavailable()`` says why
not where they cannot be made, for ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import itertools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

SUBNETS = ipaddress.ip_network("10.213.0.0/16")  # each TestHosts takes one free /24 of it
MAX_HOSTS = 99  # keeps interface names within the kernel's 15 characters

_HOST_NAME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
_STALE_NETNS = re.compile(r"^dn(\d+)-\d+-")
_STALE_LINK = re.compile(r"^dn(\d+)-\d+[bvp]\d*$")
_seq = itertools.count()

# Runs inside the host's private mount namespace: `sh -c SCRIPT sh N HIDE... M PRIVATE...
# ARGV...` covers the hidden paths read-only, the private ones writable, then execs argv.
_COVER_THEN_EXEC = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do '
    'mount -t tmpfs -o ro,size=64k,mode=0755 durable-nb-hidden "$1" || exit 125; '
    'shift; n=$((n - 1)); done; '
    'n=$1; shift; while [ "$n" -gt 0 ]; do '
    'mount -t tmpfs -o mode=1777 durable-nb-private "$1" || exit 125; '
    'shift; n=$((n - 1)); done; exec "$@"'
)
_Paths = Sequence[str | os.PathLike[str]]


class HostsError(RuntimeError):
    """A namespace, link or address could not be made (the ``ip`` command's error)."""


class TestHosts:
    """Network namespaces ("hosts") joined by one bridge in the caller's namespace.

    A context manager: entering creates everything, leaving (also after a failure) kills
    what ``popen`` started and deletes the namespaces, veth links and the bridge.
    """

    __test__ = False  # a utility, not a pytest test class

    def __init__(self, names: Sequence[str], *, grace: float = 5.0):
        names = list(names)
        if not names or len(names) > MAX_HOSTS or len(set(names)) != len(names):
            raise ValueError(f"need 1 to {MAX_HOSTS} distinct host names, got {names!r}")
        for name in names:
            if not _HOST_NAME.match(name):
                raise ValueError(f"host name {name!r} must match {_HOST_NAME.pattern}")
        self.names = names
        self.grace = grace  # seconds between SIGTERM and SIGKILL for popen'd processes
        self.tag = f"dn{os.getpid()}-{next(_seq) % 100}"
        self.bridge = f"{self.tag}b"
        self.subnet: ipaddress.IPv4Network | None = None
        self._procs: list[subprocess.Popen] = []
        self._made_netns: list[str] = []

    # -- addresses -------------------------------------------------------------------------

    @property
    def bridge_addr(self) -> str:
        """The bridge's address in the caller's namespace: where the hosts reach the test."""
        return str(self._subnet()[1])

    def addr(self, name: str) -> str:
        """The private IPv4 address of host ``name`` (reachable from the caller and hosts)."""
        return str(self._subnet()[2 + self._index(name)])

    def netns(self, name: str) -> str:
        """The network namespace of host ``name`` (for ``ip netns exec``/``ip -n``)."""
        return f"{self.tag}-{self.names[self._index(name)]}"

    # -- processes -------------------------------------------------------------------------

    def partition(self, name: str) -> None:
        """Cut host ``name`` off the network (its link goes down; its processes live on),
        as when a machine's network fails."""
        _ip("-n", self.netns(name), "link", "set", "eth0", "down")

    def command(self, name: str, argv: Sequence[str], hide: _Paths = (),
                private: _Paths = ()) -> list[str]:
        """The argv that runs ``argv`` on host ``name`` with ``hide`` and ``private`` covered
        (existing directories; the hidden ones are covered first)."""
        covers: list[str] = []
        for what, paths in (("hide", hide), ("private", private)):
            resolved = [Path(p).resolve() for p in paths]
            for path in resolved:
                if not path.is_dir():
                    raise ValueError(f"{what}: {path} is not a directory")
            covers += [str(len(resolved)), *map(str, resolved)]
        return [_tool("ip"), "netns", "exec", self.netns(name),
                _tool("unshare"), "--mount", "--propagation", "private", "--",
                "/bin/sh", "-c", _COVER_THEN_EXEC, "sh", *covers, *argv]

    def popen(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              hide: _Paths = (), private: _Paths = (), **popen_kwargs: Any,
              ) -> subprocess.Popen:
        """Start ``argv`` on host ``name``; it is killed (its process group) on exit.

        ``env`` replaces the environment as in ``subprocess.Popen``; stdin defaults to
        /dev/null. The wrappers exec, so the Popen's pid is ``argv``'s own process; it leads
        a new session so that its children die with it.
        """
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        popen_kwargs["start_new_session"] = True
        proc = subprocess.Popen(self.command(name, argv, hide, private),
                                env=dict(env) if env is not None else None, **popen_kwargs)
        self._procs.append(proc)
        return proc

    def run(self, name: str, argv: Sequence[str], hide: _Paths = (), private: _Paths = (),
            timeout: float = 60.0, **run_kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` on host ``name`` to completion (output captured as text)."""
        run_kwargs.setdefault("stdin", subprocess.DEVNULL)
        run_kwargs.setdefault("capture_output", True)
        run_kwargs.setdefault("text", True)
        return subprocess.run(self.command(name, argv, hide, private), timeout=timeout,
                              **run_kwargs)

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> TestHosts:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _create(self) -> None:
        with _host_lock():
            _remove_stale()
            self.subnet = _free_subnet(os.getpid() + int(self.tag.rsplit("-", 1)[1]))
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.bridge_addr}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        for i, name in enumerate(self.names):
            ns, outer, inner = self.netns(name), f"{self.tag}v{i}", f"{self.tag}p{i}"
            _ip("netns", "add", ns)
            self._made_netns.append(ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "master", self.bridge)
            _ip("link", "set", outer, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", inner, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self.addr(name)}/{self.subnet.prefixlen}",
                "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Kill what ``popen`` started, then delete the namespaces, links and bridge."""
        for proc in self._procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for proc in self._procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)  # the group may outlive its leader
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self._procs.clear()
        for i, ns in enumerate(self._made_netns):
            _kill_netns_pids(ns)
            _ip("link", "del", f"{self.tag}v{i}", check=False)
            _ip("netns", "del", ns, check=False)
        self._made_netns.clear()
        _ip("link", "del", self.bridge, check=False)

    # -- internals -------------------------------------------------------------------------

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no host {name!r} (hosts: {', '.join(self.names)})") from None

    def _subnet(self) -> ipaddress.IPv4Network:
        if self.subnet is None:
            raise RuntimeError("TestHosts is not entered yet")
        return self.subnet


@functools.cache
def hosts_unavailable() -> str | None:
    """Why ``TestHosts`` cannot work here (for ``pytest.skip``), or None when it can.

    Tried for real, once per process: two hosts are made, one listens with a directory
    hidden from it, the other connects to it and to the bridge address, then all is removed.
    """
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    for tool, package in (("ip", "iproute2"), ("unshare", "util-linux"),
                          ("mount", "util-linux")):
        if _which(tool) is None:
            return f"`{tool}` is not installed (Debian package {package})"
    try:
        _probe()
    except (HostsError, OSError, subprocess.SubprocessError, AssertionError) as e:
        return f"cannot make test hosts here: {e}"
    return None


# -- helpers ---------------------------------------------------------------------------------


def _probe() -> None:
    """Make two hosts and check hiding, host-to-host and host-to-bridge TCP; raise if not."""
    import socket

    listen = ("import os, socket, sys; s = socket.create_server((sys.argv[1], 0)); "
              "print(s.getsockname()[1], os.path.exists(sys.argv[2]), flush=True); "
              "s.settimeout(20); s.accept()")
    connect = ("import socket, sys; "
               "[socket.create_connection((h, int(p)), 5).close() "
               "for h, p in zip(sys.argv[1::2], sys.argv[2::2])]")
    with tempfile.TemporaryDirectory() as hidden, TestHosts(["a", "b"], grace=1) as hosts, \
            socket.create_server((hosts.bridge_addr, 0)) as here:
        marker = Path(hidden, "marker")
        marker.touch()
        server = hosts.popen("b", [sys.executable, "-c", listen, hosts.addr("b"), str(marker)],
                             hide=[hidden], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        assert server.stdout is not None
        if not select.select([server.stdout], [], [], 20)[0]:
            raise HostsError("a process in a namespace did not start within 20 s")
        line = server.stdout.readline().split()
        if len(line) != 2:
            server.kill()
            raise HostsError(f"a process in a namespace failed: {server.communicate()[1]}")
        if line[1] != "False":
            raise HostsError("a tmpfs over a directory did not hide it")
        done = hosts.run("a", [sys.executable, "-c", connect, hosts.addr("b"), line[0],
                               hosts.bridge_addr, str(here.getsockname()[1])], timeout=30)
        if done.returncode != 0:
            raise HostsError("TCP between namespaces over the bridge failed "
                             f"(a firewall on bridged traffic?): {done.stderr.strip()[-500:]}")
        server.communicate(timeout=20)


def _which(name: str) -> str | None:
    """``name`` on PATH or in the system directories (``ip`` is in /usr/sbin)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


def _tool(name: str) -> str:
    path = _which(name)
    if path is None:
        raise HostsError(f"`{name}` is not installed")
    return path


def _ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS``; its stdout, or HostsError with its stderr when ``check``."""
    done = subprocess.run([_tool("ip"), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    if check and done.returncode != 0:
        raise HostsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    """Serialize subnet choice and stale cleanup between processes of this machine."""
    base = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
    with open(base / "durable-nb-test-hosts.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _in_use() -> list[ipaddress.IPv4Network]:
    """IPv4 networks of this namespace's addresses and routes (the default route aside)."""
    nets = []
    for link in json.loads(_ip("-j", "-4", "addr", "show") or "[]"):
        for a in link.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.ip_network(dst, strict=False))
    return nets


def _free_subnet(start: int) -> ipaddress.IPv4Network:
    """A /24 of SUBNETS that overlaps no address or route here, searched from ``start``."""
    candidates = list(SUBNETS.subnets(new_prefix=24))[1:-1]
    used = _in_use()
    for k in range(len(candidates)):
        net = candidates[(start + k) % len(candidates)]
        if not any(net.overlaps(u) for u in used):
            return net
    raise HostsError(f"no free /24 left in {SUBNETS}")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (killed, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _remove_stale() -> None:
    """Delete namespaces, bridges and links left by test processes that no longer exist."""
    me = os.getpid()

    def stale(name: str, pattern: re.Pattern[str]) -> bool:
        m = pattern.match(name)
        return bool(m) and int(m.group(1)) != me and not _pid_alive(int(m.group(1)))

    for line in _ip("netns", "list").splitlines():
        ns = line.split()[0] if line.split() else ""
        if stale(ns, _STALE_NETNS):
            _kill_netns_pids(ns)
            _ip("netns", "del", ns, check=False)
    for link in json.loads(_ip("-j", "link", "show") or "[]"):
        name = link.get("ifname", "")
        if stale(name, _STALE_LINK):
            _ip("link", "del", name, check=False)


def _kill_netns_pids(ns: str) -> None:
    """SIGKILL every process still in network namespace ``ns``."""
    for pid in _ip("netns", "pids", ns, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
