"""Which Dask worker ran each attempt, and the Dask dashboard, in a real JupyterLab driven
through Chromium.

The server's engine runs attempts on a Dask `LocalCluster` it starts itself
(``DurableApp.executor = "dask"``). The sidebar's header names the cluster and links its
dashboard (in a new tab); a run triggered from a notebook executes on a Dask worker, and its
views (the cell's run output and the anywidget) name that worker. The database also holds,
from before the server started, runs whose attempts were recorded on two Dask workers
(`tests/_dask_attempts.py`): the panel's run view names the worker of each attempt. A server
with local workers shows no executor in the header.
"""

from __future__ import annotations

import re

import pytest
from _dask_attempts import WORKERS, dask_runs
from _lab import LABEXTENSION, Lab, cell, open_notebook, open_panel, run_all, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OUTPUT = ".jp-DurableRunOutput-graph > .dng-run"  # a run output drawn by the Lab extension
WIDGET = ".dng-widget > .dng-run"  # the anywidget view


def _start(tmp, config: str = "") -> Lab:
    """A `jupyter lab` with ``config`` in its jupyter_server_config.py."""
    if not (LABEXTENSION / "package.json").exists():
        pytest.fail(f"the lab extension is not built ({LABEXTENSION} is missing)")
    server = Lab(tmp)
    cfg = server.dir / "cfg"
    cfg.mkdir()
    (cfg / "jupyter_server_config.py").write_text(config)
    return server


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """This module's `jupyter lab`: its engine runs attempts on Dask, on a database that
    holds runs recorded on two Dask workers."""
    server = _start(tmp_path_factory.mktemp("lab"), 'c.DurableApp.executor = "dask"\n')
    server.runs = dask_runs(server.db)  # type: ignore[attr-defined]
    server.start(timeout=120)
    yield server
    server.stop()


def dask_executor(lab) -> dict:
    """The engine's executor once its Dask cluster has workers and a dashboard."""
    def ready():
        ex = lab.request("GET", "durable/api/health")[1].get("executor") or {}
        assert ex.get("kind") == "dask", f"the engine does not run attempts on Dask: {ex}"
        return ex if ex.get("workers") and ex.get("dashboard") else None
    return wait_until(ready, 60, "the Dask cluster's workers and dashboard")



def shot(page, name: str, locator=None) -> None:
    (locator or page).screenshot(path=str(page.out / f"{name}.png"))


def test_the_header_names_the_dask_cluster_and_opens_its_dashboard(page, lab):
    ex = dask_executor(lab)
    n = ex["workers"]
    open_panel(page, lab)
    executor = page.locator(".jp-DurablePanel-executor")
    text = f"Dask: {n} worker{'' if n == 1 else 's'} · dashboard"
    wait_until(lambda: executor.inner_text() == text, what=f"the header to say {text!r}")
    link = executor.get_by_role("link", name="dashboard")
    assert link.get_attribute("href") == ex["dashboard"]
    assert link.get_attribute("target") == "_blank"
    assert "noopener" in (link.get_attribute("rel") or "").split()
    shot(page, "header", page.locator(".jp-DurablePanel"))
    with page.context.expect_page() as opened:
        link.click()
    tab = opened.value
    origin = re.match(r"https?://[^/]+", ex["dashboard"]).group(0)
    assert tab.url.startswith(origin), tab.url
    tab.close()
    assert not page.console_errors()


def test_the_panels_run_view_names_the_worker_of_each_attempt(page, lab):
    open_panel(page, lab)
    two, one = lab.runs["two"], lab.runs["one"]
    page.locator(f'.jp-DurableRun[data-run-id="{two}"]').click()
    attempts = page.locator(f"#durable-run-{two} .dng-attempt")
    wait_until(lambda: attempts.count() == 2, what="the run view's two attempts")
    for i, (address, pid) in enumerate(WORKERS):
        worker = attempts.nth(i).locator(".dng-worker")
        assert worker.inner_text() == f"worker {address}"
        assert worker.get_attribute("title") == f"Dask worker {address}, pid {pid}"
    shot(page, "two-attempts")
    # a single attempt has no row of its own: the run's line names its worker
    page.locator(f'.jp-DurableRun[data-run-id="{one}"]').click()
    view = page.locator(f"#durable-run-{one}")
    view.locator(".dng-root").wait_for()
    assert f"1 attempt · on Dask worker {WORKERS[1][0]}" in view.locator(".dng-sub").inner_text()
    shot(page, "one-attempt")
    assert not page.console_errors()


NOTEBOOK = """\
import durable_nb as dn
from durable_nb.widgets.views import RUN_MIME, widget_for

@dn.step
def double(x):
    return 2 * x

@dn.task(id="lab-on-dask")
def on_dask(x):
    return double(x)

run = on_dask.trigger(21)
assert run.result(timeout=120) == 42
run
"""

ANYWIDGET = "display(widget_for(run), exclude=[RUN_MIME])"


def test_a_run_from_a_notebook_names_the_dask_worker_it_ran_on(page, lab):
    ex = dask_executor(lab)
    path = lab.write_notebook("on_dask.ipynb", [NOTEBOOK, ANYWIDGET])
    open_notebook(page, lab, path)
    run_all(page)
    output = cell(page, 0).locator(OUTPUT).first
    output.wait_for(timeout=120_000)
    run_id = output.get_attribute("data-run-id")
    (attempt,) = lab.request("GET", f"durable/api/runs/{run_id}")[1]["attempt_list"]
    address = attempt["worker"]
    assert address and address.startswith("tcp://"), attempt
    assert attempt["worker_pid"] > 0
    assert ex["workers"] >= 1
    for index, view in ((0, output), (1, cell(page, 1).locator(WIDGET).first)):
        view.wait_for(timeout=60_000)
        sub = view.locator(".dng-sub")
        wait_until(lambda s=sub: f"on Dask worker {address}" in s.inner_text(),
                   what=f"cell {index} to name the worker")
        shot(page, f"cell-{index}", cell(page, index))
    assert not page.console_errors()


def test_local_workers_show_no_executor_in_the_header(page, tmp_path):
    local = _start(tmp_path).start()
    try:
        ex = local.request("GET", "durable/api/health")[1].get("executor") or {"kind": "local"}
        assert ex["kind"] == "local"
        open_panel(page, local)
        page.get_by_text("No runs yet").wait_for()
        assert page.locator(".jp-DurablePanel-executor").is_hidden()
        assert page.locator(".jp-DurablePanel-dashboard").count() == 0
        shot(page, "local", page.locator(".jp-DurablePanel"))
        assert not page.console_errors()
    finally:
        local.stop()
