"""Export to provider formats, parsing import files, and import with its mappings and refusals."""

import json
from typing import Any

import pytest

from llero.errors import InvalidInput
from llero.forge.formats import (
    ImportedSpec,
    ParseFailure,
    RefusedSpec,
    export_tool,
    import_specs,
    parse_documents,
)
from llero.forge.spec import ToolSpec
from tests.forge.helpers import make_spec

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name."}},
    "required": ["city"],
    "additionalProperties": False,
}


def _weather() -> ToolSpec:
    spec = make_spec(
        {"name": "city", "type": "string", "description": "City name.", "required": True},
        name="get_weather",
    )
    return spec.model_copy(update={"description": "Current weather."})


# --- export ------------------------------------------------------------------------------------


def test_export_openai_is_chat_completions_function_tool() -> None:
    exported = export_tool(_weather(), "openai")

    assert exported == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather.",
            "parameters": {**WEATHER_SCHEMA},
        },
    }


def test_export_anthropic_uses_input_schema() -> None:
    exported = export_tool(_weather(), "anthropic")

    assert exported == {
        "name": "get_weather",
        "description": "Current weather.",
        "input_schema": {**WEATHER_SCHEMA},
    }


def test_export_mcp_uses_input_schema_in_camel_case() -> None:
    exported = export_tool(_weather(), "mcp")

    assert exported == {
        "name": "get_weather",
        "description": "Current weather.",
        "inputSchema": {**WEATHER_SCHEMA},
    }


@pytest.mark.parametrize("fmt", ["bfcl", "OpenAI", "", "gemini"])
def test_export_unknown_format_is_invalid_input(fmt: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        export_tool(_weather(), fmt)

    assert caught.value.details[0].field == "format"


# --- parsing -----------------------------------------------------------------------------------


def test_parse_documents_json_array_gives_elements() -> None:
    assert parse_documents(b'[{"a": 1}, {"b": 2}]') == [{"a": 1}, {"b": 2}]


def test_parse_documents_single_object_gives_one_document() -> None:
    assert parse_documents(b'{\n  "a": 1\n}\n') == [{"a": 1}]


def test_parse_documents_json_lines_skip_blank_lines() -> None:
    assert parse_documents(b'{"a": 1}\n\n{"b": 2}\r\n') == [{"a": 1}, {"b": 2}]


def test_parse_documents_strips_utf8_bom() -> None:
    assert parse_documents('\ufeff{"a": "é"}'.encode()) == [{"a": "é"}]


def test_parse_documents_invalid_line_numbered() -> None:
    documents = parse_documents(b'{"a": 1}\n{"b": \n{"c": 3}\n')

    assert documents[0] == {"a": 1}
    assert isinstance(documents[1], ParseFailure)
    assert documents[1].line == 2
    assert documents[2] == {"c": 3}


def test_parse_documents_broken_pretty_object_is_one_failure() -> None:
    documents = parse_documents(b'{\n  "a": 1,\n  "b": \n}\n')

    assert documents == [ParseFailure(4, "invalid JSON: Expecting value (column 1)")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"a": 1, "a": 2}', "invalid JSON: the key 'a' appears twice in one object"),
        (b'{"a": NaN}', "invalid JSON: NaN is not a JSON value"),
        (b'{"a": -Infinity}', "invalid JSON: -Infinity is not a JSON value"),
        (b'{"a": 1e400}', "invalid JSON: a number is too large"),
        (b'{"a": ' + b"1" * 5000 + b"}", "invalid JSON: a number is too long"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON: nested too deeply"),
        (b'{"a": "\xff"}', "the file is not valid UTF-8"),
    ],
)
def test_parse_documents_rejects_what_json_forbids(data: bytes, reason: str) -> None:
    documents = parse_documents(data)

    assert documents == [ParseFailure(1, reason)]


def test_parse_documents_empty_file_has_no_documents() -> None:
    assert parse_documents(b" \n\t\n") == []


# --- import: detection and envelopes -----------------------------------------------------------


def _only(documents: list[object], fmt: str | None = None) -> ImportedSpec | RefusedSpec:
    report = import_specs(documents, fmt)
    assert len(report.entries) == 1
    return report.entries[0]


def _imported(documents: list[object], fmt: str | None = None) -> ImportedSpec:
    entry = _only(documents, fmt)
    assert isinstance(entry, ImportedSpec), entry
    return entry


def _refused(documents: list[object], fmt: str | None = None) -> RefusedSpec:
    entry = _only(documents, fmt)
    assert isinstance(entry, RefusedSpec), entry
    return entry


def _codes(entry: ImportedSpec) -> list[tuple[str, str]]:
    return [(mapping.code, mapping.field) for mapping in entry.mappings]


@pytest.mark.parametrize(
    "document",
    [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather.",
                "parameters": WEATHER_SCHEMA,
            },
        },
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather.",
            "parameters": WEATHER_SCHEMA,
        },
        {"name": "get_weather", "description": "Current weather.", "input_schema": WEATHER_SCHEMA},
        {"name": "get_weather", "description": "Current weather.", "inputSchema": WEATHER_SCHEMA},
        {
            "id": "case_1",
            "question": [],
            "function": [
                {
                    "name": "get_weather",
                    "description": "Current weather.",
                    "parameters": WEATHER_SCHEMA,
                }
            ],
        },
    ],
    ids=["openai-chat", "openai-responses", "anthropic", "mcp", "bfcl"],
)
def test_import_detects_format_without_mappings(document: dict[str, Any]) -> None:
    entry = _imported([document])

    assert entry.spec == _weather()
    assert entry.mappings == []
    assert entry.original_name is None


def test_import_reports_source_per_document_and_case() -> None:
    bfcl = {
        "id": "case_9",
        "function": [
            {"name": "a", "parameters": {"type": "object", "properties": {}}},
            {"name": "b", "parameters": {"type": "object", "properties": {}}},
        ],
    }
    mcp = {"name": "c", "inputSchema": {"type": "object", "additionalProperties": False}}

    report = import_specs([mcp, bfcl], None)

    assert [entry.source for entry in report.entries] == [
        "document 1",
        "case case_9, function 1",
        "case case_9, function 2",
    ]


def test_import_unknown_shape_is_refused() -> None:
    entry = _refused([{"name": "x", "parameters": {}}])

    assert entry.code == "unknown_format"
    assert entry.name == "x"


@pytest.mark.parametrize(
    ("fmt", "document"),
    [
        ("openai", {"name": "x", "input_schema": {}}),
        ("anthropic", {"name": "x", "inputSchema": {}}),
        ("mcp", {"type": "function", "function": {"name": "x"}}),
        ("bfcl", {"name": "x", "inputSchema": {}}),
    ],
)
def test_import_with_named_format_refuses_other_shapes(fmt: str, document: dict[str, Any]) -> None:
    assert _refused([document], fmt).code == "wrong_format"


def test_import_unknown_format_name_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        import_specs([], "yaml")

    assert caught.value.details[0].field == "format"


@pytest.mark.parametrize("document", [[1, 2], "tool", 3, None])
def test_import_document_that_is_not_object_is_refused(document: object) -> None:
    assert _refused([document]).code == "not_an_object"


def test_import_parse_failure_is_refused_as_invalid_json() -> None:
    entry = _refused([ParseFailure(7, "invalid JSON: Expecting value (column 3)")])

    assert entry.code == "invalid_json"
    assert entry.reason == "line 7: invalid JSON: Expecting value (column 3)"


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"type": "function", "function": {"name": "t", "strict": True}}, "provider_key_dropped"),
        ({"type": "function", "function": {"name": "t"}, "extra": 1}, "unknown_key_dropped"),
        (
            {"name": "t", "input_schema": {"type": "object"}, "cache_control": {}},
            "provider_key_dropped",
        ),
        (
            {"name": "t", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}},
            "provider_key_dropped",
        ),
        (
            {"name": "t", "inputSchema": {"type": "object"}, "outputSchema": {"type": "object"}},
            "provider_key_dropped",
        ),
        ({"name": "t", "inputSchema": {"type": "object"}, "title": "T"}, "provider_key_dropped"),
        (
            {"id": "c", "function": [{"name": "t", "parameters": {}, "extra": 1}]},
            "unknown_key_dropped",
        ),
    ],
)
def test_import_reports_dropped_envelope_keys(document: dict[str, Any], code: str) -> None:
    entry = _imported([document])

    assert (code, "tool") in _codes(entry)


# --- import: mappings --------------------------------------------------------------------------


def _mcp(schema: dict[str, Any], name: str = "tool") -> dict[str, Any]:
    return {"name": name, "description": "", "inputSchema": schema}


def _closed(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False, **extra}


@pytest.mark.parametrize(
    ("python_type", "json_type"),
    [
        ("dict", "object"),
        ("float", "number"),
        ("tuple", "array"),
        ("int", "integer"),
        ("bool", "boolean"),
        ("str", "string"),
        ("list", "array"),
    ],
)
def test_import_python_type_is_mapped_and_reported(python_type: str, json_type: str) -> None:
    entry = _imported([_mcp(_closed({"value": {"type": python_type}}))])

    assert entry.spec.parameters[0].type == json_type
    assert _codes(entry) == [(f"{python_type}_to_{json_type}", "$.value")]


def test_import_bfcl_dict_root_is_mapped_and_closed() -> None:
    document = {
        "id": "c",
        "function": [
            {"name": "t", "parameters": {"type": "dict", "properties": {"a": {"type": "string"}}}}
        ],
    }

    entry = _imported([document])

    assert _codes(entry) == [("dict_to_object", "$"), ("closed_object", "$")]


@pytest.mark.parametrize(
    ("name", "renamed"),
    [
        ("math.factorial", "math_factorial"),
        ("files/read", "files_read"),
        ("ns:get item", "ns_get_item"),
    ],
)
def test_import_namespaced_name_is_renamed_and_reported(name: str, renamed: str) -> None:
    entry = _imported([_mcp(_closed({}), name=name)])

    assert entry.spec.name == renamed
    assert entry.original_name == name
    assert _codes(entry) == [("name_renamed", "name")]


def test_import_optional_flag_makes_parameter_not_required() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["a", "b"],
        "properties": {
            "a": {"type": "string", "optional": True},
            "b": {"type": "string", "optional": False},
            "c": {"type": "string", "optional": False},
        },
    }

    entry = _imported([_mcp(schema)])

    assert [parameter.required for parameter in entry.spec.parameters] == [False, True, True]
    assert _codes(entry) == [
        ("optional_flag", "$.a"),
        ("optional_flag", "$.b"),
        ("optional_flag", "$.c"),
    ]


def test_import_optional_list_is_reported() -> None:
    empty = _imported([_mcp(_closed({"a": {"type": "string"}}, required=["a"], optional=[]))])
    listed = _imported([_mcp(_closed({"a": {"type": "string"}}, required=["a"], optional=["a"]))])

    assert _codes(empty) == [("optional_list_dropped", "$")]
    assert empty.spec.parameters[0].required is True
    assert _codes(listed) == [("optional_list", "$")]
    assert listed.spec.parameters[0].required is False


def test_import_old_style_required_flag_is_reported() -> None:
    entry = _imported([_mcp(_closed({"a": {"type": "string", "required": True}}))])

    assert entry.spec.parameters[0].required is True
    assert _codes(entry) == [("required_flag", "$.a")]


def test_import_null_default_is_kept_and_reported() -> None:
    entry = _imported([_mcp(_closed({"a": {"type": "string", "default": None}}))])

    parameter = entry.spec.parameters[0]
    assert parameter.has_default is True
    assert parameter.default is None
    assert _codes(entry) == [("null_default_kept", "$.a")]


def test_import_invalid_default_dropped() -> None:
    entry = _imported([_mcp(_closed({"flag": {"type": "boolean", "default": "false"}}))])

    assert entry.spec.parameters[0].has_default is False
    [mapping] = entry.mappings
    assert mapping.code == "invalid_default_dropped"
    assert mapping.field == "$.flag"
    assert mapping.message.endswith("it must be a boolean, got a string")


def test_import_array_level_enum_moves_to_items() -> None:
    schema = _closed({"tags": {"type": "array", "items": {"type": "string"}, "enum": ["a", "b"]}})

    entry = _imported([_mcp(schema)])

    items = entry.spec.parameters[0].items
    assert items is not None
    assert items.enum == ["a", "b"]
    assert entry.spec.parameters[0].enum is None
    assert _codes(entry) == [("enum_moved_to_items", "$.tags")]


def test_import_open_object_closed() -> None:
    schema = {
        "type": "object",
        "properties": {"p": {"type": "object", "properties": {"q": {"type": "string"}}}},
    }

    entry = _imported([_mcp(schema)])

    assert _codes(entry) == [("closed_object", "$"), ("closed_object", "$.p")]


def test_import_object_without_properties_stays_open() -> None:
    entry = _imported([_mcp(_closed({"headers": {"type": "object", "properties": {}}}))])

    assert entry.spec.parameters[0].properties is None
    assert entry.mappings == []


@pytest.mark.parametrize("schema", [{}, {"type": "object"}, {"type": "object", "properties": {}}])
def test_import_root_accepting_anything_is_closed_and_reported(schema: dict[str, Any]) -> None:
    entry = _imported([_mcp(schema)])

    assert entry.spec.parameters == []
    assert ("closed_object", "$") in _codes(entry)


@pytest.mark.parametrize(
    ("schema", "code"),
    [
        ({"type": "string", "title": "A"}, "annotation_dropped"),
        ({"type": "string", "examples": ["x"]}, "annotation_dropped"),
        ({"type": "string", "x-vendor": 1}, "unknown_key_dropped"),
        ({"type": "string", "format": "uri"}, "format_dropped"),
        ({"type": "string", "minimum": 3}, "inapplicable_keyword_dropped"),
        ({"type": ["string", "null"]}, "nullable_dropped"),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, "nullable_dropped"),
        ({"type": "string", "nullable": True}, "nullable_dropped"),
        ({"const": "x"}, "const_to_enum"),
        ({"type": "integer", "exclusiveMinimum": 0}, "exclusive_bound_converted"),
        ({"properties": {}}, "type_inferred"),
        ({"type": "string", "optional": True, "required": False}, "optional_flag"),
    ],
)
def test_import_reports_each_schema_change(schema: dict[str, Any], code: str) -> None:
    entry = _imported([_mcp(_closed({"value": schema}))])

    assert (code, "$.value") in _codes(entry)


def test_import_exclusive_integer_bounds_become_inclusive() -> None:
    schema = _closed({"n": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}})

    parameter = _imported([_mcp(schema)]).spec.parameters[0]

    assert (parameter.minimum, parameter.maximum) == (1, 9)


def test_import_nullable_any_of_keeps_outer_annotations() -> None:
    schema = _closed(
        {
            "v": {
                "anyOf": [{"type": "integer"}, {"type": "null"}],
                "default": None,
                "description": "V.",
            }
        }
    )

    parameter = _imported([_mcp(schema)]).spec.parameters[0]

    assert (parameter.type, parameter.description, parameter.has_default) == ("integer", "V.", True)


def test_import_local_ref_is_inlined_and_reported() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "$defs": {"Point": _closed({"x": {"type": "number"}}), "Unused": {"type": "string"}},
        "properties": {
            "a": {"$ref": "#/$defs/Point"},
            "b": {"$ref": "#/$defs/Point", "description": "B."},
        },
    }

    entry = _imported([_mcp(schema)])

    first, second = entry.spec.parameters
    assert first.properties is not None
    assert first.properties[0].name == "x"
    assert second.description == "B."
    assert _codes(entry) == [
        ("ref_inlined", "$.a"),
        ("ref_inlined", "$.b"),
        ("unused_definitions_dropped", "$"),
    ]


def test_import_other_dialect_is_reported() -> None:
    schema = {**_closed({}), "$schema": "http://json-schema.org/draft-07/schema#"}

    assert _codes(_imported([_mcp(schema)])) == [("dialect_changed", "$")]


def test_import_every_key_change_is_reported() -> None:
    """A schema full of keys Llero does not store imports with one mapping per key."""
    schema = _closed(
        {
            "a": {"type": "str", "title": "A", "x-a": 1, "format": "hostname", "minItems": 1},
            "b": {"type": "float", "nullable": True, "default": None},
        },
        title="Arguments",
        description="Root.",
    )

    entry = _imported([_mcp(schema)])

    assert sorted(_codes(entry)) == sorted(
        [
            ("annotation_dropped", "$"),
            ("annotation_dropped", "$"),
            ("str_to_string", "$.a"),
            ("annotation_dropped", "$.a"),
            ("unknown_key_dropped", "$.a"),
            ("format_dropped", "$.a"),
            ("inapplicable_keyword_dropped", "$.a"),
            ("nullable_dropped", "$.b"),
            ("float_to_number", "$.b"),
            ("null_default_kept", "$.b"),
        ]
    )


# --- import: refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "code", "reason_part"),
    [
        ({"type": "any"}, "unsupported_type", "has type 'any'"),
        ({"type": ["string", "integer"]}, "unsupported_type", "Llero needs exactly one type"),
        ({"description": "no type"}, "unsupported_type", "has no type"),
        (
            {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "unsupported_keyword",
            "alternatives",
        ),
        ({"type": "array", "uniqueItems": True}, "unsupported_keyword", "'uniqueItems'"),
        ({"type": "number", "exclusiveMinimum": 0}, "unsupported_keyword", "inclusive"),
        ({"type": "number", "multipleOf": 2}, "unsupported_keyword", "'multipleOf'"),
        (
            {"type": "array", "items": [{"type": "string"}]},
            "unsupported_keyword",
            "one schema per position",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": True,
            },
            "unsupported_keyword",
            "beyond its listed",
        ),
        (
            {"type": "object", "additionalProperties": {"type": "string"}},
            "unsupported_keyword",
            "unlisted keys",
        ),
        ({"type": "object", "properties": {}, "required": ["a"]}, "invalid_schema", "do not exist"),
        (
            {"type": "string", "maxLength": 10**9},
            "bound_exceeded",
            "above Llero's bound of 1048576",
        ),
        ({"type": "array", "maxItems": 10**6}, "bound_exceeded", "above Llero's bound of 10000"),
        ({"type": "string", "pattern": "(?=a)"}, "unsupported_pattern", "RE2 cannot compile"),
        ({"type": "string", "pattern": "a" * 1025}, "bound_exceeded", "longer than 1024"),
        ({"type": "string", "description": "d" * 4097}, "bound_exceeded", "longer than 4096"),
        (
            {"type": "string", "enum": [[1]]},
            "invalid_schema",
            "not a string, number, boolean or null",
        ),
        ({"type": "string", "enum": ["a"] * 1001}, "bound_exceeded", "more than 1000 values"),
        ({"type": "integer", "enum": ["a"]}, "invalid_spec", "'a' is not a valid integer"),
        ({"type": "string", "minLength": -1}, "invalid_schema", "not a non-negative integer"),
        ({"$ref": "https://example.com/schema.json"}, "external_ref", "only local references"),
        ({"$ref": "#/$defs/missing"}, "invalid_schema", "does not name a schema"),
        (True, "invalid_schema", "a boolean schema"),
        ({"type": "string", "if": {}}, "unsupported_keyword", "'if'"),
    ],
)
def test_import_refuses_what_llero_cannot_express(
    schema: object, code: str, reason_part: str
) -> None:
    entry = _refused([_mcp(_closed({"value": schema}))])

    assert entry.code == code
    assert reason_part in entry.reason
    assert entry.name == "tool"


def test_import_refuses_non_ascii_parameter_name() -> None:
    entry = _refused([_mcp(_closed({"año": {"type": "integer"}}))])

    assert entry.code == "invalid_parameter_name"
    assert "renaming a parameter would break every call" in entry.reason


def test_import_refuses_root_that_is_not_an_object() -> None:
    assert _refused([_mcp({"type": "string"})]).code == "invalid_schema"


def test_import_refusal_does_not_stop_other_specs() -> None:
    good = _mcp(_closed({}), name="good")
    bad = _mcp(_closed({"x": {"type": "any"}}), name="bad")

    report = import_specs([bad, good, bad], None)

    assert [type(entry).__name__ for entry in report.entries] == [
        "RefusedSpec",
        "ImportedSpec",
        "RefusedSpec",
    ]
    assert [entry.spec.name for entry in report.imported] == ["good"]
    assert len(report.refused) == 2


def test_import_conditions_written_by_llero_become_conditions_again() -> None:
    schema = json.loads(json.dumps(export_tool(_conditional_spec(), "mcp")["inputSchema"]))

    entry = _imported([_mcp(schema, name="conditional")])

    assert entry.spec == _conditional_spec()
    assert entry.mappings == []


def _conditional_spec() -> ToolSpec:
    return make_spec(
        {"name": "mode", "type": "string"},
        {"name": "tags", "type": "array", "items": {"type": "string"}},
        {"name": "size", "type": "number"},
        {
            "name": "unit",
            "type": "string",
            "conditions": [
                {
                    "effect": "required",
                    "parameter": "mode",
                    "operator": "equals",
                    "value": "metric",
                },
                {"effect": "hidden", "parameter": "mode", "operator": "contains", "value": "a.(b)"},
                {"effect": "visible", "parameter": "tags", "operator": "contains", "value": "x"},
                {
                    "effect": "required",
                    "parameter": "size",
                    "operator": "greater_than",
                    "value": 2.5,
                },
                {"effect": "hidden", "parameter": "size", "operator": "less_than", "value": 0},
                {
                    "effect": "visible",
                    "parameter": "mode",
                    "operator": "not_equals",
                    "value": "imperial",
                },
            ],
        },
        name="conditional",
    )


@pytest.mark.parametrize(
    "clause",
    [
        {"if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}},
        {
            "if": {"properties": {"a": {"const": 1}}, "required": ["a"]},
            "then": {"required": ["b", "a"]},
        },
        {
            "if": {"properties": {"a": {"minimum": 1}}, "required": ["a"]},
            "then": {"required": ["b"]},
        },
        {
            "if": {"properties": {"a": {"type": "string", "pattern": "a.b"}}, "required": ["a"]},
            "then": {"required": ["b"]},
        },
        {
            "if": {"properties": {"a": {"const": 1}}, "required": ["a"]},
            "then": {"required": ["b"]},
            "else": {},
        },
        {"if": {"properties": {"z": {"const": 1}}, "required": ["z"]}, "then": {"required": ["b"]}},
        {"not": {"required": ["a"]}},
    ],
)
def test_import_refuses_other_all_of_rules(clause: dict[str, Any]) -> None:
    schema = _closed({"a": {"type": "string"}, "b": {"type": "string"}}, allOf=[clause])

    entry = _refused([_mcp(schema)])

    assert entry.code == "unsupported_keyword"
    assert "allOf at $" in entry.reason


def test_import_flags_inside_ref_target_are_read() -> None:
    schema = _closed(
        {"a": {"$ref": "#/$defs/A"}},
        required=["a"],
        **{"$defs": {"A": {"type": "string", "optional": True}}},
    )

    entry = _imported([_mcp(schema)])

    assert entry.spec.parameters[0].required is False
    assert ("optional_flag", "$.a") in _codes(entry)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "required": True, "properties": {}, "additionalProperties": False},
        {"type": "object", "optional": ["x"]},
    ],
)
def test_import_stray_flags_are_reported(schema: dict[str, Any]) -> None:
    entry = _imported([_mcp(schema)])

    assert ("unknown_key_dropped", "$") in _codes(entry)


def test_import_flag_on_array_item_is_reported() -> None:
    schema = _closed({"list": {"type": "array", "items": {"type": "string", "optional": True}}})

    entry = _imported([_mcp(schema)])

    assert _codes(entry) == [("unknown_key_dropped", "$.list[*]")]
