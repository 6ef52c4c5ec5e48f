"""One virtual environment per peer, created on first use and then reused.

Plain ``python -m venv`` + ``pip install`` from the package index, so a
user can reproduce the set-up by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .config import System

MARKER = ".durable_nb-bench.json"


class VenvMissing(RuntimeError):
    """A peer's venv is absent and installing was not allowed."""


def venv_python(venv: Path) -> Path:
    """Path of the interpreter inside ``venv`` (POSIX or Windows layout)."""
    for rel in ("bin/python", "Scripts/python.exe"):
        if (venv / rel).exists():
            return venv / rel
    return venv / "bin" / "python"


def ensure_venv(system: System, cache: Path, skip_install: bool, log: Path) -> Path:
    """Return the python of the system's venv, creating it if needed."""
    venv = cache / "venvs" / system.name
    marker = venv / MARKER
    wanted = {"packages": list(system.packages)}
    if marker.exists() and venv_python(venv).exists():
        try:
            if json.loads(marker.read_text()) == wanted:
                return venv_python(venv)
        except (OSError, ValueError):
            pass
    if skip_install:
        raise VenvMissing(
            f"no ready venv for {system.name} at {venv} (--skip-install given); "
            "run once without --skip-install to create it"
        )
    print(f"installing {system.name} into {venv} (first use) ...", file=sys.stderr, flush=True)
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        for cmd in (
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", *system.packages],
        ):
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
            if rc != 0:
                raise RuntimeError(f"{' '.join(cmd[:4])} ... failed with {rc}; see {log}")
    marker.write_text(json.dumps(wanted))
    return venv_python(venv)


_VERSIONS_SNIPPET = """
import importlib.metadata as m, json, sys, platform
out = {"python": platform.python_version()}
for d in sys.argv[1:]:
    try:
        out[d] = m.version(d)
    except m.PackageNotFoundError:
        out[d] = "not installed"
print(json.dumps(out))
"""


def versions(python: Path | str, dists: tuple[str, ...]) -> dict[str, str]:
    """Versions of ``dists`` as seen by ``python`` (importlib.metadata)."""
    try:
        out = subprocess.run(
            [str(python), "-c", _VERSIONS_SNIPPET, *dists],
            capture_output=True, text=True, timeout=60, check=True, env=clean_env(),
        ).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        return {"error": str(exc)[:200]}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for benchmark subprocesses: no remote tracing or API endpoints."""
    env = dict(os.environ)
    for var in (
        "PREFECT_API_URL", "PREFECT_API_KEY", "LANGCHAIN_TRACING_V2", "LANGSMITH_TRACING",
        "LANGCHAIN_API_KEY", "LANGSMITH_API_KEY", "DBOS_CONDUCTOR_KEY", "PYTHONSTARTUP",
        "DURABLE_NB_URL", "DURABLE_NB_TOKEN", "DURABLE_NB_DB",
    ):
        env.pop(var, None)
    env.update(DO_NOT_TRACK="1", PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra or {})
    return env
