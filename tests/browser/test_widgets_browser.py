"""The run and runs widgets in a real JupyterLab (durable_nb's server extension hosts the
engine) driven through Debian's Chromium: the quickstart notebook with its approval clicked
in the run's output, a failing step's traceback, a kernel restart while a run executes, and a
second decision refused by a stale view.

A displayed run's output carries the run's id for the Lab extension, which JupyterLab draws
(live from the server's API, `.jp-DurableRunOutput`) instead of the anywidget; the anywidget
view (what VS Code shows) is displayed without that MIME type where a test checks it."""

from __future__ import annotations

import json
import re
import time

import pytest
from _lab import (
    REPO,
    add_cell,
    cell,
    command,
    open_notebook,
    restart_kernel,
    run_all,
    wait_idle,
    wait_until,
)
from playwright.sync_api import Error as PlaywrightError

from durable_nb.core.auth import server_owner
from durable_nb.widgets.views import RUN_MIME

pytestmark = pytest.mark.browser

OUTPUT = ".jp-DurableRunOutput-graph > .dng-run"  # a run output drawn by the Lab extension
WIDGET = ".dng-widget > .dng-run"  # the anywidget view


def run_output(page, run_id: str | None = None, scope=None):
    """The Lab extension's live view of a run output (of ``run_id``) in the page or scope."""
    where = scope if scope is not None else page
    return where.locator(OUTPUT + (f'[data-run-id="{run_id}"]' if run_id else ""))


def saved_outputs(lab, path: str) -> list[dict]:
    """The run outputs of a saved notebook (the display data with the run's id)."""
    nb = json.loads((lab.root / path).read_text())
    return [{k: "".join(v) if isinstance(v, list) else v for k, v in o["data"].items()}
            for c in nb["cells"] if c["cell_type"] == "code"
            for o in c.get("outputs", []) if RUN_MIME in o.get("data", {})]


def save(page) -> None:
    command(page, "docmanager:save")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty")


def shot(page, name: str, locator=None) -> None:
    """Save a screenshot; a live widget may re-render (detach) mid-capture, so the element
    is tried a few times, then the whole page is taken instead."""
    path = str(page.out / f"{name}.png")
    if locator is not None:
        for _ in range(3):
            try:
                locator.screenshot(path=path, timeout=5000)
                return
            except PlaywrightError:
                time.sleep(0.2)
    page.screenshot(path=path)


def notebook_errors(page) -> list[str]:
    """Error outputs of the current notebook's cells."""
    return page.evaluate("""() => {
        const nb = window.jupyterapp.shell.currentWidget.content;
        const out = [];
        for (let i = 0; i < nb.model.cells.length; i++) {
            const cell = nb.model.cells.get(i);
            if (cell.type !== "code") continue;
            for (const o of cell.outputs.toJSON()) {
                if (o.output_type === "error") out.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
            }
        }
        return out;
    }""")


def run_api(lab, run_id: str) -> dict:
    return lab.request("GET", f"durable/api/runs/{run_id}")[1]


# ---------------------------------------------------------------------- (1) quickstart

def test_quickstart_approve_in_the_widget(page, lab):
    """notebooks/01-quickstart.ipynb, run whole; its approval is clicked in the run's output
    (the notebook's own `run.approve(...)` line is taken out: the view does it)."""
    nb = json.loads((REPO / "notebooks" / "01-quickstart.ipynb").read_text())
    approvals = 0
    for c in nb["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        lines = src.splitlines()
        kept = [ln for ln in lines if not ln.strip().startswith("run.approve(")]
        approvals += len(lines) - len(kept)
        c["source"] = "\n".join(kept)
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    assert approvals == 1, "the quickstart should approve once with run.approve(...)"
    (lab.root / "01-quickstart.ipynb").write_text(json.dumps(nb))

    open_notebook(page, lab, "01-quickstart.ipynb")
    run_all(page)
    view = page.locator(OUTPUT, has_text="process-document").first
    approve = view.locator("button.dng-btn-ok")
    approve.wait_for(timeout=60_000)
    run_id = view.get_attribute("data-run-id")
    text = view.inner_text()
    assert "fetch_document" in text and "summarize" in text
    assert "try 3" in text, "the retried step shows its tries"
    assert "ConnectionError" in text and "summarizer unavailable" in text
    assert "revenue up 12%" in view.locator(".dng-data").inner_text()  # the approval data
    # one output per display: the live view, no separate fallback line beside it
    assert page.locator(".durable-nb-fallback").count() == 0
    assert page.locator(".jp-DurableRunOutput-static").first.is_hidden()
    assert page.get_by_text("model not found").count() == 0
    shot(page, "pending", view)

    # the kernel is busy in `run.result(...)` meanwhile: the click goes to the server's API
    view.locator("input.dng-comment").fill("numbers checked")
    approve.click()
    page.locator(f'.dng-run[data-run-id="{run_id}"][data-status="COMPLETED"]').first.wait_for()
    assert view.locator("button.dng-btn-ok").count() == 0
    assert "approved by" in view.inner_text()
    wait_idle(page, 120)
    assert notebook_errors(page) == []
    wait = [w for w in run_api(lab, run_id)["waits"] if w["kind"] == "approval"][0]
    assert wait["outcome"] == "approved" and wait["comment"] == "numbers checked"
    assert wait["resolved_by"], "the Jupyter user is recorded as the approver"
    shot(page, "completed", view)
    # saved now, the kernel alive: the file has the run's final state for nbviewer/GitHub
    save(page)
    final = [d for d in saved_outputs(lab, "01-quickstart.ipynb")
             if d[RUN_MIME]["run_id"] == run_id]
    assert final and all(d[RUN_MIME]["status"] == "COMPLETED" for d in final)
    assert all("COMPLETED" in d["text/html"] and "fetch_document" in d["text/html"]
               for d in final)
    assert page.console_errors() == []


# ---------------------------------------------------------------------- (4) a failing step

FAILING = """\
import durable_nb as dn

@dn.step
def parse_amount(text):
    return int(text)

@dn.task(id="browser-fails", retry=dn.Retry(max_attempts=1))
def import_invoice(text):
    return parse_amount(text) * 100

run = import_invoice.trigger("twelve")
run
"""


def test_failing_step_shows_its_traceback(page, lab):
    lab.write_notebook("failing.ipynb", [FAILING])
    open_notebook(page, lab, "failing.ipynb")
    run_all(page)
    view = run_output(page).first
    view.wait_for()
    page.locator(f'{OUTPUT}[data-status="FAILED"]').wait_for()
    step = view.locator(".dng-node", has_text="parse_amount").first
    assert "ValueError" in step.inner_text()
    assert "invalid literal for int()" in step.inner_text()
    tb = step.locator("pre.dng-tb")
    assert tb.is_visible(), "a failed step opens to its traceback"
    assert "parse_amount" in tb.inner_text() and "ValueError" in tb.inner_text()
    assert "_context.py" not in tb.inner_text(), "durable_nb's own frames are left out"
    assert view.locator(".dng-end", has_text="failed").count() == 1
    shot(page, "failed", view)
    assert page.console_errors() == []


# ---------------------------------------------------------------------- (3) kernel restart

LONG = """\
import time
import durable_nb as dn

@dn.step
def tick(i):
    time.sleep(0.3)
    print(f"tick {i}", flush=True)
    return i

@dn.task(id="browser-long")
def long_task(n):
    return sum(tick(i) for i in range(n))

run = long_task.trigger(30)
run
"""


# the anywidget view, as frontends without the Lab extension show it (VS Code)
WIDGET_VIEW = """\
from durable_nb.widgets.views import RUN_MIME, widget_for
display(widget_for(run), exclude=[RUN_MIME])
"""


def test_kernel_restart_then_reattach_shows_the_finished_graph(page, lab):
    lab.write_notebook("restart.ipynb", [LONG, WIDGET_VIEW])
    open_notebook(page, lab, "restart.ipynb")
    run_all(page)
    view = run_output(page, scope=cell(page, 0)).first
    view.wait_for()
    run_id = view.get_attribute("data-run-id")
    widget = cell(page, 1).locator(f'{WIDGET}[data-run-id="{run_id}"]')
    widget.wait_for()
    view.locator(".dng-node", has_text="tick#2").wait_for()  # the view is live
    restart_kernel(page)
    assert run_api(lab, run_id)["status"] == "EXECUTING", "the run outlives the kernel"
    # the anywidget view says its kernel went away and how to re-attach
    notice = widget.locator(".dng-notice-warning")
    notice.wait_for()
    assert f"%durable attach {run_id}" in notice.inner_text()
    shot(page, "after-restart", cell(page, 1))
    # the Lab extension's view needs no kernel: it follows the run to its end
    page.locator(f'.jp-Cell >> nth=0 >> {OUTPUT}[data-status="COMPLETED"]').wait_for(
        timeout=60_000)
    shot(page, "after-restart-output", cell(page, 0))

    # re-attach in the new kernel: a live view that follows the run to its end
    index = add_cell(page, f"import durable_nb as dn\ndn.get_run({run_id!r})")
    again = run_output(page, run_id, cell(page, index))
    again.wait_for()
    page.locator(f'.jp-Cell >> nth={index} >> {OUTPUT}[data-status="COMPLETED"]').wait_for(
        timeout=60_000)
    assert "× 30" in again.locator(".dng-node", has_text="tick").inner_text()  # folded loop
    assert "tick 29" in again.locator(".dng-logs").inner_text()
    assert again.locator(".dng-notice-warning").count() == 0
    shot(page, "reattached", cell(page, index))

    # reopened later with a new kernel: the saved outputs show the run, live, and no error
    page.evaluate("() => window.jupyterapp.shell.currentWidget.content.model.cells.get(1)"
                  ".outputs.clear()")  # the anywidget's model dies with its kernel
    save(page)
    restart_kernel(page)
    open_notebook(page, lab, "restart.ipynb")
    first = cell(page, 0)
    run_output(page, run_id, first).wait_for()
    assert first.locator(f'{OUTPUT}[data-status="COMPLETED"]').count() == 1
    saved = [d for d in saved_outputs(lab, "restart.ipynb") if d[RUN_MIME]["run_id"] == run_id]
    assert saved and all(f"%durable attach {run_id}" in d["text/html"] for d in saved)
    assert page.get_by_text("model not found").count() == 0
    shot(page, "reopened", first)
    assert page.console_errors() == []


# ---------------------------------------------------------------------- (2) decisions

APPROVAL = """\
import durable_nb as dn

@dn.task(id="browser-ship")
def ship(version):
    decision = dn.approval("release", data={"version": version, "changes": 12}, timeout="1h")
    return {"approved": decision.approved, "by": decision.by}

first = ship.trigger("1.0")
first
"""


THROUGH_KERNEL = """\
from durable_nb.widgets.views import RunWidget

w = RunWidget(ship.trigger("3.0"))
w.engine = {"instance": None, "server": False}  # as in VS Code: no durable API in the page
w
"""


SECOND_WIDGET = """\
from durable_nb.widgets.views import RUN_MIME, widget_for
display(widget_for(second), exclude=[RUN_MIME])  # the anywidget view, as in VS Code
"""


def test_decisions_resolve_once_across_views(page, lab):
    lab.write_notebook("decide.ipynb", [APPROVAL, "first", "second = ship.trigger('2.0')\nsecond",
                                        "from durable_nb.widgets.views import RUNS_MIME\n"
                                        "display(dn.runs_widget(limit=5), exclude=[RUNS_MIME])",
                                        THROUGH_KERNEL,
                                        SECOND_WIDGET])
    open_notebook(page, lab, "decide.ipynb")
    run_all(page)
    one = run_output(page, scope=cell(page, 0))
    two = run_output(page, scope=cell(page, 1))
    one.locator("button.dng-btn-ok").wait_for()
    two.locator("button.dng-btn-ok").wait_for()
    first_id = one.get_attribute("data-run-id")
    assert two.get_attribute("data-run-id") == first_id  # two views of one run

    # Reject in one view: the buttons disappear from both
    one.locator("input.dng-comment").fill("not this week")
    one.locator("button.dng-btn-no").click()
    page.locator(f'{OUTPUT}[data-run-id="{first_id}"][data-status="COMPLETED"]').nth(1).wait_for()
    assert one.locator("button.dng-btn-ok").count() == 0
    assert two.locator("button.dng-btn-ok").count() == 0
    assert "rejected by" in two.inner_text() and "not this week" in two.inner_text()

    # the runs table lists both runs, with the pending approval; a click opens the graph
    table = cell(page, 3).locator(".dng-runs")
    second_view = run_output(page, scope=cell(page, 2))
    second_view.locator("button.dng-btn-ok").wait_for()
    second_id = second_view.get_attribute("data-run-id")
    row = table.locator(f'tr[data-run-id="{second_id}"]')
    row.wait_for()
    wait_until(lambda: "release" in row.inner_text(), what="the pending approval in the table")
    row.click()
    detail = table.locator(f'.dng-detail .dng-run[data-run-id="{second_id}"]')
    detail.wait_for()
    shot(page, "runs-table", table)

    # no Jupyter durable API for this view (as in VS Code): the decision goes via the kernel
    third = cell(page, 4).locator(".dng-widget > .dng-run")
    third.locator("button.dng-btn-ok").wait_for()
    third_id = third.get_attribute("data-run-id")
    third.locator("input.dng-comment").fill("via the kernel")
    third.locator("button.dng-btn-ok").click()
    page.locator(f'.dng-run[data-run-id="{third_id}"][data-status="COMPLETED"]').first.wait_for()
    wait = [w for w in run_api(lab, third_id)["waits"] if w["kind"] == "approval"][0]
    assert wait["comment"] == "via the kernel" and wait["outcome"] == "approved"

    # a stale anywidget view (its kernel restarted) still shows buttons; the CLI decides
    # first; the click is refused with the engine's reason, not a JavaScript error
    stale = cell(page, 5).locator(f'{WIDGET}[data-run-id="{second_id}"]')
    stale.locator("button.dng-btn-ok").wait_for()
    restart_kernel(page)
    stale.locator(".dng-notice-warning").wait_for()
    status, _ = lab.request("POST", f"durable/api/runs/{second_id}/approve",
                            {"comment": "from the CLI", "by": "ops"})
    assert status == 200
    # the Lab extension's view of the run needs no kernel: it shows the decision at once
    second_view.locator("button.dng-btn-ok").wait_for(state="detached")
    assert "approved by" in second_view.inner_text()
    stale.locator("button.dng-btn-ok").click()
    refusal = stale.locator(".dng-notice-error")
    refusal.wait_for()
    # the decider is the server's owner; the name the CLI gave ("ops") is only a note
    owner = re.escape(server_owner())
    assert re.search(rf"already approved by {owner} \(.from the CLI.\)", refusal.inner_text())
    assert stale.locator("button.dng-btn-ok").count() == 0  # the view caught up
    shot(page, "refused", cell(page, 5))
    assert not [e for e in page.console if e[0] == "pageerror"]
    assert page.console_errors() == []
