"""A run's progress bar and metadata in a real JupyterLab through Debian's Chromium: the
sidebar's row and the run view of a run held in an approval, and a notebook's views of a
run (the Lab extension's live output and the anywidget view) following its progress and
metadata live, from an indeterminate bar to a finished one.

Screenshots are saved in test-output/<test name>/."""

from __future__ import annotations

import os

import pytest
from _lab import TAB, open_notebook, wait_until

import durable_nb as dn

pytestmark = pytest.mark.browser

OUTPUT = ".jp-DurableRunOutput-graph > .dng-run"  # a run output drawn by the Lab extension
WIDGET = ".dng-widget > .dng-run"  # the anywidget view


@dn.task(id="browser-embed")
def embed(n: int) -> int:
    dn.metadata.set("model", "text-embedding-3")
    dn.metadata.increment("documents", n)
    dn.metadata.append("batches", {"size": n, "ok": True})
    dn.progress(63, 100, "embedding")
    dn.approval("publish", data={"documents": n}, timeout=600)
    return n


@dn.task(id="browser-stages")
def stages(key: str) -> str:
    dn.progress(1, text="reading")  # no total: an indeterminate bar
    dn.metadata.set("stage", "read")
    dn.wait_for_event(f"{key}-1", timeout=600)
    dn.progress(2, 3, "writing")
    dn.metadata.set("stage", "write")
    dn.wait_for_event(f"{key}-2", timeout=600)
    dn.progress(3, 3, "done")
    return "done"


@pytest.fixture(scope="module", autouse=True)
def client(lab_client):
    return lab_client


def wait_status(handle: dn.RunHandle, status: str) -> None:
    wait_until(lambda: handle.status == status, 30, f"run {handle.id} to be {status}")


def shot(page, name: str, locator=None) -> None:
    path = str(page.out / f"{name}.png")
    (locator or page).screenshot(path=path)


def test_the_sidebar_and_run_view_show_progress_and_metadata(page, lab):
    run = embed.trigger(12)
    wait_status(run, "WAITING")
    page.goto(f"{lab.url}lab/workspaces/progress?reset&token={lab.token}")
    page.locator(TAB).click()
    page.locator(".jp-DurablePanel-live.jp-mod-connected").wait_for()

    row = page.locator(f'.jp-DurableRun[data-run-id="{run.id}"][data-status="WAITING"]')
    bar = row.locator(".jp-DurableRun-progress")
    bar.wait_for()
    assert bar.inner_text().split() == ["63%", "embedding"]
    assert bar.locator(".jp-DurableRun-progressFill").get_attribute("style") == "width: 63%;"
    shot(page, "sidebar-row", page.locator(".jp-DurablePanel"))

    row.click()
    view = page.locator(f"#durable-run-{run.id} .dng-root > .dng-run")
    progress = view.locator(".dng-progress")
    progress.wait_for()
    assert progress.locator(".dng-progress-label").inner_text() == "63 / 100 · 63%"
    assert progress.locator(".dng-progress-text").inner_text() == "embedding"
    assert progress.locator('[role="progressbar"]').get_attribute("aria-valuenow") == "63"
    meta = {r.get_attribute("data-key"): r.locator(".dng-metadata-value").inner_text()
            for r in view.locator(".dng-metadata-row").all()}
    assert meta == {"model": '"text-embedding-3"', "documents": "12",
                    "batches": '[{"size":12,"ok":true}]'}
    shot(page, "run-view")

    run.approve("publish")
    assert run.result(timeout=30) == 12
    page.locator(f'#durable-run-{run.id} .dng-root > .dng-run[data-status="COMPLETED"]'
                 ).wait_for()
    assert view.locator(".dng-progress-label").inner_text() == "63 / 100 · 63%"  # kept
    assert view.locator(".dng-metadata-row").count() == 3
    assert page.console_errors() == []


NOTEBOOK = """\
import durable_nb as dn
from durable_nb.widgets.views import RUN_MIME, widget_for

run = dn.get_run({run_id!r})
display(run)  # the Lab extension's live output
display(widget_for(run), exclude=[RUN_MIME])  # the anywidget view, as in VS Code
"""


def test_a_notebooks_views_follow_progress_and_metadata_live(page, lab):
    key = f"stage-{os.urandom(4).hex()}"
    run = stages.trigger(key)
    wait_status(run, "WAITING")
    lab.write_notebook("progress.ipynb", [NOTEBOOK.format(run_id=run.id)])
    open_notebook(page, lab, "progress.ipynb")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    views = [page.locator(f'{OUTPUT}[data-run-id="{run.id}"]'),
             page.locator(f'{WIDGET}[data-run-id="{run.id}"]')]
    for view in views:
        view.locator(".dng-progress").wait_for()
        assert view.locator(".dng-progress-bar.dng-indeterminate").count() == 1
        assert view.locator(".dng-progress-label").inner_text() == "1"
        assert view.locator('.dng-metadata-row[data-key="stage"]').inner_text().split() == [
            "stage", '"read"']
    shot(page, "indeterminate", page.locator(".jp-Cell").first)

    dn.send_event(f"{key}-1")
    for view in views:  # live: both views follow without a reload of the page
        view.locator(".dng-progress-label", has_text="2 / 3 · 66%").wait_for()
        assert view.locator(".dng-progress-text").inner_text() == "writing"
        view.locator('.dng-metadata-row[data-key="stage"]', has_text='"write"').wait_for()
        assert view.locator(".dng-progress-bar.dng-indeterminate").count() == 0
    shot(page, "live", page.locator(".jp-Cell").first)

    dn.send_event(f"{key}-2")
    assert run.result(timeout=30) == "done"
    for view in views:
        page.locator(f'{OUTPUT}[data-run-id="{run.id}"][data-status="COMPLETED"]').wait_for()
        view.locator(".dng-progress-label", has_text="3 / 3 · 100%").wait_for()
    shot(page, "finished", page.locator(".jp-Cell").first)
    assert page.console_errors() == []
