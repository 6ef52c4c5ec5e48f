"""Tracebacks where a person looks, in a real JupyterLab and Chromium: a task and a helper
defined in notebook cells fail in a worker; the run widget and the panel's run view show
the frames of those cells (``Cell In[N]``) with their lines, and no frame of durable_nb."""

from __future__ import annotations

import uuid

import pytest
from _lab import open_notebook, run_all

pytestmark = pytest.mark.browser

HELPER = """\
import durable_nb as dn

def helper(text):
    amount = int(text)
    return amount * 100
"""

TASK = """\
@dn.step
def parse_amount(text):
    return helper(text)

@dn.task(id="browser-cell-traceback", retry=dn.Retry(max_attempts=1))
def import_invoice(text):
    return parse_amount(text)
"""

TRIGGER = 'run = import_invoice.trigger("twelve")\nrun'


def _check(text: str) -> None:
    assert 'File "Cell In[1]", line 4, in helper' in text and "amount = int(text)" in text
    assert 'File "Cell In[2]", line 3, in parse_amount' in text and "return helper(text)" in text
    assert "durable_nb" not in text and "<dynamic-code>" not in text
    assert "ipykernel_" not in text


def test_the_widget_and_the_panel_show_the_notebooks_cells(page, lab):
    lab.write_notebook("cell-tracebacks.ipynb", [HELPER, TASK, TRIGGER])
    open_notebook(page, lab, "cell-tracebacks.ipynb")
    run_all(page)
    view = page.locator('.jp-NotebookPanel .dng-run[data-status="FAILED"]').first
    view.wait_for(timeout=60_000)  # the widget, or the output's live view of the run
    run_id = view.get_attribute("data-run-id")
    step = view.locator(".dng-node", has_text="parse_amount").first
    tb = step.locator("pre.dng-tb")
    tb.wait_for()
    _check(tb.inner_text())
    view.screenshot(path=str(page.out / "widget.png"))

    page.goto(f"{lab.url}lab/workspaces/{uuid.uuid4().hex[:8]}?reset&token={lab.token}")
    page.locator('.jp-SideBar li[data-id="durable-nb-runs"]').click()
    page.locator(f'.jp-DurableRun[data-run-id="{run_id}"]').click()
    detail = page.locator(f"#durable-run-{run_id}")
    detail.locator('.dng-root > .dng-run[data-status="FAILED"]').wait_for()
    shown = detail.locator("pre.dng-tb").first
    shown.wait_for()
    _check(shown.inner_text())
    page.screenshot(path=str(page.out / "panel.png"))
    assert page.console_errors() == []
