"""Hostile input to import and validation: each is refused with a reason or handled in bounded
time and memory, never with a crash."""

import time
from typing import Any

import pytest

from llero.forge.formats import ImportedSpec, RefusedSpec, import_specs, parse_documents
from llero.forge.spec import MAX_NESTING, ToolSpec
from llero.forge.validation import validate_arguments
from tests.conftest import CORPUS_DIR
from tests.forge.helpers import make_spec


def _mcp(schema: object, name: str = "tool") -> dict[str, Any]:
    return {"name": name, "description": "", "inputSchema": schema}


def _only(document: object) -> ImportedSpec | RefusedSpec:
    [entry] = import_specs([document], None).entries
    return entry


def _refused(document: object) -> RefusedSpec:
    entry = _only(document)
    assert isinstance(entry, RefusedSpec), entry
    return entry


def _nested(levels: int, leaf: object) -> object:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


# --- recursive $ref ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        {  # a tree node whose children are nodes
            "type": "object",
            "$defs": {
                "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}
            },
            "properties": {"root": {"$ref": "#/$defs/Node"}},
        },
        {  # two definitions that contain each other
            "type": "object",
            "definitions": {
                "A": {"type": "array", "items": {"$ref": "#/definitions/B"}},
                "B": {"type": "object", "properties": {"a": {"$ref": "#/definitions/A"}}},
            },
            "properties": {"start": {"$ref": "#/definitions/A"}},
        },
        {  # an alias chain that loops without any schema in between
            "type": "object",
            "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}},
            "properties": {"x": {"$ref": "#/$defs/A"}},
        },
        {  # a property that is the whole schema again
            "type": "object",
            "properties": {"again": {"$ref": "#"}},
        },
    ],
    ids=["self", "mutual", "alias-loop", "root"],
)
def test_recursive_ref_is_refused(schema: dict[str, Any]) -> None:
    entry = _refused(_mcp(schema))

    assert entry.code == "recursive_ref"
    assert "refers back to a definition that contains it" in entry.reason


def test_ref_used_twice_without_recursion_is_inlined() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "$defs": {"Id": {"type": "integer", "minimum": 1}},
        "properties": {"a": {"$ref": "#/$defs/Id"}, "b": {"$ref": "#/$defs/Id"}},
    }

    entry = _only(_mcp(schema))

    assert isinstance(entry, ImportedSpec)
    assert [parameter.minimum for parameter in entry.spec.parameters] == [1, 1]


def test_ref_that_multiplies_the_schema_is_refused_quickly() -> None:
    # Each definition uses the next one 100 times: inlined, three levels give a million schemas.
    definitions = {
        f"D{level}": {
            "type": "object",
            "additionalProperties": False,
            "properties": {f"p{index}": {"$ref": f"#/$defs/D{level + 1}"} for index in range(100)},
        }
        for level in range(4)
    }
    definitions["D4"] = {"type": "string"}
    schema = {**definitions["D0"], "$defs": definitions}

    started = time.perf_counter()
    entry = _refused(_mcp(schema))
    elapsed = time.perf_counter() - started

    assert entry.code == "too_large"
    assert elapsed < 2


# --- patterns ----------------------------------------------------------------------------------


def test_catastrophic_pattern_imports_and_validates_in_linear_time() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"word": {"type": "string", "pattern": "^(a+)+$"}},
    }
    entry = _only(_mcp(schema))
    assert isinstance(entry, ImportedSpec)

    started = time.perf_counter()
    violations = validate_arguments(entry.spec, {"word": "a" * 100_000 + "!"})
    elapsed = time.perf_counter() - started

    assert [violation.field for violation in violations] == ["$.word"]
    assert elapsed < 0.5


@pytest.mark.parametrize("pattern", ["(a)\\1", "(?=a)", "(?<!a)b", "(?>a)", "a++"])
def test_pattern_needing_backtracking_is_refused(pattern: str) -> None:
    schema = {"type": "object", "properties": {"w": {"type": "string", "pattern": pattern}}}

    entry = _refused(_mcp(schema))

    assert entry.code == "unsupported_pattern"
    assert entry.reason.startswith("RE2 cannot compile the pattern at $.w (")


# --- bounds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("maxLength", 10**9), ("minLength", 10**9), ("maxItems", 10**9), ("maxLength", 10**30)],
)
def test_bound_above_llero_limit_is_refused(keyword: str, value: int) -> None:
    kind = "array" if "Items" in keyword else "string"
    schema = {"type": "object", "properties": {"v": {"type": kind, keyword: value}}}

    entry = _refused(_mcp(schema))

    assert entry.code == "bound_exceeded"
    assert entry.reason.startswith(f"{keyword} {value} at $.v is above Llero's bound of ")


def test_spec_model_rejects_max_length_above_bound() -> None:
    with pytest.raises(ValueError, match="max_length"):
        make_spec({"name": "v", "type": "string", "max_length": 10**9})


def test_too_many_properties_are_refused() -> None:
    schema = {"type": "object", "properties": {f"p{n}": {"type": "string"} for n in range(129)}}

    assert _refused(_mcp(schema)).code == "bound_exceeded"


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "<script>alert(1)</script>",
        "get_weather<script>",
        'tool"onload="x',
        "tool\u202etxt.exe",  # a right-to-left override that disguises the name
        "tool\x00",
        "tool\nname",
        "名前",
        "a" * 65,
        "",
    ],
)
def test_name_that_cannot_be_made_safe_is_refused(name: str) -> None:
    entry = _refused(_mcp({"type": "object"}, name=name))

    assert entry.code in ("unsafe_name", "invalid_name")
    assert "<script>" not in entry.reason
    assert entry.name == (name or None)


def test_non_string_name_is_refused() -> None:
    assert _refused(_mcp({"type": "object"}, name=7)).code == "invalid_name"  # type: ignore[arg-type]


# --- deep nesting ------------------------------------------------------------------------------


def test_deep_default_value_is_refused() -> None:
    schema = {
        "type": "object",
        "properties": {"v": {"type": "array", "default": _nested(100_000, 1)}},
    }

    entry = _refused(_mcp(schema))

    assert entry.code == "too_deep"


def test_deeply_nested_items_are_refused() -> None:
    items: dict[str, Any] = {"type": "string"}
    for _ in range(MAX_NESTING):
        items = {"type": "array", "items": items}
    schema = {"type": "object", "properties": {"v": items}}

    entry = _refused(_mcp(schema))

    assert entry.code == "too_deep"
    assert entry.reason == f"$.v{'[*]' * MAX_NESTING} nests deeper than {MAX_NESTING} levels"


def test_items_at_max_nesting_import() -> None:
    items: dict[str, Any] = {"type": "string"}
    for _ in range(MAX_NESTING - 1):
        items = {"type": "array", "items": items}
    schema = {"type": "object", "additionalProperties": False, "properties": {"v": items}}

    assert isinstance(_only(_mcp(schema)), ImportedSpec)


def test_deeply_nested_document_file_is_a_parse_failure() -> None:
    data = b'{"name": "t", "inputSchema": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"

    [failure] = parse_documents(data)

    assert not isinstance(failure, dict)
    assert _refused(failure).code == "invalid_json"


def test_deeply_nested_argument_does_not_recurse() -> None:
    spec = make_spec({"name": "data", "type": "object"}, {"name": "list", "type": "array"})
    nested_object: object = {}
    for _ in range(100_000):
        nested_object = {"a": nested_object}

    violations = validate_arguments(spec, {"data": nested_object, "list": _nested(100_000, 0)})

    assert violations == []


def test_spec_model_rejects_deep_items_without_crashing() -> None:
    items: dict[str, Any] = {"type": "string"}
    for _ in range(5_000):
        items = {"type": "array", "items": items}

    with pytest.raises(ValueError, match="validation error"):
        ToolSpec.model_validate({"name": "t", "parameters": [{"name": "v", **items}]})


# --- a corpus file with one broken line --------------------------------------------------------


def test_corpus_file_invalid_line_refused_alone() -> None:
    lines = (CORPUS_DIR / "BFCL_v4_simple_python.json").read_bytes().splitlines()
    broken = 17
    lines[broken - 1] = lines[broken - 1][: len(lines[broken - 1]) // 2]
    data = b"\n".join(lines) + b"\n"

    documents = parse_documents(data)
    report = import_specs(documents, "bfcl")

    failures = [document for document in documents if not isinstance(document, dict)]
    assert len(documents) == len(lines)
    assert [getattr(failure, "line", None) for failure in failures] == [broken]
    [refused] = [entry for entry in report.refused if entry.code == "invalid_json"]
    assert refused.source == f"document {broken}"
    assert refused.reason.startswith(f"line {broken}: invalid JSON: ")
    assert [entry.code for entry in report.refused] == ["invalid_json", "unsupported_type"]
    assert len(report.imported) == len(lines) - 2  # simple_python_109 has a type "any"
