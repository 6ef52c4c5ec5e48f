"""Typed approval forms: a dataclass, a TypedDict, a pydantic model or a JSON schema dict
as the flat JSON schema that the views render and the engine checks decisions against,
and the values of a decision back as an instance of the form.

A form is an object of fields, each one of: text (``str``), long text (``LongText``, or
``"format": "textarea"`` in a schema), a whole number (``int``), a number (``float``), a
yes/no (``bool``) or a choice (``Literal[...]`` or an ``Enum``; ``enum`` in a schema).
``Optional[...]`` and a default make a field optional. Bounds and labels are JSON Schema
keywords (``minimum``, ``maximum``, ``minLength``, ``pattern``, ``title``, ...), given by
``FormField(...)`` (or a dict) inside ``Annotated[...]``, or in a dataclass field's
``metadata``; ``annotated_types`` constraints (``Ge``, ``Le``, ``Interval``, ``MinLen``, ...)
and pydantic's ``Field`` work too.

The worker turns the form into its schema (``form_schema``) and sends it with the wait;
the engine checks submitted values against it (``checked_values``, with jsonschema) and
answers ``FormInvalid`` naming the field; the worker builds the form's instance from the
values (``form_values``). ``parse_fields`` reads ``key=value`` texts of the command line.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from .errors import FormInvalid

MAX_FIELDS = 100
MAX_SCHEMA_BYTES = 64 * 1024
# the JSON Schema keywords a field may carry (others in a given schema are dropped)
KEYWORDS = ("title", "description", "default", "minimum", "maximum", "exclusiveMinimum",
            "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern", "format")


class FormField:
    """JSON Schema keywords of one form field, for ``Annotated``:
    ``amount: Annotated[int, dn.FormField(minimum=1, maximum=100, title="Amount")]``.
    Hashable (unlike a dict), so it also works inside ``Optional[...]``."""

    __slots__ = ("keywords",)

    def __init__(self, **keywords: Any):
        unknown = [k for k in keywords if k not in KEYWORDS]
        if unknown:
            raise TypeError(f"{unknown[0]!r} is not a form keyword; use {', '.join(KEYWORDS)}")
        self.keywords = keywords

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FormField) and other.keywords == self.keywords

    def __hash__(self) -> int:
        return hash(repr(sorted(self.keywords.items())))

    def __repr__(self) -> str:
        return f"FormField({', '.join(f'{k}={v!r}' for k, v in self.keywords.items())})"


LongText = Annotated[str, FormField(format="textarea")]
"""A text field shown as a multi-line box: ``notes: dn.LongText``."""
_TYPES = ("string", "integer", "number", "boolean")
_CONSTRAINTS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum",
                "lt": "exclusiveMaximum", "min_length": "minLength", "max_length": "maxLength",
                "multiple_of": "multipleOf"}
_WRAPPERS = {"Required", "NotRequired", "ReadOnly", "ClassVar", "Final"}
_SUPPORTED = ("use str, int, float, bool, dn.LongText, Literal[...], an Enum, or Optional[...] "
              "of one of them")


# ---------------------------------------------------------------------- form -> schema

def form_schema(form: Any) -> dict:
    """The form's flat JSON schema: ``{"type": "object", "title", "properties",
    "required", "additionalProperties": false}``; TypeError naming a field of a type a form
    cannot show, or when ``form`` is none of the four kinds."""
    if isinstance(form, dict):
        schema = normalize_schema(form)
    elif _is_pydantic(form):
        schema = _pydantic_schema(form)
    elif isinstance(form, type) and dataclasses.is_dataclass(form):
        schema = _dataclass_schema(form)
    elif _is_typeddict(form):
        schema = _typeddict_schema(form)
    else:
        raise TypeError(f"form={form!r:.100} is not a form: give a dataclass, a TypedDict, a "
                        "pydantic model or a JSON schema dict (of type object)")
    size = len(json.dumps(schema))
    if size > MAX_SCHEMA_BYTES:
        raise ValueError(f"the form's schema takes {size} bytes of JSON, over "
                         f"{MAX_SCHEMA_BYTES}; a form is a few fields with short labels")
    check_schema(schema)
    return schema


def _is_pydantic(form: Any) -> bool:
    return isinstance(form, type) and callable(getattr(form, "model_json_schema", None)) \
        and callable(getattr(form, "model_validate", None))


def _is_typeddict(form: Any) -> bool:
    return isinstance(form, type) and issubclass(form, dict) \
        and hasattr(form, "__required_keys__") and hasattr(form, "__annotations__")


def _hints(form: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(form, include_extras=True)
    except Exception as exc:  # a name in a string annotation this process cannot see
        raise TypeError(f"cannot read the field types of form {form.__name__}: {exc}") from None


def _object(title: str, props: dict[str, dict], required: list[str]) -> dict:
    if len(props) > MAX_FIELDS:
        raise ValueError(f"form {title} has {len(props)} fields, over {MAX_FIELDS}")
    return {"type": "object", "title": title, "properties": props, "required": required,
            "additionalProperties": False}


def _dataclass_schema(form: type) -> dict:
    hints = _hints(form)
    props: dict[str, dict] = {}
    required: list[str] = []
    for f in dataclasses.fields(form):
        if not f.init:
            continue
        prop, nullable = field_schema(hints.get(f.name, f.type), f.name)
        prop.update(_keywords(dict(f.metadata), f.name, strict=False))
        if not _missing(f.default):
            prop["default"] = _json_default(f.default, f.name)
        elif _missing(f.default_factory) and not nullable:
            required.append(f.name)
        props[f.name] = prop
    return _object(form.__name__, props, required)


def _missing(value: Any) -> bool:
    """A dataclass field's "no default": ``dataclasses.MISSING``, or a copy of it in a class
    that cloudpickle carried by value (a notebook's class in a worker)."""
    return value is dataclasses.MISSING or type(value) is type(dataclasses.MISSING)


def _typeddict_schema(form: type) -> dict:
    props: dict[str, dict] = {}
    for name, hint in _hints(form).items():
        props[name] = field_schema(hint, name)[0]
    required = [n for n in props if n in form.__required_keys__]  # type: ignore[attr-defined]
    return _object(form.__name__, props, required)


def _pydantic_schema(form: Any) -> dict:
    schema = normalize_schema(form.model_json_schema())
    for name, info in getattr(form, "model_fields", {}).items():
        for meta in getattr(info, "metadata", ()):  # dn.LongText, FormField and dicts
            if isinstance(meta, (dict, FormField)) and name in schema["properties"]:
                schema["properties"][name].update(_keywords(meta, name, strict=False))
    schema["title"] = form.__name__
    return schema


def field_schema(hint: Any, name: str) -> tuple[dict, bool]:
    """One field's schema from its type, and whether it takes None (``Optional``)."""
    origin = get_origin(hint)
    if origin is Annotated:
        base, *meta = get_args(hint)
        prop, nullable = field_schema(base, name)
        for m in meta:
            prop.update(_keywords(m, name, strict=True))
        return prop, nullable
    if getattr(origin, "_name", None) in _WRAPPERS or (
            origin is not None and getattr(origin, "__name__", None) in _WRAPPERS):
        return field_schema(get_args(hint)[0], name)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(args) < len(get_args(hint)):
            prop, _ = field_schema(args[0], name)
            return _nullable(prop), True
        raise TypeError(f"form field '{name}': {hint} is a union a form cannot show; "
                        f"{_SUPPORTED}")
    if origin is Literal:
        return _choice(list(get_args(hint)), name), False
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _choice([m.value for m in hint], name), False
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(hint)
    if simple is None:
        raise TypeError(f"form field '{name}': {getattr(hint, '__name__', hint)} is not a "
                        f"type a form can show; {_SUPPORTED}")
    return {"type": simple}, False


def _choice(values: list, name: str) -> dict:
    if not values:
        raise TypeError(f"form field '{name}': a choice needs at least one value")
    for v in values:
        if not (v is None or isinstance(v, (str, bool, int)) or (
                isinstance(v, float) and math.isfinite(v))):
            raise TypeError(f"form field '{name}': choice {v!r:.60} is not a JSON string, "
                            "number or boolean")
    out: dict[str, Any] = {"enum": values}
    kinds = {_json_type(v) for v in values if v is not None}
    if len(kinds) == 1:
        out["type"] = kinds.pop()
    return out


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    return "number" if isinstance(v, float) else "string"


def _nullable(prop: dict) -> dict:
    out = dict(prop)
    if isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _keywords(meta: Any, name: str, strict: bool) -> dict:
    """JSON Schema keywords from ``Annotated`` metadata or a dataclass field's metadata: a
    dict of keywords, or an ``annotated_types`` constraint (``Ge(0)``, ``Interval``...)."""
    if isinstance(meta, FormField):
        return dict(meta.keywords)
    if isinstance(meta, dict):
        unknown = [k for k in meta if k not in KEYWORDS]
        if unknown and strict:
            raise TypeError(f"form field '{name}': {unknown[0]!r} is not a form keyword; "
                            f"use {', '.join(KEYWORDS)}")
        return {k: v for k, v in meta.items() if k in KEYWORDS}
    out = {}
    for attr, keyword in _CONSTRAINTS.items():
        value = getattr(meta, attr, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[keyword] = value
    return out


def _json_default(value: Any, name: str) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise TypeError(f"form field '{name}': default {value!r:.60} is not a JSON "
                        "value") from None
    return value


# ---------------------------------------------------------------------- a given schema

def normalize_schema(schema: dict) -> dict:
    """A JSON schema of an object (as given, or pydantic's) as the flat form: local
    ``$ref``s inlined, ``anyOf [X, null]`` as a nullable X, ``const`` as a one-value
    choice, only the keywords a form uses; TypeError naming a field a form cannot show."""
    if schema.get("type", "object") != "object" or not isinstance(
            schema.get("properties"), dict):
        raise TypeError("a form's JSON schema is an object with properties: "
                        '{"type": "object", "properties": {"amount": {"type": "integer"}}}')
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    props = {}
    for name, prop in schema["properties"].items():
        if not isinstance(name, str) or not isinstance(prop, dict):
            raise TypeError(f"form field {name!r:.60}: its schema is not a JSON object")
        props[name] = _normal_field(prop, name, defs)
    required = schema.get("required", [])
    if not isinstance(required, list) or any(r not in props for r in required):
        raise TypeError("a form's 'required' lists names of its properties")
    out = _object(str(schema.get("title") or "form"), props, list(required))
    if "description" in schema:
        out["description"] = str(schema["description"])
    if schema.get("additionalProperties") is True:
        out["additionalProperties"] = True
    return out


def _normal_field(prop: dict, name: str, defs: dict, depth: int = 0) -> dict:
    if depth > 8:
        raise TypeError(f"form field '{name}': its $ref chain is too deep")
    if "$ref" in prop:
        target = defs.get(str(prop["$ref"]).rsplit("/", 1)[-1])
        if not isinstance(target, dict):
            raise TypeError(f"form field '{name}': $ref {prop['$ref']!r} is not in $defs")
        return _normal_field({**target, **{k: v for k, v in prop.items() if k != "$ref"}},
                             name, defs, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in prop:
            options = prop[key]
            real = [o for o in options if o.get("type") != "null"]
            if len(real) != 1 or (key == "allOf" and len(options) != 1):
                raise TypeError(f"form field '{name}': {key} of several types is not a form "
                                f"field; {_SUPPORTED}")
            rest = {k: v for k, v in prop.items() if k != key}
            inner = _normal_field({**real[0], **rest}, name, defs, depth + 1)
            return _nullable(inner) if len(real) < len(options) else inner
    out = {k: prop[k] for k in KEYWORDS if k in prop}
    if "const" in prop:
        out.update(_choice([prop["const"]], name))
    elif "enum" in prop:
        out.update(_choice(list(prop["enum"]), name))
        if "type" in prop:
            out["type"] = prop["type"]
    else:
        kind = prop.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if not [k for k in kinds if k != "null"] or any(
                k not in (*_TYPES, "null") for k in kinds):
            raise TypeError(f"form field '{name}': type {kind!r} is not a form field; "
                            f"a field is one of {', '.join(_TYPES)}, or an enum")
        out["type"] = kind
    return out


def check_schema(schema: dict) -> None:
    """TypeError when ``schema`` is not a valid JSON schema (a bad ``pattern``, a bound
    that is not a number): caught where the form is made, not when a person submits it."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise TypeError(f"the form's schema is not valid JSON Schema at {where or 'its top'}: "
                        f"{exc.message}") from None


# ---------------------------------------------------------------------- values

def checked_values(schema: dict | None, values: Any, approved: bool) -> dict | None:
    """The values of a decision, checked against the form's ``schema`` (jsonschema) with
    its defaults filled in; FormInvalid naming the first field at fault. An approval needs
    every required field; a rejection may carry some values or none. Without a form the
    values (a JSON object, or None) pass as they are."""
    if schema is None:
        return values
    if values is None:
        if not approved:
            return None
        values = {}
    if not isinstance(values, dict):
        raise FormInvalid(f"form values are a JSON object of field -> value, not "
                          f"{type(values).__name__}", rule="type")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    rules = dict(schema) if approved else {k: v for k, v in schema.items() if k != "required"}
    error = best_match(Draft202012Validator(rules).iter_errors(values))
    if error is not None:
        raise _invalid(schema, values, error)
    props = schema.get("properties", {})
    out = {k: v for k, v in values.items()}
    for name, prop in props.items():
        if name not in out and "default" in prop and approved:
            out[name] = prop["default"]
        elif _kinds(prop) & {"integer"} and isinstance(out.get(name), float):
            out[name] = int(out[name])  # 3.0 is an integer in JSON Schema
    return out


def _kinds(prop: dict) -> set[str]:
    kind = prop.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


def _invalid(schema: dict, values: dict, error: Any) -> FormInvalid:
    """FormInvalid for the jsonschema ``error``: the field at fault, the rule, and what
    the field takes, in words."""
    props = schema.get("properties", {})
    rule = str(error.validator)
    if rule == "required":
        field = next((r for r in schema.get("required", []) if r not in values), None)
        return FormInvalid(f"form field '{field}' is required", field, rule)
    if rule == "additionalProperties":
        field = next((k for k in values if k not in props), None)
        return FormInvalid(f"'{field}' is not a field of this form; its fields are "
                           f"{', '.join(props) or 'none'}", field, rule)
    field = str(error.absolute_path[0]) if error.absolute_path else None
    return FormInvalid(f"form field '{field}' {_rule_words(rule, error)}", field, rule)


def _rule_words(rule: str, error: Any) -> str:
    """What a field that broke ``rule`` must be, in words, with the value it got."""
    got, arg = json.dumps(error.instance)[:80], error.validator_value
    if rule == "type":
        return f"must be {_type_words(arg)}, not {got}"
    if rule == "enum":
        return "must be one of " + ", ".join(json.dumps(v) for v in arg)
    bound = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
             "exclusiveMaximum": "less than", "multipleOf": "a multiple of"}.get(rule)
    if bound:
        return f"must be {bound} {arg}, not {got}"
    if rule in ("minLength", "maxLength"):
        return f"must have {'at least' if rule == 'minLength' else 'at most'} {arg} characters"
    if rule == "pattern":
        return f"must match the pattern {arg}"
    return str(error.message)


def _type_words(kind: Any) -> str:
    words = {"string": "text", "integer": "a whole number", "number": "a number",
             "boolean": "true or false", "null": "null", "object": "a JSON object"}
    kinds = kind if isinstance(kind, list) else [kind]
    return " or ".join(words.get(k, str(k)) for k in kinds)


def form_values(form: Any, values: dict | None) -> Any:
    """The instance of ``form`` that ``values`` (checked by the engine) make: a dataclass
    or a pydantic model built from them (Enum fields as members, an Optional field left out
    as None), a dict for a TypedDict or a schema."""
    if values is None or form is None or isinstance(form, dict):
        return values
    if _is_pydantic(form):
        return form.model_validate(values)
    hints = _hints(form)
    if _is_typeddict(form):
        return {k: _as_type(hints.get(k), v) for k, v in values.items()}
    kwargs = {}
    for f in dataclasses.fields(form):
        if not f.init:
            continue
        if f.name in values:
            kwargs[f.name] = _as_type(hints.get(f.name), values[f.name])
        elif _missing(f.default) and _missing(f.default_factory):
            kwargs[f.name] = None  # an Optional field left out
    return form(**kwargs)


def _as_type(hint: Any, value: Any) -> Any:
    """``value`` (JSON) as the field's type: an Enum member, an int for an int field."""
    while get_origin(hint) is Annotated or get_origin(hint) in (Union, types.UnionType) or (
            getattr(get_origin(hint), "_name", None) in _WRAPPERS):
        args = [a for a in get_args(hint) if a is not type(None)]
        hint = args[0]
    if value is None:
        return None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# ---------------------------------------------------------------------- the command line

def parse_fields(schema: dict | None, texts: list[str]) -> dict:
    """``KEY=VALUE`` texts (``durable-nb approve --field``) as form values: a value is read
    as JSON when it parses, else as text, then as the field's type says ("3" for an
    integer field is 3, "yes" for a boolean is true, any text for a text field is that
    text). What does not convert is left for the engine to refuse, naming the field."""
    props = (schema or {}).get("properties", {})
    out: dict[str, Any] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--field {text!r}: write KEY=VALUE, e.g. --field amount=3")
        out[key.strip()] = coerce(props.get(key.strip()), raw)
    return out


def coerce(prop: dict | None, raw: str) -> Any:
    """One field's text as the value its schema takes (see ``parse_fields``)."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if prop is None:
        return value
    if "enum" in prop:
        return next((e for e in prop["enum"] if e == value or (
            isinstance(e, str) and e == raw)), value)
    kinds = _kinds(prop)
    if value is None and "null" in kinds:
        return None
    if "string" in kinds:
        return value if isinstance(value, str) else raw
    if "boolean" in kinds and raw.strip().lower() in _BOOLS:
        return _BOOLS[raw.strip().lower()]
    for kind, convert in (("integer", int), ("number", float)):
        if kind in kinds:
            try:
                number = convert(raw.strip())
            except ValueError:
                continue
            if isinstance(number, int) or math.isfinite(number):
                return number
    return value


_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "y": True,
          "false": False, "no": False, "off": False, "0": False, "n": False}


def pending_form(waits: list[dict], name: str | None = None) -> dict | None:
    """The typed form of the pending approval a decision is for (``name``, else the first
    pending one), from a run's waits as ``GET /runs/{id}`` lists them; None without one."""
    for w in waits:
        if w.get("kind") == "approval" and w.get("outcome") is None and (
                name is None or w.get("name") == name):
            return w.get("form")
    return None
