"""The tool specification: parameters, their constraints and their conditional dependencies.

This is Llero's own model of a tool. It compiles to JSON Schema (``llero.forge.compiler``) and is
what import produces and export reads. Every bound here exists so that a spec cannot make
validation slow or memory-hungry: a huge ``maxLength``, an unbounded enum or deep nesting is
rejected when the spec is saved, not when a model's tool call is checked.
"""

from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from llero.forge.models import DESCRIPTION_MAX, NAME_MAX

# Providers accept tool names matching this pattern (OpenAI allows 64 characters, Anthropic and
# MCP more); the strictest common form is what Llero stores.
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
PARAMETER_NAME_PATTERN = r"^[A-Za-z0-9_.$-]{1,64}$"

MAX_PARAMETERS = 128
MAX_NESTING = 8
MAX_ENUM_VALUES = 1000
MAX_STRING_LENGTH = 1_048_576  # no argument can be longer than the largest request body
MAX_ARRAY_ITEMS = 10_000
MAX_PATTERN_LENGTH = 1024
MAX_CONDITIONS = 32


class ParameterType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    OBJECT = "object"
    ARRAY = "array"
    ENUM = "enum"


class Effect(StrEnum):
    """What a condition does to its parameter while the condition holds."""

    REQUIRED = "required"  # the parameter must be given
    VISIBLE = "visible"  # the parameter may be given only while the condition holds
    HIDDEN = "hidden"  # the parameter must not be given


class Operator(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    CONTAINS = "contains"
    GREATER_THAN = "greater_than"
    LESS_THAN = "less_than"


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=MAX_STRING_LENGTH)


# JSON has no NaN or infinity, and a bound of NaN would make every comparison with it false.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Scalar = str | int | FiniteFloat | bool | None
ParameterName = Annotated[str, Field(pattern=PARAMETER_NAME_PATTERN)]

# Strict models take enum members only as enum instances when validating Python objects; these
# fields also accept their string values, which is what JSON and stored rows hold.
TypeField = Annotated[ParameterType, Field(strict=False)]
EffectField = Annotated[Effect, Field(strict=False)]
OperatorField = Annotated[Operator, Field(strict=False)]


class Condition(SpecModel):
    """A dependency rule: ``effect`` applies to the owning parameter while the sibling
    ``parameter`` compares to ``value`` by ``operator``."""

    effect: EffectField
    parameter: ParameterName
    operator: OperatorField
    value: JsonValue


class Schema(SpecModel):
    """The type and constraints of a value; a parameter, an array item or an object property."""

    type: TypeField
    description: Annotated[str, Field(max_length=DESCRIPTION_MAX)] = ""
    format: Annotated[str, Field(max_length=64)] | None = None
    enum: Annotated[list[Scalar], Field(min_length=1, max_length=MAX_ENUM_VALUES)] | None = None
    minimum: int | FiniteFloat | None = None
    maximum: int | FiniteFloat | None = None
    min_length: Annotated[int, Field(ge=0, le=MAX_STRING_LENGTH)] | None = None
    max_length: Annotated[int, Field(ge=0, le=MAX_STRING_LENGTH)] | None = None
    pattern: Annotated[str, Field(max_length=MAX_PATTERN_LENGTH)] | None = None
    min_items: Annotated[int, Field(ge=0, le=MAX_ARRAY_ITEMS)] | None = None
    max_items: Annotated[int, Field(ge=0, le=MAX_ARRAY_ITEMS)] | None = None
    items: "Schema | None" = None
    properties: Annotated[list["Parameter"], Field(max_length=MAX_PARAMETERS)] | None = None
    # JSON null is a meaningful default ("none unless given"), so presence is tracked separately
    # through ``has_default`` rather than by comparing with None.
    default: JsonValue = None
    has_default: bool = False

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.type is ParameterType.ENUM and not self.enum:
            raise ValueError("an enum parameter needs a non-empty list of enum values")
        if self.items is not None and self.type is not ParameterType.ARRAY:
            raise ValueError("items is allowed only on an array")
        if self.properties is not None and self.type is not ParameterType.OBJECT:
            raise ValueError("properties are allowed only on an object")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is greater than maximum")
        _check_pair(self.min_length, self.max_length, "min_length", "max_length")
        _check_pair(self.min_items, self.max_items, "min_items", "max_items")
        _check_default_flag(self)
        return self


def _check_default_flag(schema: "Schema") -> None:
    # Giving "default" implies has_default; an explicit has_default (as model_dump writes it)
    # is kept, so that dumping and loading a schema gives the same schema back.
    fields_set = schema.model_fields_set
    if "has_default" not in fields_set:
        if "default" in fields_set:
            schema.has_default = True
        return
    if not schema.has_default and schema.default is not None:
        raise ValueError("default is set but has_default is false")


def _check_pair(low: int | None, high: int | None, low_name: str, high_name: str) -> None:
    if low is not None and high is not None and low > high:
        raise ValueError(f"{low_name} is greater than {high_name}")


class Parameter(Schema):
    name: ParameterName
    required: bool = False
    conditions: Annotated[list[Condition], Field(max_length=MAX_CONDITIONS)] = []


class ToolSpec(SpecModel):
    """A tool as a provider sees it: a name, a description and its parameters."""

    name: Annotated[str, Field(pattern=TOOL_NAME_PATTERN, max_length=NAME_MAX)]
    description: Annotated[str, Field(max_length=DESCRIPTION_MAX)] = ""
    parameters: Annotated[list[Parameter], Field(max_length=MAX_PARAMETERS)] = []

    @model_validator(mode="after")
    def _check_names_and_conditions(self) -> Self:
        check_siblings(self.parameters, "parameters", depth=1)
        return self


def check_siblings(parameters: list[Parameter], path: str, depth: int) -> None:
    """Reject duplicate names, conditions on unknown siblings and nesting beyond MAX_NESTING."""
    if depth > MAX_NESTING:
        raise ValueError(f"{path} nests deeper than {MAX_NESTING} levels")
    names = [parameter.name for parameter in parameters]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path} has duplicate names: {', '.join(duplicates)}")
    for parameter in parameters:
        for condition in parameter.conditions:
            if condition.parameter not in names or condition.parameter == parameter.name:
                raise ValueError(
                    f"{path}.{parameter.name}: condition refers to {condition.parameter!r}, "
                    "which is not another parameter at the same level"
                )
        _check_nested(parameter, f"{path}.{parameter.name}", depth)


def _check_nested(schema: Schema, path: str, depth: int) -> None:
    # Array items count as a level like object properties do: otherwise arrays of arrays could
    # nest without bound and make compiling and validating recurse that deep.
    if schema.properties is not None:
        check_siblings(schema.properties, path, depth + 1)
    if schema.items is not None:
        if depth + 1 > MAX_NESTING:
            raise ValueError(f"{path}[] nests deeper than {MAX_NESTING} levels")
        _check_nested(schema.items, f"{path}[]", depth + 1)


def dump_parameters(parameters: list[Parameter]) -> list[dict[str, Any]]:
    """Return the parameters as stored in ``Tool.parameters`` (JSON, defaults left out)."""
    return [parameter.model_dump(mode="json", exclude_defaults=True) for parameter in parameters]


def load_parameters(stored: list[dict[str, Any]]) -> list[Parameter]:
    return [Parameter.model_validate(item) for item in stored]
