"""Helpers of the browser tests: a real `jupyter lab` server process and a Playwright driver
for its notebooks (see conftest.py for the fixtures)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

from _support import free_port, jupyter_env, start_server, stop_process, wait_for

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "test-output"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
LABEXTENSION = REPO / "durable_nb" / "labextension"
STATIC = REPO / "durable_nb" / "widgets" / "static"
TAB = '.jp-SideBar li[data-id="durable-nb-runs"]'  # the Durable runs sidebar's tab


class Lab:
    """`jupyter lab` on 127.0.0.1 with a token, a fresh root_dir, and durable_nb's server
    extension enabled by the repository's jupyter-config/ (the engine runs in the server;
    kernels get DURABLE_NB_URL/TOKEN from it)."""

    def __init__(self, tmp: Path):
        self.dir = tmp
        self.token = uuid.uuid4().hex
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.root = tmp / "root"
        self.db = tmp / "lab.duckdb"
        self.log = tmp / "lab.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Lab:
        self.root.mkdir(parents=True, exist_ok=True)
        settings = self.dir / "settings"
        notes = settings / "@jupyterlab" / "apputils-extension"
        notes.mkdir(parents=True, exist_ok=True)  # no news toast over the screenshots
        (notes / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        args = []
        if (LABEXTENSION / "package.json").exists():  # the Lab panel, when it is built
            exts = self.dir / "labextensions"
            exts.mkdir(exist_ok=True)
            link = exts / "durable_nb"
            if not link.exists():
                link.symlink_to(LABEXTENSION)
            args.append(f"--LabApp.extra_labextensions_path={exts}")
        env = jupyter_env(self.dir / "cfg", PYTHONPATH=os.pathsep.join(
            p for p in [str(REPO), os.environ.get("PYTHONPATH")] if p))
        cmd = [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", "--LabApp.expose_app_in_browser=True",
               f"--LabApp.workspaces_dir={self.dir / 'workspaces'}",
               f"--LabApp.user_settings_dir={settings}",
               f"--DurableApp.db_path={self.db}", "--DurableApp.wait_grace=0.3",
               "--DurableApp.max_workers=4", *args]
        self.proc = start_server(
            cmd, env, self.log, timeout=timeout, what="jupyter lab",
            ready=lambda: self.request("GET", "durable/api/health")[0] == 200)
        return self

    def request(self, method: str, path: str, body: dict | None = None):
        """An API call with the server's token: (status, JSON)."""
        req = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"},
            data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")

    def write_notebook(self, name: str, cells: list[str]) -> str:
        """A notebook of code cells in the server's root; returns its path."""
        nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": src, "outputs": [],
                         "execution_count": None} for src in cells],
              "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                          "language": "python"}},
              "nbformat": 4, "nbformat_minor": 5}
        (self.root / name).write_text(json.dumps(nb))
        return name

    def stop(self) -> None:
        stop_process(self.proc, 30)


# ---------------------------------------------------------------------- driving notebooks

def open_notebook(page, lab: Lab, path: str, timeout: float = 90.0) -> None:
    """A clean workspace with the notebook open and its kernel idle."""
    page.goto(f"{lab.url}lab/workspaces/{uuid.uuid4().hex[:8]}/tree/{path}"
              f"?reset&token={lab.token}")
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(timeout=timeout * 1000)
    wait_idle(page, timeout)


def wait_idle(page, timeout: float = 90.0) -> None:
    """Until the notebook's kernel is idle (started, and no cell running)."""
    page.wait_for_function(
        """() => {
            const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            const k = w && w.sessionContext && w.sessionContext.session
                && w.sessionContext.session.kernel;
            return !!k && k.status === "idle" && k.connectionStatus === "connected";
        }""", timeout=timeout * 1000, polling=100)


def command(page, cmd: str, args: dict | None = None) -> None:
    """Execute a JupyterLab command (the app is exposed as window.jupyterapp)."""
    page.evaluate("([c, a]) => { window.jupyterapp.commands.execute(c, a); }", [cmd, args or {}])


def run_all(page) -> None:
    command(page, "notebook:run-all-cells")


def add_cell(page, source: str, run: bool = True) -> int:
    """Append a code cell to the current notebook (and run it); returns its index."""
    index = page.evaluate(
        """(src) => {
            const panel = window.jupyterapp.shell.currentWidget;
            const nb = panel.content;
            const n = nb.model.cells.length;
            nb.model.sharedModel.insertCell(n, {cell_type: "code", source: src});
            nb.activeCellIndex = n;
            return n;
        }""", source)
    if run:
        command(page, "notebook:run-cell")
    return index


def cell(page, index: int):
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def restart_kernel(page) -> None:
    """Restart the notebook's kernel as a user does (menu command, confirm dialog)."""
    command(page, "kernelmenu:restart")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(".jp-Dialog").wait_for(state="detached")
    wait_idle(page)


def run_view(page, run_id: str | None = None, scope=None):
    """The run widget (of ``run_id``) in the page or in ``scope``."""
    where = scope if scope is not None else page
    sel = ".dng-widget > .dng-run" + (f'[data-run-id="{run_id}"]' if run_id else "")
    return where.locator(sel)


def open_panel(page, lab: Lab) -> None:
    """A clean workspace with the Durable runs sidebar open and following the engine."""
    page.goto(f"{lab.url}lab/workspaces/{uuid.uuid4().hex[:8]}?reset&token={lab.token}")
    page.locator(TAB).click()
    page.locator(".jp-DurablePanel-live.jp-mod-connected").wait_for()


def panel_row(page, run_id: str, status: str | None = None):
    """The sidebar's row of ``run_id`` (showing ``status``, when given)."""
    sel = f'.jp-DurableRun[data-run-id="{run_id}"]'
    return page.locator(sel + (f'[data-status="{status}"]' if status else ""))


def graph_page(browser, harness: str) -> tuple:
    """A page with run_graph.js alone, as the anywidget draws it outside JupyterLab:
    ``harness`` is a module script with ``%s`` where the code goes (base64), and sets
    ``window.ready``. Returns the page and the list its console and page errors go to."""
    page = browser.new_page(viewport={"width": 900, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    js = base64.b64encode((STATIC / "run_graph.js").read_bytes()).decode()
    css = (STATIC / "run_graph.css").read_text()
    page.set_content(f"<html><head><style>{css}</style></head><body style='margin:12px'>"
                     f"<div id=root></div><script type=module>{harness % js}</script>"
                     "</body></html>")
    page.wait_for_function("window.ready")
    return page, errors


def wait_until(pred, timeout: float = 30.0, what: str = "condition"):
    """``wait_for`` at a pace that suits browser round trips."""
    return wait_for(pred, timeout, what, interval=0.1)
