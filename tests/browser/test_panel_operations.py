"""The "Durable runs" sidebar's operations, in a real Chromium against a real `jupyter lab`:
tags shown on rows and filtered by (typed or clicked), priorities shown, the Queues section
with concurrency and rate limits and live counts, a selection of runs acted on together
(Resume, Cancel, "Select all N matching" across pages) through `POST /runs/bulk` with the
result said and the statuses checked through the REST API, and the Schedules section with
Pause / Resume. An engine without the bulk or schedules routes says so instead of failing."""

from __future__ import annotations

import re

import pytest
from _lab import TAB, open_panel, panel_row, wait_until

import durable_nb as dn

pytestmark = pytest.mark.browser

PANEL = "#durable-nb-runs"
MAIL = dn.Queue("ops-mail", concurrency_limit=2, rate_limit=dn.Rate(10, per="1m"))
THROTTLED = dn.Queue("ops-throttled", concurrency_limit=1, rate_limit=dn.Rate(1, per="1h"))


@dn.task(id="ops-report", queue=MAIL)
def report(x: int) -> int:
    return x


@dn.task(id="ops-throttled", queue=THROTTLED)
def throttled(x: int) -> int:
    return x


@dn.task(id="ops-later")
def later(x: int) -> int:
    return x


@dn.task(id="ops-flaky", retry=dn.Retry(max_attempts=1))
def flaky(marker: str, i: int) -> int:
    import os

    if not os.path.exists(marker):
        raise ConnectionError("the mail server is busy")
    return i


# ---------------------------------------------------------------------- helpers

@pytest.fixture(scope="module", autouse=True)
def client(lab_client):
    return lab_client


@pytest.fixture(scope="module")
def tagged(client):
    """Three completed runs of ops-report with tags and priorities: {name: handle}."""
    runs = {"eu": report.trigger(1, tags=["nightly", "eu"], priority=5),
            "us": report.trigger(2, tags=["nightly", "us"]),
            "adhoc": report.trigger(3, tags=["adhoc"], priority=-2)}
    for run in runs.values():
        run.wait(timeout=60)
    return runs


@pytest.fixture(scope="module")
def queued(client):
    """Four runs on a queue of one start per hour: the first completes, three stay QUEUED."""
    runs = throttled.batch_trigger(range(4), tags=["throttled"])
    wait_until(lambda: sorted(r.status for r in runs) == ["COMPLETED"] + ["QUEUED"] * 3, 60,
               "one run done and three queued")
    return runs




def listed(page) -> set[str]:
    return set(page.locator(".jp-DurableRun").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)"))


def filter_by_tag(page, tag: str) -> None:
    box = page.locator(".jp-DurableTagFilter-input")
    box.fill(tag)
    box.press("Enter")


def count_text(page) -> str:
    return page.locator(".jp-DurablePanel-count").inner_text()


def status_of(lab, run_id: str) -> str:
    return lab.request("GET", f"durable/api/runs/{run_id}")[1]["status"]


def shot(page, name: str) -> None:
    """A screenshot of the sidebar in the test's folder."""
    page.locator(PANEL).screenshot(path=str(page.out / f"{name}.png"))


def confirm(page, label: str) -> None:
    """Accept the confirmation dialog whose accept button says ``label``."""
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    dialog.locator(".jp-mod-accept", has_text=label).click()
    dialog.wait_for(state="detached")


# ---------------------------------------------------------------------- tags and priority

def test_rows_show_tags_and_priority_and_the_tag_filter_lists_runs(page, lab, tagged):
    eu, us, adhoc = (tagged[k].id for k in ("eu", "us", "adhoc"))
    open_panel(page, lab)
    wait_until(lambda: {eu, us, adhoc} <= listed(page), what="the tagged runs")
    chips = panel_row(page, eu).locator(".jp-DurableTag")
    assert chips.evaluate_all("cs => cs.map(c => c.dataset.tag)") == ["nightly", "eu"]
    assert panel_row(page, eu).locator(".jp-DurableRun-priority").inner_text() == "P 5"
    assert panel_row(page, adhoc).locator(".jp-DurableRun-priority").inner_text() == "P -2"
    assert panel_row(page, us).locator(".jp-DurableRun-priority").count() == 0  # 0: no badge

    filter_by_tag(page, "nightly")
    wait_until(lambda: listed(page) == {eu, us}, what="the two nightly runs")
    assert count_text(page) == "2 runs match"
    # a click on a row's chip adds its tag (and does not open the run): runs with both
    panel_row(page, eu).locator('.jp-DurableTag[data-tag="eu"]').click()
    wait_until(lambda: listed(page) == {eu}, what="the run tagged nightly and eu")
    assert page.locator(".jp-DurableTagFilter .jp-DurableTag").evaluate_all(
        "cs => cs.map(c => c.dataset.tag)") == ["nightly", "eu"]
    assert count_text(page) == "1 run matches"
    assert page.locator(".jp-DurableRunView").count() == 0
    shot(page, "tag-filter")

    # with the search box and the status filter too
    page.locator('.jp-DurableTagFilter .jp-DurableTag[data-tag="eu"] button').click()
    wait_until(lambda: listed(page) == {eu, us}, what="nightly again")
    empty = page.locator(".jp-DurablePanel-empty")
    page.locator(".jp-DurablePanel-search").fill("no-such-task")
    page.locator(".jp-DurablePanel-search").press("Enter")
    wait_until(lambda: not listed(page) and empty.inner_text() == (
        "No runs match “no-such-task” tagged “nightly”."), what="no run")
    page.locator(".jp-DurablePanel-search").press("Escape")
    page.locator(".jp-DurablePanel-filter").first.select_option(label="Failed")
    wait_until(lambda: not listed(page) and empty.inner_text() == (
        "No runs tagged “nightly” with this status."), what="no failed nightly run")
    page.locator(".jp-DurablePanel-filter").first.select_option(label="All")
    page.locator(".jp-DurablePanel-since").select_option(label="Last hour")  # --since 1h
    wait_until(lambda: listed(page) == {eu, us} and count_text(page) == "2 runs match",
               what="nightly runs of the last hour")

    page.locator(".jp-DurableTagFilter-clear").click()  # clearing lists every run again
    wait_until(lambda: {eu, us, adhoc} <= listed(page), what="every run again")
    assert page.locator(".jp-DurableTagFilter .jp-DurableTag").count() == 0

    # the run view says the priority too
    panel_row(page, eu).click()
    view = page.locator(f"#durable-run-{eu} .dng-root")
    view.wait_for()
    wait_until(lambda: "priority 5" in view.inner_text(), what="the priority in the run view")
    assert page.console_errors() == []


# ---------------------------------------------------------------------- queues

def test_the_queues_section_shows_limits_and_counts_live(page, lab, tagged, queued):
    open_panel(page, lab)
    page.locator(".jp-DurablePanel-queues .jp-DurableFold-toggle").click()
    mail = page.locator('.jp-DurableQueue[data-queue="ops-mail"]')
    mail.wait_for()
    assert mail.locator(".jp-DurableQueue-load").inner_text() == "0 / 2 executing"
    assert mail.locator(".jp-DurableQueue-rate").inner_text() == "rate 10 / 1m"
    slow = page.locator('.jp-DurableQueue[data-queue="ops-throttled"]')
    assert slow.locator(".jp-DurableQueue-rate").inner_text() == "rate 1 / 1h"
    assert slow.locator(".jp-DurableQueue-queued").inner_text() == "3 queued"
    title = page.locator(".jp-DurablePanel-queues .jp-DurableFold-label").text_content()
    assert re.fullmatch(r"Queues \(\d+\) · 3 queued", title), title
    shot(page, "queues")

    # live: one more run waits in the queue, and the section follows by itself
    extra = throttled.trigger(9, tags=["throttled-extra"])
    wait_until(lambda: slow.locator(".jp-DurableQueue-queued").inner_text() == "4 queued", 15,
               "the new queued run counted")
    extra.cancel()
    wait_until(lambda: slow.locator(".jp-DurableQueue-queued").inner_text() == "3 queued", 15,
               "the canceled run no longer counted")
    # the section stays open across a reload (kept in the browser's storage)
    page.reload()
    page.locator(".jp-DurablePanel-live.jp-mod-connected").wait_for(state="attached")
    if not page.locator(PANEL).is_visible():  # the restored layout may have it open
        page.locator(TAB).click()
    page.locator('.jp-DurableQueue[data-queue="ops-mail"]').wait_for()
    assert page.console_errors() == []


# ---------------------------------------------------------------------- bulk actions

def test_resume_three_failed_runs_selected_in_the_panel(page, lab, tmp_path):
    marker = tmp_path / "mail-server-up"
    runs = flaky.batch_trigger([(str(marker), i) for i in range(3)], tags=["flaky-batch"])
    wait_until(lambda: all(r.status == "FAILED" for r in runs), 60, "three failed runs")
    marker.touch()  # the next attempts succeed
    open_panel(page, lab)
    filter_by_tag(page, "flaky-batch")
    wait_until(lambda: listed(page) == {r.id for r in runs}, what="the three failed runs")
    assert page.locator(".jp-DurableBulk").is_hidden()  # nothing selected yet
    panel_row(page, runs[0].id).locator(".jp-DurableRun-select").check()
    bar = page.locator(".jp-DurableBulk")
    assert bar.locator(".jp-DurableBulk-count").inner_text() == "1 selected"
    assert page.locator(".jp-DurableBulk-page").evaluate("b => b.indeterminate")
    assert page.locator(".jp-DurableRunView").count() == 0  # a checkbox opens nothing
    page.locator(".jp-DurableBulk-page").check()  # the whole page
    assert bar.locator(".jp-DurableBulk-count").inner_text() == "3 selected"
    shot(page, "selection")

    bar.locator(".jp-DurableBulk-action.jp-mod-resume").click()
    confirm(page, "Resume 3 runs")
    result = bar.locator(".jp-DurableBulk-result")
    wait_until(lambda: result.inner_text() == "3 resumed", what="the result")
    for run in runs:
        assert run.result(timeout=60) in (0, 1, 2)
    wait_until(lambda: {status_of(lab, r.id) for r in runs} == {"COMPLETED"},
               what="the REST API to say COMPLETED")
    for run in runs:
        panel_row(page, run.id, "COMPLETED").wait_for()
    assert bar.locator(".jp-DurableBulk-count").is_hidden()  # done: nothing selected
    shot(page, "bulk-resumed")
    assert page.console_errors() == []


def test_cancel_a_selection_says_what_was_canceled_and_what_was_refused(page, lab, queued):
    open_panel(page, lab)
    filter_by_tag(page, "throttled")
    ids = {r.id for r in queued}
    wait_until(lambda: listed(page) == ids, what="the four throttled runs")
    page.locator(".jp-DurableBulk-page").check()
    bar = page.locator(".jp-DurableBulk")
    assert bar.locator(".jp-DurableBulk-count").inner_text() == "4 selected"
    bar.locator(".jp-DurableBulk-action.jp-mod-cancel").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "Cancel their child runs too" in dialog.inner_text()
    page.screenshot(path=str(page.out / "cancel-dialog.png"))
    confirm(page, "Cancel 4 runs")
    result = bar.locator(".jp-DurableBulk-result")
    wait_until(lambda: result.inner_text().startswith("3 canceled, 1 failed: "),
               what="3 canceled and the completed one refused")
    assert "jp-mod-failed" in (result.get_attribute("class") or "")
    done = next(r for r in queued if status_of(lab, r.id) == "COMPLETED")
    assert done.id in (result.get_attribute("title") or "")  # the reason, per run
    assert bar.locator(".jp-DurableBulk-count").inner_text() == "1 selected"  # the refused
    assert panel_row(page, done.id).locator(".jp-DurableRun-select").is_checked()
    for run in queued:
        if run.id != done.id:
            panel_row(page, run.id, "CANCELED").wait_for()
            assert status_of(lab, run.id) == "CANCELED"
    shot(page, "bulk-cancel-result")
    assert page.console_errors() == []


def test_select_all_matching_pages_through_the_filter(page, lab):
    runs = later.batch_trigger(range(60), delay="1h", tags=["later"])  # DELAYED: cheap
    ids = {r.id for r in runs}
    open_panel(page, lab)
    filter_by_tag(page, "later")
    wait_until(lambda: count_text(page) == "showing 50 of 60 runs that match",
               what="the first page")
    page.locator(".jp-DurablePager-next").click()
    wait_until(lambda: count_text(page) == "showing 51–60 of 60 runs that match",
               what="the second page")
    assert len(listed(page)) == 10
    page.locator(".jp-DurablePager-prev").click()
    wait_until(lambda: len(listed(page)) == 50, what="the first page again")
    page.locator(".jp-DurableBulk-page").check()
    bar = page.locator(".jp-DurableBulk")
    assert bar.locator(".jp-DurableBulk-count").inner_text() == "50 selected"
    bar.locator(".jp-DurableBulk-all").click()
    wait_until(lambda: bar.locator(".jp-DurableBulk-count").inner_text() == "60 selected",
               what="every matching run selected")
    assert bar.locator(".jp-DurableBulk-note").inner_text() == (
        "All 60 matching runs are selected.")
    shot(page, "select-all-matching")
    bar.locator(".jp-DurableBulk-action.jp-mod-cancel").click()
    confirm(page, "Cancel 60 runs")
    wait_until(lambda: bar.locator(".jp-DurableBulk-result").inner_text() == "60 canceled",
               what="60 canceled")
    statuses = lab.request("GET", "durable/api/runs?tags=later&limit=100")[1]["runs"]
    assert {r["id"] for r in statuses} == ids
    assert {r["status"] for r in statuses} == {"CANCELED"}
    # a change of filter clears the selection and the result
    page.locator(".jp-DurableTagFilter-clear").click()
    wait_until(lambda: bar.is_hidden(), what="the bar to go")
    assert page.console_errors() == []


# ---------------------------------------------------------------------- schedules

def test_the_schedules_section_lists_and_pauses_a_schedule(page, lab):
    sched = dn.schedule(report, every="1h", id="ops-hourly", args=(7,))
    try:
        open_panel(page, lab)
        page.locator(".jp-DurablePanel-schedules .jp-DurableFold-toggle").click()
        item = page.locator('.jp-DurableSchedule[data-schedule-id="ops-hourly"]')
        item.wait_for()
        assert item.locator(".jp-DurableSchedule-task").inner_text() == "ops-report"
        assert item.locator(".jp-DurableSchedule-id").inner_text() == "ops-hourly"
        assert item.locator(".jp-DurableSchedule-cadence").inner_text() == "every 1h"
        assert item.locator(".jp-DurableSchedule-tz").inner_text() == "UTC"
        assert re.fullmatch(r"next in \d+[smh]",
                            item.locator(".jp-DurableSchedule-next").inner_text())
        assert item.get_attribute("data-paused") == "false"
        shot(page, "schedules")

        item.locator("button.jp-mod-pauseSchedule").click()
        page.locator('.jp-DurableSchedule[data-schedule-id="ops-hourly"][data-paused="true"]'
                     ).wait_for()
        rest = lab.request("GET", "durable/api/schedules")[1]["schedules"]
        assert next(s for s in rest if s["id"] == "ops-hourly")["paused"] is True
        assert item.locator(".jp-DurableSchedule-paused").inner_text() == "paused"
        title = page.locator(".jp-DurablePanel-schedules .jp-DurableFold-label").text_content()
        assert title.endswith("· 1 paused"), title
        shot(page, "schedule-paused")

        item.locator("button.jp-mod-resumeSchedule").click()
        page.locator('.jp-DurableSchedule[data-schedule-id="ops-hourly"][data-paused="false"]'
                     ).wait_for()
        rest = lab.request("GET", "durable/api/schedules")[1]["schedules"]
        assert next(s for s in rest if s["id"] == "ops-hourly")["paused"] is False
        assert page.console_errors() == []
    finally:
        sched.delete()


# ---------------------------------------------------------------------- faults

def test_an_engine_without_bulk_or_schedules_says_so(page, lab, tagged):
    """An older engine answers 404 on these routes: the panel says they are not there."""
    missing = {"status": 404, "content_type": "application/json",
               "body": '{"error": "no such route"}'}
    page.route(re.compile(r".*/durable/api/(schedules|runs/bulk)(\?.*)?$"),
               lambda route: route.fulfill(**missing))
    open_panel(page, lab)
    filter_by_tag(page, "nightly")  # the runs of the other tests may fill the first page
    page.locator(".jp-DurablePanel-schedules .jp-DurableFold-toggle").click()
    note = page.locator(".jp-DurablePanel-schedules .jp-DurableFold-note")
    wait_until(lambda: note.inner_text() == "Schedules are not available on this engine.",
               what="the schedules note")
    panel_row(page, tagged["us"].id).locator(".jp-DurableRun-select").check()
    bar = page.locator(".jp-DurableBulk")
    bar.locator(".jp-DurableBulk-action.jp-mod-replay").click()
    confirm(page, "Replay 1 run")
    result = bar.locator(".jp-DurableBulk-result")
    wait_until(lambda: result.inner_text() == "Bulk actions are not available on this engine.",
               what="the bulk note")
    assert "jp-mod-failed" in (result.get_attribute("class") or "")
    assert all("404" in e for e in page.console_errors())  # only the refused requests


def test_a_refused_bulk_request_shows_the_engines_message(page, lab, tagged):
    """A 400 from the engine (e.g. too many runs) is said as the engine says it."""
    page.route(re.compile(r".*/durable/api/runs/bulk(\?.*)?$"), lambda route: route.fulfill(
        status=400, content_type="application/json",
        body='{"error": "ids: at most 1000 runs at a time, got 1001"}'))
    open_panel(page, lab)
    filter_by_tag(page, "nightly")
    panel_row(page, tagged["eu"].id).locator(".jp-DurableRun-select").check()
    bar = page.locator(".jp-DurableBulk")
    bar.locator(".jp-DurableBulk-action.jp-mod-resume").click()
    confirm(page, "Resume 1 run")
    wait_until(lambda: bar.locator(".jp-DurableBulk-result").inner_text() ==
               "Resume failed: ids: at most 1000 runs at a time, got 1001", what="the message")
    assert bar.locator(".jp-DurableBulk-count").inner_text() == "1 selected"  # kept
    assert all("400" in e for e in page.console_errors())



@pytest.mark.slow
def test_select_all_matching_stops_at_a_thousand_and_says_so(page, lab):
    later.batch_trigger(range(1001), delay="1h", tags=["many"])  # about 4 s
    open_panel(page, lab)
    filter_by_tag(page, "many")
    wait_until(lambda: count_text(page) == "showing 50 of 1001 runs that match",
               what="the first page")
    page.locator(".jp-DurableBulk-page").check()
    bar = page.locator(".jp-DurableBulk")
    assert bar.locator(".jp-DurableBulk-all").inner_text() == "Select all 1001 matching"
    bar.locator(".jp-DurableBulk-all").click()
    wait_until(lambda: bar.locator(".jp-DurableBulk-count").inner_text() == "1000 selected",
               what="a thousand selected")
    assert bar.locator(".jp-DurableBulk-note").inner_text() == (
        "The 1000 most recent of 1001 matching runs are selected (at most 1000 at a time).")
    bar.locator(".jp-DurableBulk-action.jp-mod-cancel").click()
    confirm(page, "Cancel 1000 runs")
    wait_until(lambda: bar.locator(".jp-DurableBulk-result").inner_text() == "1000 canceled",
               60, "1000 canceled")
    shot(page, "a-thousand-canceled")
    left = lab.request("GET", "durable/api/runs?tags=many&status=DELAYED")[1]
    assert left["total"] == 1  # the oldest, beyond the thousand
    assert lab.request("GET", "durable/api/runs?tags=many&status=CANCELED&limit=1")[1][
        "total"] == 1000
    assert page.console_errors() == []
