"""Two runs side by side in the JupyterLab panel, in a real Chromium against a real
`jupyter lab`: a fork's run view shows its code version and offers "Compare with source",
which opens both runs' steps aligned by key with the rows that differ highlighted; the
"Compare…" action takes any run id typed in, and an unknown one is refused with the
engine's message."""

from __future__ import annotations

import uuid

import pytest
from _lab import LABEXTENSION, command, wait_until

import durable_nb as dn

pytestmark = pytest.mark.browser


@dn.step
def load(n: int) -> list[int]:
    return list(range(n))


@dn.step
def scale(xs: list[int], k: int) -> list[int]:
    return [x * k for x in xs]


@dn.step
def check(xs: list[int]) -> int:
    if sum(xs) > 10:
        raise ValueError(f"the total {sum(xs)} is over the limit of 10")
    return sum(xs)


@dn.step
def capped(xs: list[int]) -> int:
    return min(sum(xs), 10)


@dn.task(id="cmp-job", retry=dn.Retry(max_attempts=1))
def job_v1(n: int) -> int:
    return check(scale(load(n), 3))


@dn.task(id="cmp-job", retry=dn.Retry(max_attempts=1))
def job_v2(n: int) -> int:
    """The fix: the total is capped instead of checked."""
    return capped(scale(load(n), 3))


@pytest.fixture(scope="module")
def runs(lab):
    """A failed run of v1 and its fork with v2 (completed): (source, fork)."""
    if not (LABEXTENSION / "package.json").exists():
        pytest.fail(f"the lab extension is not built ({LABEXTENSION} is missing)")
    dn.connect(url=lab.url, token=lab.token)
    source = job_v1.trigger(5)
    assert source.wait(timeout=60) == "FAILED"
    job_v2.trigger(1).wait(timeout=60)  # registers v2 as the newest version of cmp-job
    fork = source.fork()
    assert fork.result(timeout=60) == 10
    return source, fork


def open_run(page, lab, run_id: str):
    page.goto(f"{lab.url}lab/workspaces/{uuid.uuid4().hex[:8]}?reset&token={lab.token}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands.hasCommand("
                           "'durable-nb:open-run')", timeout=60_000)
    command(page, "durable-nb:open-run", {"id": run_id})
    view = page.locator(f"#durable-run-{run_id}")
    view.locator(f'.dng-run[data-run-id="{run_id}"]').wait_for()
    return view


def test_a_fork_compared_with_its_source(page, lab, runs):
    source, fork = runs
    view = open_run(page, lab, fork.id)
    badge = view.locator(".dng-head .dng-version").first
    assert badge.inner_text() == "v2" and "the latest" in badge.get_attribute("title")
    view.screenshot(path=str(page.out / "compare-fork-view.png"))

    view.locator(".jp-Toolbar-item", has_text="Compare with source").click()
    table = page.locator(".jp-DurableCompare-table").locator("visible=true")
    table.wait_for()
    rows = {r.get_attribute("data-key"): r for r in table.locator(".jp-DurableCompare-row").all()}
    assert list(rows) == ["load#1", "scale#1", "check#1", "capped#1"]
    for key in ("load#1", "scale#1"):  # reused by the fork: the same on both sides
        cls = rows[key].get_attribute("class")
        assert "jp-mod-differs" not in cls, key
        assert rows[key].locator(".jp-DurableCompare-status").all_inner_texts() == [
            "COMPLETED", "COMPLETED"]
    check_row = rows["check#1"]
    assert "jp-mod-differs" in check_row.get_attribute("class")
    assert "over the limit of 10" in check_row.inner_text()
    assert check_row.locator(".jp-DurableCompare-empty").inner_text() == "not run"
    assert rows["capped#1"].locator(".jp-DurableCompare-output").inner_text() == "10"
    head = page.locator(".jp-DurableCompare-head").locator("visible=true")
    text = head.inner_text()
    assert source.id in text and fork.id in text and "v1 · " in text and "v2 · " in text
    assert "differ in status, version, output, error" in text
    compare = page.locator(".jp-DurableCompare").locator("visible=true")
    compare.screenshot(path=str(page.out / "compare-panel.png"))
    assert page.console_errors() == []


def test_compare_takes_a_typed_run_id_and_refuses_an_unknown_one(page, lab, runs):
    source, fork = runs
    view = open_run(page, lab, source.id)
    compare_source = view.locator(".jp-Toolbar-item", has_text="Compare with source")
    assert compare_source.count() == 0 or not compare_source.is_visible(), "not a fork"
    badge = view.locator(".dng-head .dng-version").first
    assert badge.inner_text() == "v1" and "v2 is the latest" in badge.get_attribute("title")

    def ask(run_id: str) -> None:
        view.locator(".jp-Toolbar-item", has_text="Compare…").click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for()
        assert fork.id in dialog.inner_text() or dialog.locator("input").count()
        box = dialog.locator("input").first
        box.fill(run_id)
        dialog.locator(".jp-mod-accept").click()
        dialog.wait_for(state="detached")

    ask("run_does_not_exist")
    toast = page.locator(".Toastify__toast", has_text="run_does_not_exist")
    toast.wait_for()
    assert "no run with id" in toast.inner_text()
    ask(fork.id)
    table = page.locator(".jp-DurableCompare-table").locator("visible=true")
    table.wait_for()
    wait_until(lambda: table.locator(".jp-DurableCompare-row").count() == 4,
               what="the four rows")
    assert page.console_errors() == [] or all(
        "404" in e for e in page.console_errors()), page.console_errors()
