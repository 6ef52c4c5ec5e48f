"""A notebook executed with nbclient against a real `jupyter lab`'s engine, saved, then
reopened in Chromium with no kernel at all: its run outputs are drawn live by the Lab
extension from the server's REST API (the cell run that was EXECUTING when displayed shows
COMPLETED; the waiting run's approval button works), an output of a run this server does not
know says so over its saved snapshot, a `%durable list` output is a live table of the runs
with their current statuses whose status and task dropdowns (starting from the saved filters)
change the rows and whose row shows that run's graph under the table (with a button that opens
it in the main area), a runs table the server refuses to list says so over its saved table,
and nothing says "model not found"."""

from __future__ import annotations

import os

import nbformat
import pytest
from _lab import REPO, wait_until
from nbclient import NotebookClient

from durable_nb.core import runtime

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN_MIME = "application/vnd.durable-nb.run+json"
RUNS_MIME = "application/vnd.durable-nb.runs+json"

TASK = """\
import durable_nb as dn
%load_ext durable_nb

@dn.task(id="saved-ship")
def ship(version):
    decision = dn.approval("release", data={"version": version}, timeout="1h")
    return {"approved": decision.approved, "comment": decision.comment}

waiting = ship.trigger("1.0")
waiting
"""

CELL = """\
%%durable
import time
total = 0
for i in range(4):
    time.sleep(1)
    total += i
print("total", total)
"""

LIST = "%durable list"
LIST_PAGE = "%durable list --limit 1"


def kernel_env(lab) -> dict[str, str]:
    """A kernel's environment as the Lab server gives it to the kernels it starts."""
    info = runtime.read(lab.db)
    assert info is not None, "the Lab server wrote no runtime file for its engine"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_NB_")}
    env.update(DURABLE_NB_URL=info["url"], DURABLE_NB_TOKEN=info["token"],
               DURABLE_NB_DB=str(lab.db), JPY_PARENT_PID=str(lab.proc.pid),
               PYTHONPATH=os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH")] if p))
    if info.get("socket"):
        env["DURABLE_NB_SOCKET"] = info["socket"]
    return env


def run_outputs(nb) -> list[tuple[int, dict]]:
    return [(i, o["data"]) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.outputs if RUN_MIME in o.get("data", {})]


def executed_notebook(lab):
    """The notebook executed by nbclient against the Lab's engine (kernel gone after)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (TASK, CELL, LIST, LIST_PAGE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(lab.root)}}).execute(env=kernel_env(lab))
    return nb


def add_foreign_output(nb) -> None:
    """An output of a run this server's engine never had (displayed against another one)."""
    snapshot = ('<div data-durable-run="run_elsewhere"><b>elsewhere-task</b> '
                "<span>COMPLETED</span> saved snapshot</div>")
    nb.cells.append(nbformat.v4.new_code_cell("other_run", outputs=[
        nbformat.v4.new_output("display_data", data={
            RUN_MIME: {"run_id": "run_elsewhere", "task_id": "elsewhere-task",
                       "kind": "task", "status": "COMPLETED", "updated_at": 1.0},
            "text/html": snapshot, "text/plain": "durable_nb run run_elsewhere"})]))


def runs_output(nb) -> dict:
    """The data of the `%durable list` cell's one output."""
    found = [o["data"] for c in nb.cells if c.cell_type == "code" and c.source == LIST
             for o in c.outputs if RUNS_MIME in o.get("data", {})]
    assert len(found) == 1, "one runs table output"
    return found[0]


def add_refused_runs_output(nb, saved: dict) -> None:
    """A runs table whose filter the server refuses (a task id longer than it takes)."""
    nb.cells.append(nbformat.v4.new_code_cell("%durable list --task ...", outputs=[
        nbformat.v4.new_output("display_data", data={
            RUNS_MIME: {"status": "", "task": "x" * 1001, "limit": 25, "instance": None},
            "text/html": saved["text/html"], "text/plain": saved["text/plain"]})]))


def add_filtered_runs_output(nb, saved: dict) -> None:
    """A runs table saved with a status filter (lower case, as a user may type it)."""
    nb.cells.append(nbformat.v4.new_code_cell("%durable list --status completed", outputs=[
        nbformat.v4.new_output("display_data", data={
            RUNS_MIME: {"status": "completed", "task": "", "limit": 25, "instance": None},
            "text/html": saved["text/html"], "text/plain": saved["text/plain"]})]))


def live_tables(page):
    return page.locator('.jp-DurableRunsOutput[data-state="live"]')


def live_row(page, run_id: str, status: str):
    """The first live runs table's row of a run once it shows that status."""
    table = live_tables(page).first
    row = table.locator(f'tr[data-run-id="{run_id}"][data-status="{status}"]')
    row.wait_for()
    return row


def check_refused_table(page) -> None:
    refused = page.locator('.jp-DurableRunsOutput[data-state="error"]')
    refused.locator(".jp-DurableRunsOutput-static table").wait_for()
    note = refused.locator(".jp-DurableRunsOutput-notice")
    assert note.is_visible()
    assert "Could not list the runs" in note.inner_text()
    assert "last known state" in refused.inner_text()  # the saved table, under the note
    refused.screenshot(path=str(page.out / "runs-refused.png"))


def check_paging(page, newer: str, older: str) -> None:
    """The `--limit 1` table pages through the two runs, newest first."""
    paged = live_tables(page).nth(1)
    paged.locator(f'tr[data-run-id="{newer}"]').wait_for()
    assert paged.locator(".jp-DurableRunsOutput-range").inner_text() == "1–1 of 2"
    assert paged.locator("button[aria-label='Newer runs']").is_disabled()
    paged.locator("button[aria-label='Older runs']").click()
    paged.locator(f'tr[data-run-id="{older}"]').wait_for()
    assert paged.locator(".jp-DurableRunsOutput-range").inner_text() == "2–2 of 2"
    assert paged.locator("button[aria-label='Older runs']").is_disabled()
    paged.screenshot(path=str(page.out / "runs-page-2.png"))


def shown_runs(table) -> list[str]:
    """The run ids a runs table lists, in order."""
    return table.locator("tbody tr[data-run-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)")


def show_filtered(table, status: str, task: str, ids: list[str], what: str) -> None:
    """Pick a status group (by its label) and a task; the table lists just `ids`."""
    table.locator("select[aria-label='status']").select_option(label=status)
    table.locator("select[aria-label='task']").select_option(value=task)
    wait_until(lambda: shown_runs(table) == ids, 30, what)


def check_filters(page, waiting_id: str, cell_id: str, cell_task: str) -> None:
    """The status and task dropdowns offer the runs widget's choices, start from the saved
    filters and change the rows the table lists."""
    runs = live_tables(page).first
    status = runs.locator("select[aria-label='status']")
    task = runs.locator("select[aria-label='task']")
    assert status.input_value() == "" and task.input_value() == ""
    assert status.locator("option").all_inner_texts() == [
        "all statuses", "active", "queued", "delayed", "executing", "waiting", "completed",
        "failed", "canceled / expired"]
    assert task.locator("option").all_inner_texts() == ["all tasks", *sorted(
        {"saved-ship", cell_task})]
    show_filtered(runs, "waiting", "", [waiting_id], "only the waiting run listed")
    assert runs.locator(".jp-DurableRunsOutput-range").inner_text() == "1–1 of 1"
    runs.screenshot(path=str(page.out / "runs-filter-waiting.png"))
    show_filtered(runs, "completed", "", [cell_id], "only the completed run listed")
    show_filtered(runs, "failed", "", [], "no failed run listed")
    assert runs.locator(".jp-DurableRunsOutput-range").inner_text() == "no runs match"
    show_filtered(runs, "active", "saved-ship", [waiting_id], "the task's active run")
    show_filtered(runs, "completed", "saved-ship", [], "the task has no completed run")
    show_filtered(runs, "all statuses", "saved-ship", [waiting_id], "the task's runs")
    runs.screenshot(path=str(page.out / "runs-filter-task.png"))
    show_filtered(runs, "all statuses", "", [cell_id, waiting_id], "all runs again")
    # a table saved with a status filter starts from it
    saved = live_tables(page).nth(2)
    wait_until(lambda: shown_runs(saved) == [cell_id], 30, "the saved filter's runs")
    assert saved.locator("select[aria-label='status']").input_value() == "COMPLETED"


def check_row_graph(page, waiting_id: str, cell_id: str) -> None:
    """A click on a row shows that run's graph under the table (a click on another row
    switches to it); the close button hides it."""
    runs = live_tables(page).first
    live_row(page, cell_id, "COMPLETED").click()
    detail = runs.locator(f'.jp-DurableRunsOutput-detail[data-run-id="{cell_id}"]')
    detail.locator('.dng-run[data-status="COMPLETED"]').wait_for()
    assert "total 6" in detail.inner_text()  # its log, from the server
    assert "jp-mod-selected" in live_row(page, cell_id, "COMPLETED").get_attribute("class")
    runs.screenshot(path=str(page.out / "runs-row-graph.png"))
    live_row(page, waiting_id, "WAITING").click()
    other = runs.locator(f'.jp-DurableRunsOutput-detail[data-run-id="{waiting_id}"]')
    other.locator("button.dng-btn-ok").wait_for()  # its approval form
    assert runs.locator(".jp-DurableRunsOutput-detail").count() == 1
    runs.screenshot(path=str(page.out / "runs-row-graph-waiting.png"))
    runs.locator("button[aria-label='Hide this run']").click()
    runs.locator(".jp-DurableRunsOutput-detail").wait_for(state="detached")
    assert not runs.locator(".jp-DurableRunsOutput-detailBar").is_visible()


def open_from_table(page, run_id: str) -> None:
    """A click on a row shows the run under the table; its button opens the run's view in
    the main area."""
    live_row(page, run_id, "COMPLETED").click()
    live_tables(page).first.get_by_role("button", name="Open in main area").click()
    view = page.locator(f"#durable-run-{run_id} .jp-DurableRunView")
    view.locator('.dng-run[data-status="COMPLETED"]').wait_for()
    assert "total 6" in view.inner_text()
    page.screenshot(path=str(page.out / "opened-from-table.png"), full_page=True)


def open_without_kernel(page, lab, path: str) -> None:
    """Open the notebook choosing "No Kernel" (it names no kernel, so Lab asks)."""
    page.goto(f"{lab.url}lab/workspaces/nokernel/tree/{path}?reset&token={lab.token}")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=90_000)
    page.screenshot(path=str(page.out / "kernel-dialog.png"))
    select = dialog.locator("select")
    no_kernel = select.locator("option", has_text="No Kernel").get_attribute("value")
    select.select_option(value=no_kernel)
    dialog.locator(".jp-mod-accept").click()
    dialog.wait_for(state="detached")
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for()


def show_snapshots(page, outputs) -> None:
    """The static HTML of the saved outputs alone, as GitHub or nbviewer would show it."""
    other = page.context.new_page()
    other.set_content("".join(data["text/html"] for _, data in outputs))
    other.screenshot(path=str(page.out / "static-snapshots.png"), full_page=True)
    assert other.locator("script").count() == 0
    other.close()


def test_saved_notebook_shows_live_runs_without_a_kernel(page, lab):
    nb = executed_notebook(lab)
    outputs = run_outputs(nb)
    assert [i for i, _ in outputs] == [0, 1], "one output per displayed run"
    for _, data in outputs:
        assert "application/vnd.jupyter.widget-view+json" in data
        assert data["text/html"].startswith("<div") and "<script" not in data["text/html"]
    waiting_id = outputs[0][1][RUN_MIME]["run_id"]
    cell_id = outputs[1][1][RUN_MIME]["run_id"]
    saved_status = outputs[1][1][RUN_MIME]["status"]
    assert saved_status in ("QUEUED", "EXECUTING"), "saved while the cell run was going on"
    assert saved_status in outputs[1][1]["text/html"]
    table = runs_output(nb)
    assert table[RUNS_MIME]["status"] == "" and table[RUNS_MIME]["task"] == ""
    assert waiting_id in table["text/html"] and cell_id in table["text/html"]
    assert "<script" not in table["text/html"]

    # the kernel is gone; the notebook names no kernel, so Lab starts none by itself
    nb.metadata.pop("kernelspec", None)
    nb.metadata.pop("language_info", None)
    add_foreign_output(nb)
    add_refused_runs_output(nb, table)
    add_filtered_runs_output(nb, table)
    nbformat.write(nb, str(lab.root / "saved.ipynb"))
    wait_until(lambda: lab.request("GET", f"durable/api/runs/{cell_id}")[1]["status"]
               == "COMPLETED", 60, "the cell run to complete")
    assert lab.request("GET", "api/kernels")[1] == []

    open_without_kernel(page, lab, "saved.ipynb")
    assert lab.request("GET", "api/kernels")[1] == [], "Lab started a kernel"
    cell_view = page.locator(f'.jp-DurableRunOutput[data-run-id="{cell_id}"]')
    cell_view.locator('.dng-run[data-status="COMPLETED"]').wait_for()
    # its log, from the server; folded, since a live kernel printed it in the cell as well
    logs = cell_view.locator(".dng-logs")
    assert "also in the cell below" in logs.locator("summary").inner_text()
    logs.locator("summary").click()
    assert "total 6" in cell_view.inner_text()
    waiting = page.locator(f'.jp-DurableRunOutput[data-run-id="{waiting_id}"]')
    approve = waiting.locator("button.dng-btn-ok")
    approve.wait_for()
    assert "saved-ship" in waiting.inner_text()
    foreign = page.locator('.jp-DurableRunOutput[data-run-id="run_elsewhere"]')
    foreign.locator(".jp-DurableRunOutput-static").wait_for()
    assert "not on this Jupyter server" in foreign.inner_text()
    assert "saved snapshot" in foreign.inner_text()
    # the runs table lists the runs live: the cell run is COMPLETED (saved while it ran)
    live_row(page, cell_id, "COMPLETED")
    assert "release" in live_row(page, waiting_id, "WAITING").inner_text()
    runs = live_tables(page).first
    assert runs.locator(".jp-DurableRunsOutput-range").inner_text() == "1–2 of 2"
    page.screenshot(path=str(page.out / "reopened.png"), full_page=True)
    foreign.screenshot(path=str(page.out / "not-on-this-server.png"))
    runs.screenshot(path=str(page.out / "runs-table.png"))
    check_refused_table(page)
    check_paging(page, cell_id, waiting_id)
    cell_task = lab.request("GET", f"durable/api/runs/{cell_id}")[1]["task_id"]
    check_filters(page, waiting_id, cell_id, cell_task)
    check_row_graph(page, waiting_id, cell_id)

    waiting.locator("input.dng-comment").fill("shipped from the saved notebook")
    approve.click()
    waiting.locator('.dng-run[data-status="COMPLETED"]').wait_for()
    run = lab.request("GET", f"durable/api/runs/{waiting_id}")[1]
    assert run["status"] == "COMPLETED"
    wait = [w for w in run["waits"] if w["kind"] == "approval"][0]
    assert wait["outcome"] == "approved"
    assert wait["comment"] == "shipped from the saved notebook"
    live_row(page, waiting_id, "COMPLETED")  # the runs table heard of it too
    assert "release" not in runs.locator(f'tr[data-run-id="{waiting_id}"]').inner_text()
    page.screenshot(path=str(page.out / "approved.png"), full_page=True)
    runs.screenshot(path=str(page.out / "runs-table-approved.png"))
    open_from_table(page, cell_id)

    assert "model not found" not in page.locator("body").inner_text()
    assert page.get_by_text("model not found").count() == 0
    assert not [m for _, m in page.console if "model not found" in m]
    assert lab.request("GET", "api/kernels")[1] == []
    show_snapshots(page, [*outputs, (2, table)])
    # the refused requests the page made: the foreign run's lookup (404), the runs list
    # whose task filter is too long (400)
    assert [e for e in page.console_errors() if "404" not in e and "400" not in e] == []
