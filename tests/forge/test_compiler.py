"""Compiling a tool spec to JSON Schema draft 2020-12."""

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from llero.errors import InvalidInput
from llero.forge.compiler import DIALECT, compile_schema, escape_literal, provider_schema
from tests.forge.helpers import condition, make_spec


def _is_valid(schema: dict[str, Any], instance: object) -> bool:
    return bool(Draft202012Validator(schema).is_valid(instance))


def test_compile_schema_root_is_closed_2020_12_object() -> None:
    spec = make_spec({"name": "city", "type": "string", "required": True})

    schema = compile_schema(spec)

    assert schema["$schema"] == DIALECT
    assert schema["type"] == "object"
    assert schema["properties"] == {"city": {"type": "string"}}
    assert schema["required"] == ["city"]
    assert schema["additionalProperties"] is False


def test_compile_schema_without_parameters_accepts_only_empty_object() -> None:
    schema = compile_schema(make_spec())

    assert _is_valid(schema, {})
    assert not _is_valid(schema, {"anything": 1})


@pytest.mark.parametrize(
    ("attribute", "value", "keyword", "kind"),
    [
        ("minimum", 1, "minimum", "integer"),
        ("maximum", 2.5, "maximum", "number"),
        ("min_length", 1, "minLength", "string"),
        ("max_length", 9, "maxLength", "string"),
        ("pattern", "^[a-z]+$", "pattern", "string"),
        ("format", "date", "format", "string"),
        ("min_items", 1, "minItems", "array"),
        ("max_items", 3, "maxItems", "array"),
    ],
)
def test_compile_schema_constraint_uses_json_schema_name(
    attribute: str, value: object, keyword: str, kind: str
) -> None:
    spec = make_spec({"name": "value", "type": kind, attribute: value})

    compiled = compile_schema(spec)["properties"]["value"]

    assert compiled[keyword] == value
    assert attribute not in compiled or attribute == keyword


def test_compile_schema_enum_type_untyped() -> None:
    spec = make_spec({"name": "unit", "type": "enum", "enum": ["metric", 3, None]})

    compiled = compile_schema(spec)["properties"]["unit"]

    assert compiled == {"enum": ["metric", 3, None]}


def test_compile_schema_keeps_description_and_default() -> None:
    spec = make_spec(
        {"name": "unit", "type": "string", "description": "Unit.", "default": "metric"},
        {"name": "note", "type": "string", "default": None},
    )

    properties = compile_schema(spec)["properties"]

    assert properties["unit"] == {"type": "string", "description": "Unit.", "default": "metric"}
    assert properties["note"] == {"type": "string", "default": None}


def test_compile_schema_nested_object_closed() -> None:
    spec = make_spec(
        {
            "name": "points",
            "type": "array",
            "items": {
                "type": "object",
                "properties": [
                    {"name": "x", "type": "number", "required": True},
                    {"name": "y", "type": "number"},
                ],
            },
        }
    )

    schema = compile_schema(spec)
    items = schema["properties"]["points"]["items"]

    assert items["additionalProperties"] is False
    assert items["required"] == ["x"]
    assert _is_valid(schema, {"points": [{"x": 1}, {"x": 2, "y": 3}]})
    assert not _is_valid(schema, {"points": [{"x": 1, "z": 0}]})
    assert not _is_valid(schema, {"points": [{"y": 1}]})


def test_compile_schema_object_without_properties_is_open() -> None:
    spec = make_spec({"name": "headers", "type": "object"})

    schema = compile_schema(spec)

    assert schema["properties"]["headers"] == {"type": "object"}
    assert _is_valid(schema, {"headers": {"any": "key"}})


def test_provider_schema_is_compile_schema_without_dialect() -> None:
    spec = make_spec({"name": "city", "type": "string"})

    exported = provider_schema(spec)

    assert "$schema" not in exported
    assert exported == {
        key: value for key, value in compile_schema(spec).items() if key != "$schema"
    }


def _mode_spec(effect: str, operator: str = "equals", value: object = "metric") -> Any:
    return make_spec(
        {"name": "mode", "type": "string"},
        {
            "name": "unit",
            "type": "string",
            "conditions": [condition(effect, "mode", operator, value)],
        },
    )


def test_condition_required_compiles_to_if_then_required() -> None:
    schema = compile_schema(_mode_spec("required"))

    assert schema["allOf"] == [
        {
            "if": {"properties": {"mode": {"const": "metric"}}, "required": ["mode"]},
            "then": {"required": ["unit"]},
        }
    ]


@pytest.mark.parametrize(
    ("effect", "arguments", "valid"),
    [
        ("required", {"mode": "metric"}, False),
        ("required", {"mode": "metric", "unit": "m"}, True),
        ("required", {"mode": "imperial"}, True),
        ("required", {}, True),
        ("hidden", {"mode": "metric", "unit": "m"}, False),
        ("hidden", {"mode": "metric"}, True),
        ("hidden", {"mode": "imperial", "unit": "m"}, True),
        ("hidden", {"unit": "m"}, True),
        ("visible", {"mode": "metric", "unit": "m"}, True),
        ("visible", {"mode": "imperial", "unit": "m"}, False),
        ("visible", {"unit": "m"}, False),
        ("visible", {"mode": "imperial"}, True),
    ],
)
def test_condition_effect_holds_only_while_trigger_matches(
    effect: str, arguments: dict[str, str], valid: bool
) -> None:
    schema = compile_schema(_mode_spec(effect))

    assert _is_valid(schema, arguments) is valid


def test_condition_absent_trigger_never_applies() -> None:
    schema = compile_schema(_mode_spec("required", "not_equals", "metric"))

    assert schema["allOf"][0]["if"]["required"] == ["mode"]
    assert _is_valid(schema, {})
    assert not _is_valid(schema, {"mode": "imperial"})


def test_condition_hidden_ignores_non_object() -> None:
    spec = make_spec(
        {
            "name": "options",
            "type": "object",
            "properties": [
                {"name": "mode", "type": "string"},
                {
                    "name": "unit",
                    "type": "string",
                    "conditions": [condition("hidden", "mode", "not_equals", "x")],
                },
            ],
        }
    )
    schema = compile_schema(spec)
    errors = list(Draft202012Validator(schema).iter_errors({"options": [1]}))

    assert [error.validator for error in errors] == ["type"]


@pytest.mark.parametrize(
    ("trigger", "operator", "value", "holds", "fails"),
    [
        ({"type": "string"}, "equals", "a", "a", "b"),
        ({"type": "integer"}, "not_equals", 3, 4, 3),
        ({"type": "string"}, "contains", "a.b", "xa.by", "xaxby"),
        ({"type": "string"}, "contains", "(x)", "((x))", "x"),
        ({"type": "array", "items": {"type": "string"}}, "contains", "b", ["a", "b"], ["a"]),
        ({"type": "number"}, "greater_than", 2.5, 3, 2.5),
        ({"type": "integer"}, "less_than", 0, -1, 0),
    ],
)
def test_condition_operator_matches_trigger_value(
    trigger: dict[str, Any], operator: str, value: object, holds: object, fails: object
) -> None:
    spec = make_spec(
        {"name": "trigger", **trigger},
        {
            "name": "x",
            "type": "string",
            "conditions": [condition("required", "trigger", operator, value)],
        },
    )
    schema = compile_schema(spec)

    assert not _is_valid(schema, {"trigger": holds})
    assert _is_valid(schema, {"trigger": fails})


@pytest.mark.parametrize(
    ("trigger", "operator", "value"),
    [
        ({"type": "integer"}, "contains", 1),
        ({"type": "string"}, "contains", 1),
        ({"type": "string"}, "greater_than", 1),
        ({"type": "number"}, "less_than", "1"),
        ({"type": "number"}, "greater_than", True),
    ],
)
def test_condition_with_mismatched_trigger_is_invalid_input(
    trigger: dict[str, Any], operator: str, value: object
) -> None:
    spec = make_spec(
        {"name": "trigger", **trigger},
        {
            "name": "x",
            "type": "string",
            "conditions": [condition("required", "trigger", operator, value)],
        },
    )

    with pytest.raises(InvalidInput) as caught:
        compile_schema(spec)

    assert caught.value.details[0].field == "parameters.x.conditions[0]"


def test_compile_schema_meta_schema_failure_is_invalid_input() -> None:
    # RE2 is not asked here; Python's re (used by the meta-schema's "regex" format) rejects "(".
    spec = make_spec({"name": "word", "type": "string", "pattern": "("})

    with pytest.raises(InvalidInput) as caught:
        compile_schema(spec)

    assert caught.value.details[0].field == "parameters"
    assert "$.properties.word.pattern" in caught.value.details[0].problem


@pytest.mark.parametrize("text", ["a.b", "^$", "x|y", "(?:z)*", "[a-z]{2}", "back\\slash", "+?"])
def test_escape_literal_matches_only_the_text(text: str) -> None:
    schema = {"type": "string", "pattern": escape_literal(text)}

    assert _is_valid(schema, f"before {text} after")
    assert not _is_valid(schema, text[:-1] + "#")
