"""Source installs: without Node.js they succeed without the Lab panel and say so."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from _support import REPO

from durable_nb.jupyter import labext as _labext

NODE_TOOLS = {"node", "nodejs", "npm", "npx", "corepack", "yarn", "pnpm"}


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def fresh_clone(dest: Path) -> Path:
    """A git clone of the repository with the working tree's changes on top (a clone of
    what would be committed): no node_modules, no built panel, nothing ignored."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("the repository is not a git checkout (or git is missing)")
    _git("clone", "--quiet", str(REPO), str(dest))
    for rel in _git("ls-files", "-z", "--deleted").split("\0"):
        if rel:
            (dest / rel).unlink(missing_ok=True)
    changed = _git("ls-files", "-z", "--modified", "--others", "--exclude-standard")
    for rel in filter(None, changed.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def path_without_node(tmp: Path) -> str:
    """A PATH with every program of ours except Node.js and its package managers."""
    shim = tmp / "bin-without-node"
    shim.mkdir()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or not os.path.isdir(d):
            continue
        for entry in os.scandir(d):
            target = shim / entry.name
            if entry.name in NODE_TOOLS or target.exists() or target.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    return str(shim)


def make_venv(where: Path) -> Path:
    """A fresh venv that sees this interpreter's installed packages through a .pth file
    (like --system-site-packages), so only durable_nb and its build tools are installed;
    pip never uninstalls those packages, which lie outside the venv."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    py = where / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True, text=True)
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib.stdout.strip(), "_outer_packages.pth").write_text("\n".join(sorted(ours)))
    return where / "bin"


def pip_install(bindir: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-v",
                           "--disable-pip-version-check", *args], cwd=bindir.parent,
                          env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def in_venv(bindir: Path, env: dict[str, str], *cmd: str) -> str:
    """Run a program of the venv outside the repository (so `python -c` imports the
    installed durable_nb, not the one in the current directory)."""
    proc = subprocess.run([str(bindir / cmd[0]), *cmd[1:]], cwd=bindir.parent, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def venv_env(bindir: Path, path: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DURABLE_NB_", "PYTHON", "PIP_REQUIRE", "VIRTUAL_ENV"))}
    env.update(PATH=f"{bindir}{os.pathsep}{path}", VIRTUAL_ENV=str(bindir.parent),
               HATCH_JUPYTER_BUILDER_SKIP_NPM="0")
    return env


PANEL_CHECK = ("from durable_nb import __file__ as f; from durable_nb.jupyter import labext; "
               "print(f); print(labext.panel_installed())")


@pytest.mark.slow
def test_source_install_without_node_succeeds_without_the_panel(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    bindir = make_venv(tmp_path / "venv")
    env = venv_env(bindir, path_without_node(tmp_path))
    for tool in ("node", "npm"):
        assert shutil.which(tool, path=env["PATH"]) is None

    out = pip_install(bindir, env, "-e", str(clone))
    assert 'durable_nb: Node.js and npm not found on PATH: installing without the JupyterLab' \
           in out
    assert "Traceback" not in out
    assert "usage: durable-nb" in in_venv(bindir, env, "durable-nb", "--help")
    where, installed = in_venv(bindir, env, "python", "-c", PANEL_CHECK).split()
    assert Path(where).resolve().is_relative_to(clone.resolve())
    assert installed == "False"  # so the server extension says it at start

    out = pip_install(bindir, env, str(clone))  # a regular (non-editable) install too
    assert "Node.js and npm not found on PATH" in out
    assert "usage: durable-nb" in in_venv(bindir, env, "durable-nb", "--help")
    where, installed = in_venv(bindir, env, "python", "-c", PANEL_CHECK).split()
    assert Path(where).resolve().is_relative_to((bindir.parent / "lib").resolve())
    assert installed == "False"
    assert not (bindir.parent / "share" / "jupyter" / "labextensions" / "durable_nb").exists()
    assert (bindir.parent / "etc" / "jupyter" / "jupyter_server_config.d"
            / "durable_nb.json").is_file()


def _node_major() -> int:
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        return 0
    out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    return int(out.strip().lstrip("v").split(".")[0] or 0)


@pytest.mark.slow
@pytest.mark.skipif(_node_major() < 20, reason="needs Node.js 20+ and npm on PATH")
def test_source_install_with_node_builds_and_ships_the_panel(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    bindir = make_venv(tmp_path / "venv")
    env = venv_env(bindir, os.environ["PATH"])
    out = pip_install(bindir, env, str(clone))
    assert "not found on PATH" not in out
    ext = bindir.parent / "share" / "jupyter" / "labextensions" / "durable_nb"
    for name in ("package.json", "install.json"):
        assert (ext / name).is_file(), out[-3000:]
    assert any((ext / "static").iterdir())
    assert in_venv(bindir, env, "python", "-c", PANEL_CHECK).split()[1] == "True"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_server_says_once_when_the_panel_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(_labext, "_said", False)
    log = logging.getLogger("test_install.panel")
    lines = _Lines()
    log.addHandler(lines)
    try:
        empty = [str(tmp_path / "a"), str(tmp_path / "b")]
        assert _labext.warn_if_panel_missing(log, empty) is False
        assert _labext.warn_if_panel_missing(log, empty) is False
        assert lines.lines == [_labext.MISSING]
        assert "Node.js 20+" in lines.lines[0] and "\n" not in lines.lines[0]

        ext = tmp_path / "b" / "durable_nb"
        (ext / "static").mkdir(parents=True)
        (ext / "package.json").write_text("{}")
        assert _labext.warn_if_panel_missing(log, empty) is True
        assert len(lines.lines) == 1
    finally:
        log.removeHandler(lines)
