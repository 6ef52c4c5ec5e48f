"""The JupyterLab "Durable runs" sidebar in a real Chromium against a real `jupyter lab`
(fixtures in conftest.py): runs and pending approvals listed live, approve / reject from the
sidebar with the badge on its tab following, the run graph in the main area with replay,
and a run that keeps being shown live across a restart of the kernel that started it.

The server loads the extension as built in this checkout (`durable_nb/labextension`, by
`pip install -e .` or `npm run build` in labextension/).
"""

from __future__ import annotations

import re

import pytest
from _lab import (
    TAB,
    add_cell,
    cell,
    open_notebook,
    open_panel,
    panel_row,
    restart_kernel,
    wait_until,
)

import durable_nb as dn

pytestmark = pytest.mark.browser



# ---------------------------------------------------------------------- tasks (run in workers)

@dn.step
def draft(topic: str) -> dict:
    return {"topic": topic, "words": len(topic) * 100}


@dn.task(id="lab-publish")
def publish(topic: str) -> dict:
    text = draft(topic)
    decision = dn.approval("publish", data=text, timeout=600)
    return {"approved": decision.approved, "comment": decision.comment, "by": decision.by}


@dn.task(id="lab-flaky-once", retry=dn.Retry(max_attempts=1))
def flaky_once(marker: str) -> str:
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ConnectionError("the model server is busy")
    return "done on resume"


@dn.task(id="lab-quick")
def quick(x: int) -> int:
    return x * 2


LONG_CELL = """\
import time
import durable_nb as dn

@dn.step
def tick(i):
    time.sleep(0.4)
    return i

@dn.task(id="lab-long")
def long_task(n):
    return sum(tick(i) for i in range(n))

run = long_task.trigger(14)
print("RUN", run.id)
"""


# ---------------------------------------------------------------------- helpers

@pytest.fixture(scope="module", autouse=True)
def client(lab_client):
    return lab_client




def badge(page) -> str | None:
    """The count of pending approvals drawn on the sidebar tab (None: no badge)."""
    return page.locator(TAB).get_attribute("data-durable-pending")


def wait_status(handle: dn.RunHandle, status: str, timeout: float = 30.0) -> None:
    wait_until(lambda: handle.status == status, timeout, f"run {handle.id} to be {status}")


def shot(page, name: str) -> None:
    page.screenshot(path=str(page.out / f"{name}.png"))


# ---------------------------------------------------------------------- tests

def test_panel_lists_runs_and_approves_from_the_sidebar(page, lab):
    done = quick.trigger(21)
    first, second = publish.trigger("lab panel"), publish.trigger("second")
    assert done.result(timeout=30) == 42
    wait_status(first, "WAITING")
    wait_status(second, "WAITING")

    open_panel(page, lab)
    for run in (first, second):
        panel_row(page, run.id, "WAITING").wait_for()
    panel_row(page, done.id, "COMPLETED").wait_for()
    assert page.locator(".jp-DurableApproval").count() == 2
    assert badge(page) == "2"
    card = page.locator(f'.jp-DurableApproval[data-run-id="{first.id}"]')
    assert "lab panel" in card.locator(".jp-DurableApproval-data").inner_text()
    shot(page, "pending")

    card.locator(".jp-DurableApproval-comment").fill("looks good")
    card.locator("button.jp-mod-approve").click()
    out = first.result(timeout=30)
    assert out["approved"] is True and out["comment"] == "looks good" and out["by"]
    # the sidebar follows by itself: the run completed, one approval left, badge 1
    panel_row(page, first.id, "COMPLETED").wait_for()
    wait_until(lambda: badge(page) == "1", what="the badge to show 1")
    assert page.locator(".jp-DurableApproval").count() == 1
    shot(page, "approved")

    other = page.locator(f'.jp-DurableApproval[data-run-id="{second.id}"]')
    other.locator(".jp-DurableApproval-comment").fill("not now")
    other.locator("button.jp-mod-reject").click()
    assert second.result(timeout=30) == {"approved": False, "comment": "not now",
                                         "by": out["by"]}
    wait_until(lambda: badge(page) is None, what="the badge to go")
    page.get_by_text("No pending approvals").wait_for()
    assert not page.console_errors()


def test_run_view_shows_the_graph_and_replays(page, lab):
    run = publish.trigger("graph")
    wait_status(run, "WAITING")
    open_panel(page, lab)
    panel_row(page, run.id).click()
    view = page.locator(f"#durable-run-{run.id}")
    view.locator(".dng-root").wait_for()
    assert "draft" in view.inner_text() and "publish" in view.inner_text()
    shot(page, "graph")
    # approve in the graph; the view follows to COMPLETED and the badge goes
    view.get_by_role("button", name=re.compile("^Approve")).first.click()
    assert run.result(timeout=30)["approved"] is True
    view.locator('.dng-root > .dng-run[data-status="COMPLETED"]').wait_for()
    wait_until(lambda: badge(page) is None, what="the badge to go")
    # replay from the toolbar: a new run with the same payload opens in its own tab
    view.get_by_role("button", name="Replay").click()  # waits until it is enabled
    replays = wait_until(lambda: [r for r in dn.runs(task="lab-publish")
                                  if r.info().get("replay_of") == run.id], what="a replay")
    new = page.locator(f"#durable-run-{replays[0].id}")
    new.locator(".dng-root").wait_for()
    wait_status(replays[0], "WAITING")
    wait_until(lambda: badge(page) == "1", what="the replay's approval on the badge")
    replays[0].approve("publish", comment="replayed")
    assert replays[0].result(timeout=30)["approved"] is True
    assert not page.console_errors()


def test_a_failed_run_resumes_from_the_sidebar(page, lab, tmp_path):
    run = flaky_once.trigger(str(tmp_path / "tried"))
    wait_status(run, "FAILED")
    open_panel(page, lab)
    failed = panel_row(page, run.id, "FAILED")
    failed.wait_for()
    shot(page, "failed-before-resume")
    failed.locator("button.jp-mod-resume").click()  # shown without a hover
    done = panel_row(page, run.id, "COMPLETED")
    done.wait_for()
    assert run.result(timeout=30) == "done on resume"
    assert done.locator("button.jp-mod-resume").count() == 0, "nothing left to resume"
    shot(page, "resumed")
    assert [a["outcome"] for a in run.attempts] == ["FAILED", "COMPLETED"]
    assert not page.console_errors()


def test_panel_follows_a_run_across_a_kernel_restart(page, lab):
    """(3, the panel's half) the kernel that triggered a run restarts while it executes."""
    lab.write_notebook("restart.ipynb", [])
    open_notebook(page, lab, "restart.ipynb")
    page.locator(TAB).click()
    index = add_cell(page, LONG_CELL)
    text = cell(page, index).locator(".jp-OutputArea-output", has_text="RUN ").inner_text()
    run = dn.get_run(re.search(r"RUN (\S+)", text).group(1))
    panel_row(page, run.id).wait_for()
    wait_status(run, "EXECUTING")

    restart_kernel(page)
    assert run.status == "EXECUTING", "the run outlives the kernel"
    panel_row(page, run.id, "EXECUTING").wait_for()
    # its graph in the main area is live: steps recorded after the restart show up
    panel_row(page, run.id).click()
    graph = page.locator(f"#durable-run-{run.id} .dng-root > .dng-run")
    graph.wait_for()

    def last_step() -> int:  # the highest step key shown (tick#N), grouped or not
        return max(map(int, re.findall(r"tick#(\d+)", graph.text_content())), default=0)

    seen = last_step()
    wait_until(lambda: last_step() > seen, what="a step recorded after the restart")
    shot(page, "after-restart")

    assert run.result(timeout=60) == sum(range(14))
    panel_row(page, run.id, "COMPLETED").wait_for()
    page.locator(f'#durable-run-{run.id} .dng-root > .dng-run[data-status="COMPLETED"]').wait_for()
    assert last_step() == 14
    assert page.locator(".jp-DurablePanel-live.jp-mod-connected").count() == 1
    assert not page.console_errors()
