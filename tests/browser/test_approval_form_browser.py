"""Typed approval forms in a real Chromium against a real `jupyter lab` (fixtures in
conftest.py): the form of `dn.approval(..., form=Payout)` drawn in the sidebar's approval
card, in the run view of the main area and in the anywidget (decided through the kernel).
A wrong value first shows its message and keeps Approve disabled; right values approve,
and the task gets them as an instance of the dataclass (checked through the REST API).

Screenshots of the forms are saved in test-output/<test name>/form-*.png."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Literal

import pytest
from _lab import TAB, cell, open_notebook, run_all, wait_until

import durable_nb as dn

pytestmark = pytest.mark.browser



@dataclasses.dataclass
class Payout:
    amount: Annotated[int, dn.FormField(minimum=1, maximum=500, title="Amount (EUR)")]
    reason: dn.LongText
    tier: Literal["standard", "gold"] = "standard"
    express: bool = False


@dn.task(id="form-payout")
def payout(account: str) -> dict:
    d = dn.approval("pay", data={"account": account, "owed": 120}, form=Payout, timeout=600)
    v = d.values
    assert isinstance(v, Payout), type(v)
    return {"approved": d.approved, "amount": v.amount, "reason": v.reason, "tier": v.tier,
            "express": v.express, "comment": d.comment}


@pytest.fixture(scope="module", autouse=True)
def client(lab_client):
    return lab_client


def shot(page, name: str, locator=None) -> None:
    (locator or page).screenshot(path=str(page.out / f"{name}.png"))


def waiting(run: dn.RunHandle) -> None:
    wait_until(lambda: run.status == "WAITING", 60, f"run {run.id} to wait")


def decided_values(lab, run_id: str) -> dict:
    detail = lab.request("GET", f"durable/api/runs/{run_id}")[1]
    (w,) = [w for w in detail["waits"] if w["kind"] == "approval"]
    assert w["outcome"] == "approved" and w["form"]["title"] == "Payout"
    return w["values"]


def fill_wrong_then_right(form, approve, what: str) -> None:
    """Out of range first: the field says why and Approve stays disabled; then right."""
    assert approve.is_disabled(), f"{what}: Approve must wait for the required fields"
    amount = form.locator('[data-field="amount"] input')
    assert amount.get_attribute("type") == "number"
    amount.fill("900")
    error = form.locator('[data-field="amount"] .dng-field-error')
    wait_until(lambda: "at most 500" in error.inner_text(), what=f"{what}: the amount's error")
    assert amount.get_attribute("aria-invalid") == "true"
    form.locator('[data-field="reason"] textarea').fill("refund of March\nsecond line")
    assert approve.is_disabled(), f"{what}: a wrong amount keeps Approve disabled"


def test_the_form_in_the_sidebar_card(page, lab):
    run = payout.trigger("acct-sidebar")
    waiting(run)
    page.goto(f"{lab.url}lab/workspaces/{uuid.uuid4().hex[:8]}?reset&token={lab.token}")
    page.locator(TAB).click()
    card = page.locator(f'.jp-DurableApproval[data-run-id="{run.id}"]')
    form = card.locator(".dng-form")
    form.wait_for()
    labels = form.locator(".dng-field-label").all_inner_texts()
    assert [t.strip() for t in labels] == ["Amount (EUR) *", "reason *", "tier", "express"]
    assert form.locator('[data-field="tier"] select').input_value() == "0"  # the default
    approve = card.locator("button.jp-mod-approve")
    fill_wrong_then_right(form, approve, "sidebar")
    assert "Amount (EUR)" in card.locator(".jp-DurableApproval-hint").inner_text()
    shot(page, "form-panel-invalid", card)

    form.locator('[data-field="amount"] input').fill("120")
    form.locator('[data-field="tier"] select').select_option(label="gold")
    form.locator('[data-field="express"] input').check()
    card.locator(".jp-DurableApproval-comment").fill("checked with finance")
    wait_until(lambda: approve.is_enabled(), what="Approve to be enabled")
    assert card.locator(".dng-field-error:visible").count() == 0
    shot(page, "form-panel-filled", card)
    approve.click()
    assert run.result(timeout=60) == {
        "approved": True, "amount": 120, "reason": "refund of March\nsecond line",
        "tier": "gold", "express": True, "comment": "checked with finance"}
    assert decided_values(lab, run.id) == {"amount": 120, "reason": "refund of March\n"
                                           "second line", "tier": "gold", "express": True}
    assert not page.console_errors()


def test_the_form_in_the_run_view(page, lab):
    run = payout.trigger("acct-view")
    waiting(run)
    page.goto(f"{lab.url}lab/workspaces/{uuid.uuid4().hex[:8]}?reset&token={lab.token}")
    page.locator(TAB).click()
    page.locator(f'.jp-DurableRun[data-run-id="{run.id}"]').click()
    view = page.locator(f"#durable-run-{run.id}")
    form = view.locator(".dng-approval-form .dng-form")
    form.wait_for()
    approve = view.locator("button.dng-btn-ok")
    fill_wrong_then_right(form, approve, "run view")
    assert "Amount (EUR)" in view.locator(".dng-form-hint").inner_text()
    shot(page, "form-graph-invalid", view.locator(".dng-approval-form"))
    form.locator('[data-field="amount"] input').fill("75")
    wait_until(lambda: approve.is_enabled(), what="Approve to be enabled")
    approve.click()
    out = run.result(timeout=60)
    assert (out["amount"], out["tier"], out["express"]) == (75, "standard", False)
    # the decided values show on the resolved approval
    values = view.locator(".dng-values")
    values.wait_for()
    assert "amount: 75" in values.inner_text()
    shot(page, "form-graph-decided", view)
    assert not page.console_errors()


NOTEBOOK_TASK = """\
import dataclasses
import durable_nb as dn
from durable_nb.widgets.views import RunWidget

@dataclasses.dataclass
class Release:
    version: str
    canary_percent: int = dataclasses.field(default=5, metadata={"minimum": 0, "maximum": 100})
    notes: dn.LongText = ""

@dn.task(id="form-release")
def release(v):
    d = dn.approval("ship", data={"version": v}, form=Release, timeout=600)
    return {"type": type(d.values).__name__, "canary": d.values.canary_percent,
            "version": d.values.version}

w = RunWidget(release.trigger("2.1"))
w.engine = {"instance": None, "server": False}  # as in VS Code: decisions go via the kernel
w
"""


def test_the_form_in_the_widget_through_the_kernel(page, lab):
    lab.write_notebook("form.ipynb", [NOTEBOOK_TASK])
    open_notebook(page, lab, "form.ipynb")
    run_all(page)
    view = cell(page, 0).locator(".dng-widget > .dng-run")
    form = view.locator(".dng-form")
    form.wait_for(timeout=60_000)
    run_id = view.get_attribute("data-run-id")
    approve = view.locator("button.dng-btn-ok")
    assert approve.is_disabled()  # version is required
    canary = form.locator('[data-field="canary_percent"] input')
    assert canary.input_value() == "5"
    canary.fill("150")
    error = form.locator('[data-field="canary_percent"] .dng-field-error')
    wait_until(lambda: "at most 100" in error.inner_text(), what="the canary's error")
    form.locator('[data-field="version"] input').fill("2.1")
    assert approve.is_disabled()
    shot(page, "form-widget-invalid", view)
    canary.fill("20")
    wait_until(lambda: approve.is_enabled(), what="Approve to be enabled")
    approve.click()
    handle = dn.get_run(run_id)
    assert handle.result(timeout=60) == {"type": "Release", "canary": 20, "version": "2.1"}
    page.locator(f'.dng-run[data-run-id="{run_id}"][data-status="COMPLETED"]').first.wait_for()
    assert not page.console_errors()
