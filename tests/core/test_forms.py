"""Typed approval forms (``core.forms``): a dataclass, a TypedDict, a pydantic model or a
JSON schema dict becomes the flat schema the views draw; values are checked against it
with a message naming the field; the values come back as an instance of the form; the
command line's ``key=value`` texts are typed by the schema; old Decision pickles load."""

import dataclasses
import enum
import pickle
from typing import Annotated, Literal, Optional, TypedDict

import pytest

import durable_nb as dn
from durable_nb.core.forms import (
    checked_values,
    coerce,
    form_schema,
    form_values,
    parse_fields,
    pending_form,
)


class Tier(enum.Enum):
    GOLD = "gold"
    SILVER = "silver"


@dataclasses.dataclass
class Payment:
    amount: Annotated[int, dn.FormField(minimum=1, maximum=1000, title="Amount (EUR)")]
    reason: dn.LongText
    currency: Literal["EUR", "USD"] = "EUR"
    tier: Tier = Tier.SILVER
    urgent: bool = False
    note: Optional[str] = None  # noqa: UP045 (the spelling users write)
    rate: float = dataclasses.field(default=1.0, metadata={"minimum": 0, "other": "kept out"})


class Ticket(TypedDict, total=False):
    title: str
    priority: Tier


class Required(TypedDict):
    title: str
    count: int


def test_a_dataclass_becomes_a_flat_schema_of_its_fields():
    s = form_schema(Payment)
    assert s["type"] == "object" and s["title"] == "Payment"
    assert s["additionalProperties"] is False
    assert list(s["properties"]) == ["amount", "reason", "currency", "tier", "urgent", "note",
                                     "rate"]
    p = s["properties"]
    assert p["amount"] == {"type": "integer", "minimum": 1, "maximum": 1000,
                           "title": "Amount (EUR)"}
    assert p["reason"] == {"type": "string", "format": "textarea"}  # long text
    assert p["currency"] == {"enum": ["EUR", "USD"], "type": "string", "default": "EUR"}
    assert p["tier"] == {"enum": ["gold", "silver"], "type": "string", "default": "silver"}
    assert p["urgent"] == {"type": "boolean", "default": False}
    assert p["note"] == {"type": ["string", "null"], "default": None}
    assert p["rate"] == {"type": "number", "minimum": 0, "default": 1.0}
    assert s["required"] == ["amount", "reason"]  # defaults and Optional are optional


def test_a_dataclass_carried_by_value_keeps_its_required_fields():
    """A notebook's class reaches the worker pickled by value, with copies of MISSING."""
    cloudpickle = pytest.importorskip("cloudpickle")

    def make():
        @dataclasses.dataclass
        class Release:
            version: str
            canary: int = 5
            tag: str = dataclasses.field(default_factory=str)

        return Release

    carried = cloudpickle.loads(cloudpickle.dumps(make()))
    s = form_schema(carried)
    assert s["required"] == ["version"] and s["properties"]["canary"]["default"] == 5
    assert "default" not in s["properties"]["version"]
    assert form_values(carried, {"version": "1"}).version == "1"


def test_a_typeddict_and_its_required_keys():
    s = form_schema(Ticket)
    assert s["required"] == [] and s["properties"]["priority"]["enum"] == ["gold", "silver"]
    assert form_schema(Required)["required"] == ["title", "count"]
    assert form_values(Ticket, {"title": "x", "priority": "gold"}) == {
        "title": "x", "priority": Tier.GOLD}


def test_a_pydantic_model_uses_its_own_schema_flattened():
    pydantic = pytest.importorskip("pydantic")

    class Review(pydantic.BaseModel):
        score: int = pydantic.Field(ge=0, le=10)
        tier: Tier
        comment: Optional[dn.LongText] = None  # noqa: UP045
        verdict: Literal["ship", "hold"] = "hold"

    s = form_schema(Review)
    p = s["properties"]
    assert s["title"] == "Review" and s["required"] == ["score", "tier"]
    assert p["score"]["type"] == "integer" and (p["score"]["minimum"], p["score"]["maximum"]) \
        == (0, 10)
    assert p["tier"]["enum"] == ["gold", "silver"]  # the $ref to $defs inlined
    assert p["comment"]["type"] == ["string", "null"]  # anyOf [X, null]
    assert p["verdict"]["enum"] == ["ship", "hold"] and p["verdict"]["default"] == "hold"
    values = checked_values(s, {"score": 7, "tier": "gold"}, approved=True)
    got = form_values(Review, values)
    assert isinstance(got, Review) and got.score == 7 and got.tier is Tier.GOLD
    assert got.verdict == "hold"


def test_a_json_schema_dict_is_kept_to_what_a_form_shows():
    s = form_schema({"type": "object", "title": "Go?", "properties": {
        "env": {"enum": ["dev", "prod"]},
        "count": {"type": "integer", "minimum": 0, "x-mine": 1},
        "why": {"type": "string", "format": "textarea", "maxLength": 500},
    }, "required": ["env"]})
    assert s["properties"]["count"] == {"type": "integer", "minimum": 0}
    assert s["properties"]["env"] == {"enum": ["dev", "prod"], "type": "string"}
    assert s["required"] == ["env"] and s["title"] == "Go?"
    assert form_values({"type": "object"}, {"env": "dev"}) == {"env": "dev"}  # a dict


def test_annotated_types_constraints_give_bounds():
    annotated_types = pytest.importorskip("annotated_types")

    @dataclasses.dataclass
    class Bounded:
        n: Annotated[int, annotated_types.Ge(2), annotated_types.Lt(9)]
        name: Annotated[str, annotated_types.MinLen(3)]

    p = form_schema(Bounded)["properties"]
    assert p["n"] == {"type": "integer", "minimum": 2, "exclusiveMaximum": 9}
    assert p["name"] == {"type": "string", "minLength": 3}


@pytest.mark.parametrize("form, message", [
    (list, "is not a form"),
    ({"type": "array"}, "an object with properties"),
    ({"type": "object", "properties": {"x": {"type": "array"}}}, "form field 'x'"),
    ({"type": "object", "properties": {"x": {"type": "string", "pattern": "("}}},
     "properties/x/pattern"),
    ({"type": "object", "properties": {"x": {"type": "string"}}, "required": ["y"]},
     "'required' lists names"),
])
def test_what_a_form_cannot_show_is_refused_when_made(form, message):
    with pytest.raises(TypeError, match=message):
        form_schema(form)


def test_a_field_of_a_type_a_form_cannot_show_is_named():
    @dataclasses.dataclass
    class Bad:
        ok: int
        tags: list[str]

    with pytest.raises(TypeError, match="form field 'tags': list"):
        form_schema(Bad)

    @dataclasses.dataclass
    class Typo:
        n: Annotated[int, {"maximun": 3}]

    with pytest.raises(TypeError, match="'maximun' is not a form keyword"):
        form_schema(Typo)
    with pytest.raises(TypeError, match="'maximun' is not a form keyword"):
        dn.FormField(maximun=3)


def test_form_field_keywords_work_inside_optional():
    """A FormField is hashable, so Optional[Annotated[...]] and Optional[dn.LongText] work
    (a dict in Annotated works alone, not inside a Union)."""
    @dataclasses.dataclass
    class Notes:
        n: Optional[Annotated[int, dn.FormField(maximum=3)]] = None  # noqa: UP045
        text: Optional[dn.LongText] = None  # noqa: UP045
        m: Annotated[float, {"exclusiveMinimum": 0}] = 1.0

    p = form_schema(Notes)["properties"]
    assert p["n"] == {"type": ["integer", "null"], "maximum": 3, "default": None}
    assert p["text"] == {"type": ["string", "null"], "format": "textarea", "default": None}
    assert p["m"] == {"type": "number", "exclusiveMinimum": 0, "default": 1.0}
    assert dn.FormField(maximum=3) == dn.FormField(maximum=3)
    assert repr(dn.FormField(maximum=3)) == "FormField(maximum=3)"


def test_values_are_checked_naming_the_field_and_the_rule():
    s = form_schema(Payment)
    cases = [
        ({"reason": "x"}, "amount", "required", "form field 'amount' is required"),
        ({"amount": 0, "reason": "x"}, "amount", "minimum", "at least 1, not 0"),
        ({"amount": "ten", "reason": "x"}, "amount", "type", "a whole number"),
        ({"amount": True, "reason": "x"}, "amount", "type", "a whole number, not true"),
        ({"amount": 5, "reason": "x", "currency": "GBP"}, "currency", "enum", '"EUR", "USD"'),
        ({"amount": 5, "reason": "x", "bogus": 1}, "bogus", "additionalProperties",
         "not a field of this form"),
    ]
    for values, field, rule, text in cases:
        with pytest.raises(dn.FormInvalid, match=text) as info:
            checked_values(s, values, approved=True)
        assert (info.value.field, info.value.rule, info.value.status) == (field, rule, 422)
        assert info.value.answer()["code"] == "invalid_form"


def test_checked_values_fill_defaults_and_a_rejection_needs_no_field():
    s = form_schema(Payment)
    got = checked_values(s, {"amount": 3.0, "reason": "x"}, approved=True)
    assert got == {"amount": 3, "reason": "x", "currency": "EUR", "tier": "silver",
                   "urgent": False, "note": None, "rate": 1.0}
    assert isinstance(got["amount"], int)
    assert checked_values(s, None, approved=False) is None
    assert checked_values(s, {"reason": "too much"}, approved=False) == {"reason": "too much"}
    with pytest.raises(dn.FormInvalid, match="amount"):  # what it carries is still checked
        checked_values(s, {"amount": -1}, approved=False)
    with pytest.raises(dn.FormInvalid, match="'amount' is required"):
        checked_values(s, None, approved=True)
    assert checked_values(None, {"any": [1]}, approved=True) == {"any": [1]}  # no form


def test_values_become_an_instance_of_the_dataclass():
    s = form_schema(Payment)
    got = form_values(Payment, checked_values(s, {"amount": 9, "reason": "r", "tier": "gold"},
                                              approved=True))
    assert got == Payment(amount=9, reason="r", tier=Tier.GOLD)
    assert form_values(Payment, None) is None

    @dataclasses.dataclass
    class Opt:
        n: Optional[int]  # noqa: UP045 (no default: left out means None)

    assert form_schema(Opt)["required"] == []
    assert form_values(Opt, {}) == Opt(n=None)


def test_command_line_fields_are_typed_by_the_schema():
    s = form_schema(Payment)
    assert parse_fields(s, ["amount=3", "reason=ship it now", "urgent=yes", "tier=gold",
                            "note=null", "rate=2", "currency=USD"]) == {
        "amount": 3, "reason": "ship it now", "urgent": True, "tier": "gold", "note": None,
        "rate": 2.0, "currency": "USD"}
    assert coerce(s["properties"]["reason"], "123") == "123"  # text stays text
    assert coerce(s["properties"]["amount"], "3.5") == 3.5  # left for the engine to refuse
    assert parse_fields(None, ["x=[1, 2]", "y=hello"]) == {"x": [1, 2], "y": "hello"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_fields(s, ["amount"])


def test_the_pending_form_is_the_named_or_first_pending_approval():
    waits = [{"kind": "approval", "name": "a", "outcome": "approved", "form": {"t": 1}},
             {"kind": "event", "name": "b", "outcome": None, "form": None},
             {"kind": "approval", "name": "c", "outcome": None, "form": {"t": 2}}]
    assert pending_form(waits) == {"t": 2} and pending_form(waits, "c") == {"t": 2}
    assert pending_form(waits, "zzz") is None


# A Decision pickled before `values` existed (as checkpoints and step outputs keep it).
OLD_DECISION = (
    b'\x80\x05\x95u\x00\x00\x00\x00\x00\x00\x00\x8c\x19durable_nb.client.handles\x94\x8c\x08'
    b'Decision\x94\x93\x94)\x81\x94}\x94(\x8c\x08approved\x94\x88\x8c\x07comment\x94\x8c\x02'
    b'ok\x94\x8c\x02by\x94\x8c\x05alice\x94\x8c\x02at\x94G?\xf8\x00\x00\x00\x00\x00\x00\x8c\t'
    b'timed_out\x94\x89ub.')


def test_an_old_decision_pickle_loads_with_no_values():
    d = pickle.loads(OLD_DECISION)
    assert isinstance(d, dn.Decision) and d.approved and d.by == "alice" and d.at == 1.5
    assert d.values is None
    new = dn.Decision(True, values={"a": 1})
    assert pickle.loads(pickle.dumps(new)).values == {"a": 1}


def test_form_invalid_survives_pickling():
    e = pickle.loads(pickle.dumps(dn.FormInvalid("form field 'x' is required", "x", "required")))
    assert (str(e), e.field, e.rule, e.status) == ("form field 'x' is required", "x",
                                                   "required", 422)
