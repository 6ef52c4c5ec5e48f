"""notebooks/03-data-job.ipynb as a user meets it: executed top to bottom by nbclient against
a real `jupyter lab`'s engine (no `--wait` anywhere), saved, then reopened in Chromium with no
kernel running. Its run views are live from the server: the durable cells show COMPLETED,
and the sign-off run's Approve button completes it."""

from __future__ import annotations

import nbformat
import pytest
from _lab import REPO, wait_until
from nbclient import NotebookClient
from test_saved_notebook import RUN_MIME, kernel_env, open_without_kernel

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = REPO / "notebooks" / "03-data-job.ipynb"


def _runs_by_cell(nb) -> dict[str, str]:
    """The run id each durable cell displayed, by the cell's --name."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("%%durable --name "):
            name = cell.source.split()[2]
            ids = [o["data"][RUN_MIME]["run_id"] for o in cell.outputs
                   if RUN_MIME in o.get("data", {})]
            assert len(ids) == 1, f"one run view in {name}: {cell.outputs}"
            out[name] = ids[0]
    return out


@pytest.mark.timeout(600)
def test_the_saved_data_job_shows_live_runs_and_its_approval_works(page, lab):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(lab.root)}}).execute(env=kernel_env(lab))
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            assert o.output_type != "error", f"{o.ename}: {o.evalue}"
    runs = _runs_by_cell(nb)
    assert set(runs) == {"load-orders", "forecast-regions", "plot-orders", "publish-report"}

    def status(rid: str) -> str:
        return lab.request("GET", f"durable/api/runs/{rid}")[1]["status"]

    for name in ("load-orders", "forecast-regions", "plot-orders"):
        wait_until(lambda n=name: status(runs[n]) == "COMPLETED", 120, f"{name} to complete")
    wait_until(lambda: status(runs["publish-report"]) == "WAITING", 60, "the sign-off to wait")

    nb.metadata.pop("kernelspec", None)  # the notebook names no kernel: Lab asks, we say none
    nb.metadata.pop("language_info", None)
    nbformat.write(nb, str(lab.root / "data-job.ipynb"))
    assert lab.request("GET", "api/kernels")[1] == []
    open_without_kernel(page, lab, "data-job.ipynb")

    for name in ("load-orders", "forecast-regions", "plot-orders"):
        view = page.locator(f'.jp-DurableRunOutput[data-run-id="{runs[name]}"]')
        view.locator('.dng-run[data-status="COMPLETED"]').wait_for(state="attached")
        view.scroll_into_view_if_needed()  # Lab draws only the cells in view
        assert name in view.inner_text()
    publish = page.locator(f'.jp-DurableRunOutput[data-run-id="{runs["publish-report"]}"]')
    approve = publish.locator("button.dng-btn-ok")
    approve.wait_for()
    publish.scroll_into_view_if_needed()
    page.screenshot(path=str(page.out / "reopened.png"), full_page=True)
    publish.screenshot(path=str(page.out / "sign-off-waiting.png"))

    publish.locator("input.dng-comment").fill("numbers checked")
    approve.click()
    publish.locator('.dng-run[data-status="COMPLETED"]').wait_for(timeout=60_000)
    run = lab.request("GET", f"durable/api/runs/{runs['publish-report']}")[1]
    assert run["status"] == "COMPLETED"
    decision = [w for w in run["waits"] if w["kind"] == "approval"][0]
    assert decision["outcome"] == "approved" and decision["comment"] == "numbers checked"
    publish.screenshot(path=str(page.out / "sign-off-approved.png"))

    assert page.get_by_text("model not found").count() == 0
    assert "model not found" not in page.locator("body").inner_text()
    assert lab.request("GET", "api/kernels")[1] == [], "Lab started a kernel"
