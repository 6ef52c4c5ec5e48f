"""binder/ (mybinder.org): the environment file and the postBuild script, run for real.

mybinder.org creates binder/environment.yml's conda environment, then runs binder/postBuild.
Without conda, the test does the same in a fresh virtual environment: the environment's
Python packages are pip-installed, Node.js comes from the machine, and postBuild runs on a
copy of the checkout with that environment first on PATH. postBuild itself fails unless
Jupyter lists both extensions enabled and OK.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
# conda packages that pip does not install (the machine provides them here)
NOT_PIP = {"python", "nodejs", "pip"}
# what the copy leaves out: VCS data, builds, caches and outputs of this checkout
IGNORE = shutil.ignore_patterns(
    ".git", "node_modules", "lib", "labextension", "build", "dist", "*.egg-info",
    "__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "test-output", "*.duckdb*",
    "tsconfig.tsbuildinfo")


def conda_dependencies() -> list[str]:
    """The `dependencies:` entries of binder/environment.yml (a flat list of specs)."""
    deps, inside = [], False
    for line in (BINDER / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            inside = True
        elif inside and re.match(r"\s+-\s+\S", line):
            deps.append(line.split("-", 1)[1].split("#")[0].strip())
        elif inside and line.strip() and not line.startswith((" ", "#")):
            inside = False
    return deps


def name_of(spec: str) -> str:
    return re.split(r"[<>=! ]", spec, maxsplit=1)[0]


def test_environment_has_python_node_and_jupyterlab():
    deps = {name_of(d): d for d in conda_dependencies()}
    assert {"python", "nodejs", "pip", "jupyterlab"} <= set(deps), deps
    node = int(re.search(r"\d+", deps["nodejs"]).group())
    assert node >= 22, "rspack (the lab extension's bundler) needs Node ^20.19 or >= 22.12"
    assert os.access(BINDER / "postBuild", os.X_OK), "repo2docker runs postBuild as a program"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_postbuild_installs_and_checks_both_extensions(tmp_path):
    if shutil.which("npm") is None:
        pytest.skip("postBuild builds the lab extension: it needs Node.js and npm")
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=IGNORE, symlinks=True)
    shutil.copytree(REPO / "labextension", repo / "labextension",
                    ignore=shutil.ignore_patterns("node_modules", "lib", "*.tsbuildinfo"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER_", "DURABLE_NB_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               PIP_DISABLE_PIP_VERSION_CHECK="1")

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=800)

    # the conda step, as far as pip can do it
    pip_deps = [d for d in conda_dependencies() if name_of(d) not in NOT_PIP]
    done = run("python", "-m", "pip", "install", "--quiet", *pip_deps)
    assert done.returncode == 0, done.stdout + done.stderr

    done = run("bash", "binder/postBuild")
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert "server and lab extensions are enabled and OK" in done.stdout
    installed = venv / "share" / "jupyter" / "labextensions" / "durable_nb"
    assert (installed / "package.json").exists() and (installed / "install.json").exists()
    assert not (repo / "labextension" / "node_modules").exists()
