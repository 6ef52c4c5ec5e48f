"""Typed approval forms against a real engine: the form travels with the wait and shows in
``GET /runs/{id}``; the REST API refuses values that do not match it (422 naming the field,
nothing resolved), also after the engine was killed; good values reach the task as an
instance of the dataclass; ``durable-nb approve --field`` types its texts by the form."""

import dataclasses
import enum
from typing import Annotated, Literal, Optional

import pytest
from _support import EngineProcess, http_call, run_cli, wait_for

import durable_nb as dn
from durable_nb.client.client import use_client
from durable_nb.core.forms import form_schema


class Tier(enum.Enum):
    GOLD = "gold"
    SILVER = "silver"


@dataclasses.dataclass
class Payout:
    amount: Annotated[int, dn.FormField(minimum=1, maximum=500)]
    reason: dn.LongText
    tier: Tier = Tier.SILVER
    express: bool = False
    currency: Literal["EUR", "USD"] = "EUR"
    memo: Optional[str] = None  # noqa: UP045


@dn.task(id="forms-payout", retry=dn.Retry(max_attempts=1))
def payout(account: str) -> dict:
    d = dn.approval("pay", data={"account": account}, form=Payout)
    v = d.values
    if not d.approved:
        return {"approved": False, "values": v, "comment": d.comment}
    assert isinstance(v, Payout), type(v)
    return {"approved": True, "amount": v.amount, "amount_type": type(v.amount).__name__,
            "reason": v.reason, "tier": v.tier.name, "express": v.express,
            "currency": v.currency, "memo": v.memo}


@dn.task(id="forms-plain", retry=dn.Retry(max_attempts=1))
def plain() -> object:
    return dn.approval("go").values


@dn.task(id="forms-bad", retry=dn.Retry(max_attempts=1))
def bad_form() -> None:
    dn.approval("go", form={"type": "object", "properties": {"when": {"type": "array"}}})


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One engine for the tests that do not kill it: its workers stay warm between them."""
    e = EngineProcess(tmp_path_factory.mktemp("forms") / "store.duckdb", ["--wait-grace", "0.3"])
    e.start()
    yield e
    e.stop()


def _waiting(run) -> dict:
    wait_for(lambda: run.status == "WAITING", 30, f"run {run.id} to wait")
    (w,) = [w for w in run.waits if w["kind"] == "approval"]
    return w


def _use(e: EngineProcess) -> EngineProcess:
    use_client(e.client)  # the default client: this engine (another test may have moved it)
    return e


def _approve(engine, run_id: str, body: dict) -> tuple[int, dict]:
    api = engine.client.url + "durable/api"
    return http_call("POST", f"{api}/runs/{run_id}/approve", engine.client.token, body)


def _cli(engine, *args):
    return run_cli(*args, env={"DURABLE_NB_URL": engine.client.url,
                               "DURABLE_NB_TOKEN": engine.client.token}, timeout=60)


def test_bad_values_are_refused_naming_the_field_and_good_ones_reach_the_task(shared):
    engine = _use(shared)
    run = payout.trigger("acct-1")
    w = _waiting(run)
    assert w["form"] == form_schema(Payout) and w["values"] is None
    assert w["form"]["properties"]["reason"]["format"] == "textarea"

    for values, field, rule in [
        ({"amount": 900, "reason": "x"}, "amount", "maximum"),
        ({"reason": "x"}, "amount", "required"),
        ({"amount": 5, "reason": "x", "tier": "bronze"}, "tier", "enum"),
        ({"amount": "five", "reason": "x"}, "amount", "type"),
        ({"amount": 5, "reason": "x", "iban": "DE00"}, "iban", "additionalProperties"),
    ]:
        status, out = _approve(engine, run.id, {"values": values})
        assert status == 422, out
        assert (out["code"], out["field"], out["rule"]) == ("invalid_form", field, rule)
        assert field in out["error"]
    status, out = _approve(engine, run.id, {})  # an approval with a form needs its values
    assert (status, out["field"]) == (422, "amount")
    status, out = _approve(engine, run.id, {"values": [1, 2]})  # not an object: the schema
    assert status == 400 and out["field"] == "values"
    assert run.status == "WAITING" and run.waits[0]["outcome"] is None  # nothing resolved

    with pytest.raises(dn.FormInvalid, match="'amount' must be at least 1") as info:
        run.approve(values={"amount": 0, "reason": "x"})
    assert info.value.field == "amount" and info.value.status == 422

    run.approve(values={"amount": 120.0, "reason": "refund\nfor March", "tier": "gold"})
    assert run.result(timeout=30) == {
        "approved": True, "amount": 120, "amount_type": "int", "reason": "refund\nfor March",
        "tier": "GOLD", "express": False, "currency": "EUR", "memo": None}
    (done,) = run.waits
    assert done["outcome"] == "approved" and done["values"]["amount"] == 120
    assert done["values"]["tier"] == "gold" and done["values"]["currency"] == "EUR"


def test_a_rejection_needs_no_values_and_keeps_those_it_carries(shared):
    _use(shared)
    run = payout.trigger("acct-2")
    _waiting(run)
    with pytest.raises(dn.FormInvalid, match="amount"):  # values it carries are checked
        run.reject(values={"amount": -3})
    run.reject(comment="no budget", values={"reason": "over budget"})
    assert run.result(timeout=30) == {"approved": False, "values": {"reason": "over budget"},
                                      "comment": "no budget"}
    other = payout.trigger("acct-3")
    _waiting(other)
    other.reject()
    assert other.result(timeout=30)["values"] is None


def test_the_cli_types_fields_by_the_form(shared):
    engine = _use(shared)
    run = payout.trigger("acct-4")
    _waiting(run)
    shown = _cli(engine, "show", run.id)
    assert "form: amount, reason, tier, express, currency, memo" in shown.stdout, shown.stdout
    bad = _cli(engine, "approve", run.id, "--field", "amount=lots", "--field", "reason=x")
    assert bad.returncode == 1 and "form field 'amount' must be a whole number" in bad.stderr
    assert run.waits[0]["outcome"] is None
    out = _cli(engine, "approve", run.id, "--field", "amount=7", "--field", "reason=42",
               "--field", "express=yes", "--field", "currency=USD", "--field", "memo=null",
               "--comment", "ok")
    assert out.returncode == 0, out.stderr
    assert run.result(timeout=30) == {
        "approved": True, "amount": 7, "amount_type": "int", "reason": "42", "tier": "SILVER",
        "express": True, "currency": "USD", "memo": None}
    shown = _cli(engine, "show", run.id)
    assert 'values: amount=7, reason="42", express=true, currency="USD"' in shown.stdout
    malformed = _cli(engine, "approve", run.id, "--field", "amount")
    assert malformed.returncode == 1 and "KEY=VALUE" in malformed.stderr


def test_an_approval_without_a_form_passes_values_through(shared):
    _use(shared)
    run = plain.trigger()
    w = _waiting(run)
    assert w["form"] is None
    run.approve(values={"note": "any JSON", "n": [1, 2]})
    assert run.result(timeout=30) == {"note": "any JSON", "n": [1, 2]}


def test_a_form_a_view_cannot_show_fails_the_run_naming_the_field(shared):
    _use(shared)
    run = bad_form.trigger()
    with pytest.raises(dn.RunFailed, match="form field 'when'") as info:
        run.result(timeout=30)
    assert isinstance(info.value, TypeError)


@pytest.mark.slow
def test_the_form_survives_a_killed_engine(engine):
    run = payout.trigger("acct-5")
    _waiting(run)
    engine.kill()
    engine.start()
    w = _waiting(run)
    assert w["form"] == form_schema(Payout)
    status, out = _approve(engine, run.id, {"values": {"amount": 501, "reason": "x"}})
    assert (status, out["code"], out["field"]) == (422, "invalid_form", "amount")
    status, out = _approve(engine, run.id, {"values": {"amount": 500, "reason": "x"}})
    assert status == 200, out
    assert run.result(timeout=30)["amount"] == 500
