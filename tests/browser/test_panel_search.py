"""The "Durable runs" sidebar's search box and the origin of cell runs, in a real Chromium
against a real `jupyter lab`: a notebook runs two %%durable cells; typing in the search box
lists only the matching runs; a click on a cell run's label (in the list and in the run
view) opens its notebook with that cell active; a notebook that is gone says so."""

from __future__ import annotations

import pytest
from _lab import open_notebook, open_panel, run_all, wait_until

import durable_nb as dn

pytestmark = pytest.mark.browser

FILLER = "\n".join(f"line_{i} = {i}" for i in range(60))  # pushes the last cell off screen


@dn.task(id="search-nightly-report")
def nightly(x: int) -> int:
    return x


@pytest.fixture(scope="module", autouse=True)
def client(lab_client):
    return lab_client


@pytest.fixture(scope="module")
def cell_runs(lab, browser):
    """A notebook work/analysis.ipynb whose two %%durable cells ran in JupyterLab (one
    named ingest-orders, one unnamed), and a task run; {"ingest", "unnamed", "task"}."""
    import nbformat

    (lab.root / "work").mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in (
        "%load_ext durable_nb",
        "%%durable --name ingest-orders --wait\norders = 3",
        FILLER,
        "%%durable --wait\ntotal = orders * 7",
    )], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    nbformat.write(nb, lab.root / "work" / "analysis.ipynb")  # nbformat 4.5: cells have ids
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    open_notebook(page, lab, "work/analysis.ipynb")
    run_all(page)
    found: dict[str, dict] = {}

    def both_done() -> bool:
        runs = lab.request("GET", "durable/api/runs?q=analysis.ipynb")[1]["runs"]
        found.update({r["task_id"]: r for r in runs if r["status"] == "COMPLETED"})
        return len(found) == 2
    wait_until(both_done, 90, "the two cell runs to complete")
    context.close()
    task = nightly.trigger(1, tags=["nightly"])
    task.wait(timeout=60)
    unnamed = next(r for name, r in found.items() if name != "ingest-orders")
    return {"ingest": found["ingest-orders"], "unnamed": unnamed, "task": {"id": task.id}}



def listed(page) -> set[str]:
    return set(page.locator(".jp-DurableRun").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)"))


def search(page, text: str) -> None:
    box = page.locator(".jp-DurablePanel-search")
    box.click()
    box.fill("")
    box.press_sequentially(text, delay=30)  # typed: the list follows once typing stops
    if box.input_value() != text:  # a busy browser dropped keys (seen once under load)
        box.fill(text)
        box.press("Enter")


def active_cell(page) -> dict:
    """The open notebook's path, active cell (index, id) and whether it is in view."""
    return page.evaluate("""() => {
        const w = window.jupyterapp.shell.currentWidget;
        if (!w || !w.content || w.content.activeCellIndex === undefined) return {};
        const nb = w.content, cell = nb.activeCell;
        const box = cell.node.getBoundingClientRect();
        const view = nb.node.getBoundingClientRect();
        return {path: w.context.path, index: nb.activeCellIndex, id: cell.model.id,
                visible: box.bottom > view.top && box.top < view.bottom};
    }""")


def shot(page, name: str) -> None:
    page.screenshot(path=str(page.out / f"{name}.png"))


def test_cell_runs_know_their_notebook_and_cell(cell_runs, lab):
    import nbformat

    ids = [c.id for c in nbformat.read(lab.root / "work" / "analysis.ipynb", 4).cells]
    for key, index in (("ingest", 1), ("unnamed", 3)):
        origin = cell_runs[key]["origin"]
        assert origin["notebook"].replace("\\", "/").endswith("work/analysis.ipynb")
        assert origin["cell_id"] == ids[index]  # the id JupyterLab sent with the cell
        assert origin["execution_count"] == index + 1


def test_the_search_box_lists_only_matching_runs(page, lab, cell_runs):
    ingest, unnamed, task = (cell_runs[k]["id"] for k in ("ingest", "unnamed", "task"))
    open_panel(page, lab)
    wait_until(lambda: {ingest, unnamed, task} <= listed(page), what="all runs listed")
    search(page, "INGEST")
    wait_until(lambda: listed(page) == {ingest}, what="only the ingest run")
    assert page.locator(".jp-DurablePanel-count").inner_text() == "1 run matches"
    shot(page, "search-ingest")
    search(page, "analysis")  # the notebook of origin (and the unnamed cell's name)
    wait_until(lambda: listed(page) == {ingest, unnamed}, what="the notebook's two runs")
    assert page.locator(".jp-DurablePanel-count").inner_text() == "2 runs match"
    search(page, "nightly")  # a tag (and the task id)
    wait_until(lambda: listed(page) == {task}, what="the tagged run")
    search(page, "no such run'; --")
    wait_until(lambda: not listed(page), what="an empty list")
    empty = page.locator(".jp-DurablePanel-empty").inner_text()
    assert empty == "No runs match “no such run'; --”."
    shot(page, "search-none")
    page.locator(".jp-DurablePanel-search").press("Escape")
    wait_until(lambda: {ingest, unnamed, task} <= listed(page), what="all runs again")
    assert page.console_errors() == []


def test_a_click_on_a_cell_run_opens_its_notebook_at_that_cell(page, lab, cell_runs):
    unnamed, ingest = cell_runs["unnamed"], cell_runs["ingest"]
    open_panel(page, lab)
    row = page.locator(f'.jp-DurableRun[data-run-id="{unnamed["id"]}"]')
    label = row.locator(".jp-DurableOrigin")
    assert label.inner_text() == "analysis.ipynb [4]"
    assert "jp-mod-link" in (label.get_attribute("class") or ""), \
        "the label is not a link: index.ts must pass cellOpener(app) to the panel"
    other = page.locator(f'.jp-DurableRun[data-run-id="{ingest["id"]}"] .jp-DurableOrigin')
    assert other.inner_text() == "analysis.ipynb [2]"  # named: "ingest-orders" from this
    label.click()
    wait_until(lambda: active_cell(page).get("id") == unnamed["origin"]["cell_id"], 60,
               "the notebook open with the run's cell active")
    wait_until(lambda: active_cell(page).get("visible"), what="the cell scrolled into view")
    state = active_cell(page)
    assert state["path"] == "work/analysis.ipynb" and state["index"] == 3
    assert page.locator(".jp-DurableRunView").count() == 0  # the label did not open the run
    shot(page, "opened-from-list")

    # the run view's label does the same, for the other cell
    page.locator(f'.jp-DurableRun[data-run-id="{ingest["id"]}"] .jp-DurableRun-task').click()
    view = page.locator(".jp-DurableRunView-origin")
    view.wait_for()
    assert view.inner_text() == "Started by analysis.ipynb [2] (work/analysis.ipynb)"
    shot(page, "run-view")
    view.locator(".jp-DurableOrigin").click()
    wait_until(lambda: active_cell(page).get("id") == ingest["origin"]["cell_id"], 60,
               "the ingest cell active")
    assert active_cell(page)["index"] == 1
    shot(page, "opened-from-run-view")
    assert page.console_errors() == []


def test_a_notebook_that_is_gone_says_so(page, lab, cell_runs):
    unnamed = cell_runs["unnamed"]
    (lab.root / "work" / "analysis.ipynb").rename(lab.root / "work" / "moved.ipynb")
    try:
        open_panel(page, lab)
        page.locator(f'.jp-DurableRun[data-run-id="{unnamed["id"]}"] .jp-DurableOrigin').click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for()
        text = dialog.inner_text()
        assert "Notebook not found" in text and "work/analysis.ipynb no longer exists" in text
        shot(page, "notebook-gone")
        dialog.locator(".jp-mod-accept, .jp-Dialog-button").first.click()
        assert active_cell(page) == {}
    finally:
        (lab.root / "work" / "moved.ipynb").rename(lab.root / "work" / "analysis.ipynb")
