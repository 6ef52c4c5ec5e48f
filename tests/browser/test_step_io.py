"""A step's arguments and output in a real JupyterLab: a run whose step fails once and is
retried, then returns a DataFrame; clicking the step shows its call and the DataFrame's
head, and its tries show once each with their numbers. Once with the run drawn from the
server's REST API (the kernel uses the server's engine), once in the widget whose requests
go through the kernel (the kernel uses an engine of its own)."""

from __future__ import annotations

import pytest
from _lab import command, open_notebook, run_all, run_view, wait_idle
from _support import run_cli
from test_widgets_browser import notebook_errors, shot

pytestmark = pytest.mark.browser

SOURCE = """\
import pathlib
import durable_nb as dn
import pandas as pd
{setup}
MARK = {mark!r}

@dn.step(retry=dn.Retry(max_attempts=3, min_timeout=0.2, randomize=False))
def load(city, limit=3):
    mark = pathlib.Path(MARK)
    if not mark.exists():
        mark.write_text("failed once")
        raise ConnectionError("the data server is busy")
    return pd.DataFrame({{"city": [city] * limit, "n": range(limit)}})

@dn.task(id="browser-step-io")
def report(city):
    return int(load(city, limit=4)["n"].sum())

run = report.trigger("<b>Oslo</b>")
run
"""


# the kernel's own engine (started detached, stopped by the test): the widget cannot call
# it from the page, so it asks the kernel
OWN_ENGINE = """\
dn.connect(db={db!r})
"""


def stop_own_engine(lab, db) -> None:
    """Shut the kernels down (their clients would start the engine again), then the engine."""
    for k in lab.request("GET", "api/kernels")[1]:
        lab.request("DELETE", f"api/kernels/{k['id']}")
    out = run_cli("stop", env={"DURABLE_NB_DB": str(db)})
    assert out.returncode == 0 and "stopped engine" in out.stdout, (out.stdout, out.stderr)


@pytest.mark.parametrize("where", ["server", "kernel"])
def test_clicking_a_step_shows_its_arguments_and_output(page, lab, where, request):
    mark = lab.root / f"failed-once-{where}.mark"
    own = lab.root / "own.duckdb"
    setup = OWN_ENGINE.format(db=str(own)) if where == "kernel" else ""
    if where == "kernel":
        request.addfinalizer(lambda: stop_own_engine(lab, own))
    lab.write_notebook(f"step-io-{where}.ipynb", [SOURCE.format(mark=str(mark), setup=setup)])
    open_notebook(page, lab, f"step-io-{where}.ipynb")
    run_all(page)
    done = page.locator('.jp-OutputArea .dng-run[data-status="COMPLETED"]')
    done.wait_for(timeout=60_000)
    view = done.first
    if where == "kernel":
        assert run_view(page).count() == 1, "drawn by the widget"
    step = view.locator(".dng-node", has_text="load").first
    # the failed try and its retry: each once, with its own number
    labels = step.locator(".dng-try-label").all_inner_texts()
    assert len(labels) == 2 and labels[0].startswith("↻ try 1 failed · retried after"), labels
    assert labels[1].startswith("✓ try 2"), labels
    assert sum("try 1" in t for t in labels) == 1 and sum("try 2" in t for t in labels) == 1
    assert "completed" in step.locator(".dng-badge").inner_text()

    step.locator(".dng-step-title").click()
    box = step.locator(".dng-io")
    box.locator(".dng-io-table").wait_for()
    text = box.inner_text()
    assert "'<b>Oslo</b>'" in text and "limit=" in text and "4" in text
    assert "shape 4 × 2" in text
    cells = box.locator(".dng-io-table td").all_inner_texts()
    assert cells[:2] == ["<b>Oslo</b>", "0"], cells
    assert box.locator("b", has_text="Oslo").count() == 0, "user text is never parsed as HTML"
    assert "ConnectionError" in box.locator(".dng-io-try").inner_text()  # try 1's error
    shot(page, "step-io", view)
    wait_idle(page)
    assert notebook_errors(page) == []
    if where == "server":  # the JupyterLab panel's view of the run does the same
        run_id = view.get_attribute("data-run-id")
        command(page, "durable-nb:open-run", {"id": run_id})
        # the panel's tab is in front now: its graph is the one visible
        panel = page.locator(f'.dng-run[data-run-id="{run_id}"]').locator("visible=true").first
        panel.locator(".dng-step-title", has_text="load").click()
        panel.locator(".dng-io .dng-io-table").wait_for()
        assert "'<b>Oslo</b>'" in panel.locator(".dng-io").inner_text()
        shot(page, "panel-step-io")
    assert page.console_errors() == []
