"""Run workload scripts in subprocesses, with time limits, and collect results."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from .venvs import clean_env

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def run_script(
    python: Path | str,
    script: str,
    spec: dict[str, Any],
    timeout: float,
    log: Path,
    env_extra: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``systems/<script>`` with ``spec``; one result dict per workload.

    The script runs in its own session (process group) so that a timeout
    kills it together with whatever it started (engines, servers, workers).
    Workloads that printed nothing are reported as errors.
    """
    cmd = [str(python), str(HERE / "systems" / script), json.dumps(spec)]
    started = time.perf_counter()
    with open(log, "ab") as err:
        err.write(f"\n=== {' '.join(cmd[:2])} {list(spec['workloads'])} ===\n".encode())
        err.flush()
        offset = err.tell()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
            cwd=spec["tmp"], env=clean_env(env_extra), start_new_session=True,
        )
        timed_out = False
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        _reap_group(proc.pid)
    results: dict[str, dict[str, Any]] = {}
    for line in out.decode(errors="replace").splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "workload" in obj:
            results[obj["workload"]] = obj
    wall = time.perf_counter() - started
    for name in spec["workloads"]:
        if name not in results:
            why = (
                f"timed out after {timeout:.0f} s" if timed_out
                else f"script exited with {proc.returncode} without a result"
            )
            tail = _tail(log, offset)
            results[name] = {"workload": name, "error": f"{why}{': ' + tail if tail else ''} (log: {log})"}
        results[name].setdefault("extra", {})["process_wall_s"] = round(wall, 2)
    return results


def _tail(log: Path, offset: int, chars: int = 300) -> str:
    """The end of what this script run wrote to the log, on one line."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return " ".join(text.split())[-chars:]


def _kill_group(pgid: int, sig: int) -> None:
    """Signal the process group we created for one script run."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_group(pgid: int) -> None:
    """Stop leftovers of a finished script (e.g. an engine it failed to stop)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return
    _kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)
    _kill_group(pgid, signal.SIGKILL)


def fs_of(path: Path) -> dict[str, str]:
    """Mount point, device and filesystem type holding ``path`` (Linux /proc/mounts)."""
    best = {"mount": "?", "device": "?", "fstype": "?"}
    best_len = -1
    try:
        real = os.path.realpath(path)
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                mnt = mnt.replace("\\040", " ")
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= best_len:  # the last, deepest mount wins
                    best, best_len = {"mount": mnt, "device": dev, "fstype": fstype}, len(mnt)
    except OSError:
        pass
    return best


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model() or platform.processor(),
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
