"""A big run in a real JupyterLab through Chromium: 600 steps under three names, more step
rows than a view loads (500), so every view shows one node per step name with its counts
(from the server's `step_groups`) and fetches a name's steps a page at a time when opened:
the anywidget view in a notebook, the Lab extension's run output, and the sidebar's run
view in the main area."""

from __future__ import annotations

import pytest
from _lab import TAB, cell, open_notebook, run_all

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDGET = ".dng-widget > .dng-run"  # the anywidget view
OUTPUT = ".jp-DurableRunOutput-graph > .dng-run"  # the Lab extension's view of a run output

BIG = """\
import durable_nb as dn

@dn.step
def fetch(i):
    return i

@dn.step
def parse(i):
    if i == 7:
        raise ValueError("bad page")
    return i

@dn.step
def save(i):
    return i

@dn.task(id="browser-big")
def crawl(n):
    for i in range(n):
        fetch(i)
        if i < 200:
            try:
                parse(i)
            except ValueError:
                pass
        if i < 100:
            save(i)
    return n

run = crawl.trigger(300)
run.result(timeout=120)
run
"""

WIDGET_VIEW = """\
from durable_nb.widgets.views import RUN_MIME, widget_for
display(widget_for(run), exclude=[RUN_MIME])
"""


def check_groups(view, out, name: str) -> None:
    """Three nodes with their counts; fetch opens to 100 steps, then 100 more."""
    groups = view.locator(".dng-graph > .dng-group")
    groups.nth(2).wait_for()
    assert groups.count() == 3
    fetch, parse, save = (groups.nth(i) for i in range(3))
    assert "× 300" in fetch.inner_text() and "✓ 300" in fetch.inner_text()
    assert "× 200" in parse.inner_text() and "✕ 1 failed" in parse.inner_text()
    assert "× 100" in save.inner_text() and "✓ 100" in save.inner_text()
    view.screenshot(path=str(out / f"{name}.png"))
    fetch.locator(".dng-group-title").click()
    listed = fetch.locator(".dng-group-steps > .dng-node")
    listed.nth(99).wait_for()
    assert listed.count() == 100
    assert listed.nth(0).locator(".dng-name").inner_text().endswith("fetch#1")
    more = fetch.locator("button.dng-more-btn")
    assert more.inner_text() == "show 100 more (200 not shown)"
    more.click()
    listed.nth(199).wait_for()
    assert listed.nth(199).locator(".dng-name").inner_text().endswith("fetch#200")
    view.screenshot(path=str(out / f"{name}-opened.png"))


def test_every_view_of_a_big_run_groups_its_steps_by_name(page, lab):
    lab.write_notebook("big.ipynb", [BIG, WIDGET_VIEW])
    open_notebook(page, lab, "big.ipynb")
    run_all(page)
    widget = cell(page, 1).locator(f'{WIDGET}[data-status="COMPLETED"]')
    widget.wait_for(timeout=90_000)
    run_id = widget.get_attribute("data-run-id")
    check_groups(widget, page.out, "widget")

    output = cell(page, 0).locator(f'{OUTPUT}[data-run-id="{run_id}"]')
    output.wait_for()
    check_groups(output, page.out, "run-output")

    page.locator(TAB).click()
    page.locator(f'.jp-DurableRun[data-run-id="{run_id}"]').click()
    view = page.locator(f"#durable-run-{run_id} .dng-root > .dng-run")
    view.wait_for()
    check_groups(view, page.out, "panel")
    assert not page.console_errors()
