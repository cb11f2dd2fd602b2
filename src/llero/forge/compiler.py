"""Compile a tool spec to JSON Schema draft 2020-12.

Every object that lists its properties is closed (``additionalProperties: false``), so a tool call
cannot smuggle arguments the spec does not name. Conditions become an ``allOf`` of
``if``/``then``/``else`` clauses. Each ``if`` also requires the trigger parameter, because
``properties`` alone is vacuously true when the trigger is absent.
"""

import copy
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from llero.errors import InvalidInput, Violation
from llero.forge.spec import Condition, Effect, Operator, Parameter, ParameterType, Schema, ToolSpec

DIALECT = "https://json-schema.org/draft/2020-12/schema"
COMPILE_CACHE_SIZE = 1024

_META_VALIDATOR = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)

# Characters with a meaning in both RE2 and ECMA-262 regular expressions. Escaping exactly these
# keeps a literal substring valid in both dialects, so import can also recognise it again.
REGEX_SPECIAL = frozenset("\\.^$|?*+()[]{}")

_KEYWORDS = (
    ("format", "format"),
    ("minimum", "minimum"),
    ("maximum", "maximum"),
    ("min_length", "minLength"),
    ("max_length", "maxLength"),
    ("pattern", "pattern"),
    ("min_items", "minItems"),
    ("max_items", "maxItems"),
)

SchemaPath = tuple[str | int, ...]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ConditionSite:
    """The parameter and condition behind one ``allOf`` clause of a compiled object schema."""

    parameter: str
    condition: Condition


ConditionSites = dict[SchemaPath, list[ConditionSite]]


@dataclass(frozen=True)
class CompiledSchema:
    """A compiled schema and, per object schema location, the conditions of its ``allOf``."""

    schema: dict[str, Any]
    conditions: ConditionSites


def compile_schema(spec: ToolSpec) -> dict[str, Any]:
    """Return the spec's argument schema with ``$schema``; raise InvalidInput if it is invalid."""
    return copy.deepcopy(compile_spec(spec).schema)


def provider_schema(spec: ToolSpec) -> dict[str, Any]:
    """Return the argument schema as providers take it: the same schema without ``$schema``."""
    schema = dict(compile_schema(spec))
    del schema["$schema"]
    return schema


def compile_spec(spec: ToolSpec) -> CompiledSchema:
    """Compile the spec, keep where each condition went, and check the meta-schema.

    The result is cached and shared between callers, so it must not be modified.
    """
    return _compile_json(spec.model_dump_json())


@lru_cache(maxsize=COMPILE_CACHE_SIZE)
def _compile_json(spec_json: str) -> CompiledSchema:
    # Keyed by the spec's JSON, so an edited spec never reuses a stale schema. The meta-schema
    # check costs several milliseconds per spec, and import, export and validation all compile.
    spec = ToolSpec.model_validate_json(spec_json)
    sites: ConditionSites = {}
    schema = {"$schema": DIALECT, **_object_schema(spec.parameters, (), sites, "parameters")}
    _check_meta_schema(schema)
    return CompiledSchema(schema, sites)


def value_schema(schema: Schema) -> dict[str, Any]:
    """Compile one parameter, array item or property on its own (used to check defaults)."""
    return _value_schema(schema, (), {}, "parameters")


def escape_literal(text: str) -> str:
    """Return a regular expression that matches ``text`` anywhere in a string."""
    return "".join(
        f"\\{character}" if character in REGEX_SPECIAL else character for character in text
    )


def child_path(base: str, key: str | int) -> str:
    """Extend a JSONPath-like location: ``$.unit``, ``$.coords[0]``, ``$['odd.name']``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{base}.{key}"
    quoted = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"{base}['{quoted}']"


def _check_meta_schema(schema: dict[str, Any]) -> None:
    # The same check as Draft202012Validator.check_schema (first error against the meta-schema,
    # formats asserted), with the meta-schema validator built once instead of on every call.
    error = next(iter(_META_VALIDATOR.iter_errors(schema)), None)
    if error is None:
        return
    raise InvalidInput(
        "the tool's JSON Schema is invalid",
        details=[
            Violation(
                "parameters",
                f"the compiled schema is invalid at {error.json_path}: {_shorten(error.message)}",
            )
        ],
    )


def _shorten(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _object_schema(
    parameters: list[Parameter], path: SchemaPath, sites: ConditionSites, where: str
) -> dict[str, Any]:
    properties = {
        parameter.name: _value_schema(
            parameter,
            (*path, "properties", parameter.name),
            sites,
            child_path(where, parameter.name),
        )
        for parameter in parameters
    }
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": [parameter.name for parameter in parameters if parameter.required],
        "additionalProperties": False,
    }
    clauses = _condition_clauses(parameters, path, sites, where)
    if clauses:
        schema["allOf"] = clauses
    return schema


def _value_schema(
    schema: Schema, path: SchemaPath, sites: ConditionSites, where: str
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if schema.type is not ParameterType.ENUM:
        result["type"] = schema.type.value
    if schema.description:
        result["description"] = schema.description
    if schema.enum is not None:
        result["enum"] = list(schema.enum)
    for attribute, keyword in _KEYWORDS:
        value = getattr(schema, attribute)
        if value is not None:
            result[keyword] = value
    if schema.has_default:
        result["default"] = schema.default
    if schema.items is not None:
        result["items"] = _value_schema(schema.items, (*path, "items"), sites, f"{where}[*]")
    if schema.properties is not None:
        result.update(_object_schema(schema.properties, path, sites, where))
    return result


def _condition_clauses(
    parameters: list[Parameter], path: SchemaPath, sites: ConditionSites, where: str
) -> list[dict[str, Any]]:
    by_name = {parameter.name: parameter for parameter in parameters}
    clauses: list[dict[str, Any]] = []
    found: list[ConditionSite] = []
    for parameter in parameters:
        for index, condition in enumerate(parameter.conditions):
            trigger = by_name[condition.parameter]
            location = f"{child_path(where, parameter.name)}.conditions[{index}]"
            clauses.append(_condition_clause(parameter.name, condition, trigger, location))
            found.append(ConditionSite(parameter.name, condition))
    if found:
        sites[path] = found
    return clauses


def _condition_clause(
    name: str, condition: Condition, trigger: Schema, location: str
) -> dict[str, Any]:
    test = _trigger_test(condition, trigger, location)
    clause: dict[str, Any] = {
        "if": {"properties": {condition.parameter: test}, "required": [condition.parameter]}
    }
    if condition.effect is Effect.REQUIRED:
        clause["then"] = {"required": [name]}
    elif condition.effect is Effect.HIDDEN:
        clause["then"] = absent_schema(name)
    else:
        clause["else"] = absent_schema(name)
    return clause


def absent_schema(name: str) -> dict[str, Any]:
    """Return a schema that forbids property ``name``.

    ``{"not": {"required": [name]}}`` would also reject every value that is not an object, because
    ``required`` is vacuously true there. A property that matches nothing rejects only ``name``.
    """
    return {"properties": {name: {"not": {}}}}


def _trigger_test(condition: Condition, trigger: Schema, location: str) -> dict[str, Any]:
    """Return the schema that the trigger's value matches exactly when the condition holds."""
    value = condition.value
    if condition.operator is Operator.EQUALS:
        return {"const": value}
    if condition.operator is Operator.NOT_EQUALS:
        return {"not": {"const": value}}
    if condition.operator is Operator.CONTAINS:
        return _contains_test(value, trigger, location)
    if not _is_number(value):
        raise _condition_error(
            location, f"{condition.operator.value} needs a number to compare with"
        )
    if trigger.type not in (ParameterType.NUMBER, ParameterType.INTEGER):
        raise _condition_error(
            location, f"{condition.operator.value} needs a number or integer parameter to compare"
        )
    # The type keeps the test from being vacuously true for a value that is not a number.
    keyword = (
        "exclusiveMinimum" if condition.operator is Operator.GREATER_THAN else "exclusiveMaximum"
    )
    return {"type": "number", keyword: value}


def _contains_test(value: object, trigger: Schema, location: str) -> dict[str, Any]:
    if trigger.type is ParameterType.STRING:
        if not isinstance(value, str):
            raise _condition_error(location, "contains on a string parameter needs a string value")
        return {"type": "string", "pattern": escape_literal(value)}
    if trigger.type is ParameterType.ARRAY:
        return {"type": "array", "contains": {"const": value}}
    raise _condition_error(location, "contains needs a string or array parameter to look in")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _condition_error(location: str, problem: str) -> InvalidInput:
    return InvalidInput(
        "a condition of the tool is invalid", details=[Violation(location, problem)]
    )
