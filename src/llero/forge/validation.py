"""Validate tool call arguments against a tool spec, and check a spec before it is saved.

Patterns run on RE2, never on Python's backtracking ``re``: RE2 matches in time linear in the
input, so a spec author cannot write a pattern such as ``^(a+)+$`` that stalls validation.
A pattern that RE2 cannot compile (backreferences, lookaround) is rejected when the spec is saved,
and if such a spec is validated anyway, its pattern fails closed.

Messages name the location and the rule that failed, never the rejected argument value, because
a tool call may carry a secret in any argument.
"""

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from functools import lru_cache
from typing import Any

import re2
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema.protocols import Validator

from llero.errors import InvalidInput, Violation
from llero.forge.compiler import (
    CompiledSchema,
    ConditionSite,
    child_path,
    compile_spec,
    value_schema,
)
from llero.forge.spec import (
    Condition,
    Effect,
    Operator,
    Parameter,
    ParameterType,
    Schema,
    ToolSpec,
)

VALIDATOR_CACHE_SIZE = 256
MAX_VIOLATIONS = 1000
PATTERN_CACHE_SIZE = 512
# RE2 bounds each compiled pattern's memory; matching falls back from its DFA to a slower but
# still linear NFA when the budget runs out, so this caps memory without reopening ReDoS.
RE2_MAX_MEMORY = 2 << 20
ENUM_VALUES_SHOWN = 10
VALUE_SHOWN_LENGTH = 80

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = RE2_MAX_MEMORY

# RFC 3339 section 5.6; the ranges of each field are checked after the match.
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-]([0-9]{2}):([0-9]{2}))"
_DATE_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]" + _TIME)
_FULL_TIME = re.compile(_TIME)

_TEMPLATES = {
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "exclusiveMinimum": "must be greater than {}",
    "exclusiveMaximum": "must be less than {}",
    "minLength": "must be at least {} characters long",
    "maxLength": "must be at most {} characters long",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "format": "must be a valid {}",
}
_ARTICLES = {"integer": "an integer", "object": "an object", "array": "an array"}

_APPLIES_TO = {
    "format": {ParameterType.STRING},
    "minimum": {ParameterType.NUMBER, ParameterType.INTEGER},
    "maximum": {ParameterType.NUMBER, ParameterType.INTEGER},
    "min_length": {ParameterType.STRING},
    "max_length": {ParameterType.STRING},
    "pattern": {ParameterType.STRING},
    "min_items": {ParameterType.ARRAY},
    "max_items": {ParameterType.ARRAY},
}


# --- RE2 patterns ------------------------------------------------------------------------------


@lru_cache(maxsize=PATTERN_CACHE_SIZE)
def _compile_pattern(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def pattern_error(pattern: str) -> str | None:
    """Return why RE2 cannot compile ``pattern``, or None when it can."""
    try:
        _compile_pattern(pattern)
    except re2.error as error:
        reason = error.args[0] if error.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return str(reason)
    return None


def _pattern_matches(pattern: str, text: str) -> bool:
    try:
        compiled = _compile_pattern(pattern)
    except re2.error:
        return False
    return compiled.search(text) is not None


# --- formats -----------------------------------------------------------------------------------


def _is_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    match = _DATE_TIME.fullmatch(instance)
    if match is None:
        return False
    year, month, day = (int(part) for part in match.group(1, 2, 3))
    try:
        date(year, month, day)
    except ValueError:
        return False
    return _time_fields_valid(match.groups()[3:])


def _is_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    match = _FULL_TIME.fullmatch(instance)
    return match is not None and _time_fields_valid(match.groups())


def _time_fields_valid(groups: tuple[str | Any, ...]) -> bool:
    hour, minute, second = int(groups[0]), int(groups[1]), int(groups[2])
    # 60 is a leap second; RFC 3339 allows it, and which minutes have one is not knowable here.
    if hour > 23 or minute > 59 or second > 60:
        return False
    offset_hour, offset_minute = groups[5], groups[6]
    return offset_hour is None or (int(offset_hour) <= 23 and int(offset_minute) <= 59)


def _is_regex(instance: object) -> bool:
    return not isinstance(instance, str) or pattern_error(instance) is None


def _build_format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    # NOTE: jsonschema's "email" and "idn-email" checks only look for an "@", so they accept
    # many strings that are not addresses.
    for name in ("date", "email", "idn-email", "idn-hostname", "ipv4", "ipv6", "uuid"):
        function, raises = Draft202012Validator.FORMAT_CHECKER.checkers[name]
        checker.checks(name, raises)(function)
    checker.checks("date-time")(_is_date_time)
    checker.checks("time")(_is_time)
    checker.checks("regex")(_is_regex)
    return checker


FORMAT_CHECKER = _build_format_checker()
KNOWN_FORMATS = frozenset(FORMAT_CHECKER.checkers)


# --- the validator class -----------------------------------------------------------------------


def _is_number(_checker: object, instance: object) -> bool:
    if isinstance(instance, bool):
        return False
    if isinstance(instance, float):
        return math.isfinite(instance)
    return isinstance(instance, int)


def _is_integer(checker: object, instance: object) -> bool:
    if isinstance(instance, float):
        return math.isfinite(instance) and instance.is_integer()
    return _is_number(checker, instance)


def _pattern(
    validator: Validator, pattern: str, instance: object, _schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _pattern_matches(pattern, str(instance)):
        yield ValidationError(f"does not match the pattern {pattern!r}")


def _required(
    validator: Validator, required: list[str], instance: object, _schema: dict[str, Any]
) -> Iterator[ValidationError]:
    # The error points at the missing property itself, so its location names the parameter.
    if not isinstance(instance, dict):
        return
    for name in required:
        if name not in instance:
            yield ValidationError(f"{name!r} is required", path=[name])


def _additional_properties(
    validator: Validator, allowed: object, instance: object, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if allowed is not False:
        yield from _DEFAULT_ADDITIONAL_PROPERTIES(validator, allowed, instance, schema)
        return
    if not isinstance(instance, dict):
        return
    known = schema.get("properties", {})
    for name in instance:
        if name not in known:
            yield ValidationError("is not a known parameter", path=[name])


_DEFAULT_ADDITIONAL_PROPERTIES: Callable[..., Iterator[ValidationError]] = (
    Draft202012Validator.VALIDATORS["additionalProperties"]
)

LleroValidator: Any = validators.extend(
    Draft202012Validator,
    validators={
        "pattern": _pattern,
        "required": _required,
        "additionalProperties": _additional_properties,
    },
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _is_number, "integer": _is_integer}
    ),
)


def _validator(schema: dict[str, Any]) -> Any:
    return LleroValidator(schema, format_checker=FORMAT_CHECKER)


@lru_cache(maxsize=VALIDATOR_CACHE_SIZE)
def _validator_for(spec_json: str) -> tuple[CompiledSchema, Any]:
    # Keyed by the spec's JSON so that an edited spec never reuses a stale validator.
    compiled = compile_spec(ToolSpec.model_validate_json(spec_json))
    return compiled, _validator(compiled.schema)


# --- arguments ---------------------------------------------------------------------------------


def validate_arguments(spec: ToolSpec, arguments: object) -> list[Violation]:
    """Return every violation of the spec by ``arguments``; an empty list means they are valid.

    Past MAX_VIOLATIONS the list ends with one entry saying that more were found, because a
    request of a few hundred kilobytes could otherwise produce a response of many megabytes.
    Raises InvalidInput when the spec itself does not compile.
    """
    compiled, validator = _validator_for(spec.model_dump_json())
    errors = itertools.islice(validator.iter_errors(arguments), MAX_VIOLATIONS + 1)
    violations = [_violation(error, compiled) for error in errors]
    if len(violations) > MAX_VIOLATIONS:
        del violations[MAX_VIOLATIONS:]
        violations.append(
            Violation(
                "$", f"more violations were found; only the first {MAX_VIOLATIONS} are listed"
            )
        )
    return violations


def _violation(error: ValidationError, compiled: CompiledSchema) -> Violation:
    site = _condition_site(error, compiled)
    location = list(error.absolute_path)
    if site is None:
        return Violation(_json_path(location), _problem(error))
    # Both forms of a broken rule (a missing required property, a forbidden property that is
    # present) are reported at the dependent parameter itself.
    if not location or location[-1] != site.parameter:
        location.append(site.parameter)
    return Violation(_json_path(location), _condition_problem(site))


def _condition_site(error: ValidationError, compiled: CompiledSchema) -> ConditionSite | None:
    path = list(error.absolute_schema_path)
    for index in range(len(path) - 2, -1, -1):
        clause = path[index + 1]
        if path[index] != "allOf" or not isinstance(clause, int):
            continue
        sites = compiled.conditions.get(tuple(path[:index]))
        if sites is not None and clause < len(sites):
            return sites[clause]
    return None


def _condition_problem(site: ConditionSite) -> str:
    """Return the sentence that explains a broken dependency rule."""
    return condition_sentence(site.parameter, site.condition)


def condition_sentence(parameter: str, condition: Condition) -> str:
    """Return the rule as a sentence: "'unit' is required when 'mode' equals 'metric'"."""
    clause = f"'{condition.parameter}' {_operator_phrase(condition.operator, condition.value)}"
    if condition.effect is Effect.REQUIRED:
        return f"'{parameter}' is required when {clause}"
    if condition.effect is Effect.HIDDEN:
        return f"'{parameter}' must not be given when {clause}"
    return f"'{parameter}' may be given only when {clause}"


def _operator_phrase(operator: Operator, value: object) -> str:
    shown = _show(value)
    phrases = {
        Operator.EQUALS: f"equals {shown}",
        Operator.NOT_EQUALS: f"does not equal {shown}",
        Operator.CONTAINS: f"contains {shown}",
        Operator.GREATER_THAN: f"is greater than {shown}",
        Operator.LESS_THAN: f"is less than {shown}",
    }
    return phrases[operator]


def _show(value: object) -> str:
    """Render a value taken from the spec (never from the arguments) for a message."""
    text = f"'{value}'" if isinstance(value, str) else json.dumps(value)
    if len(text) > VALUE_SHOWN_LENGTH:
        return text[: VALUE_SHOWN_LENGTH - 1] + "…"
    return text


def _json_path(location: Iterable[str | int]) -> str:
    path = "$"
    for key in location:
        path = child_path(path, key)
    return path


def _problem(error: ValidationError) -> str:
    keyword = str(error.validator)
    value: Any = error.validator_value
    if keyword == "type":
        return f"must be {_article(str(value))}, got {_json_type(error.instance)}"
    if keyword == "enum":
        return f"must be one of {_show_enum(value)}"
    if keyword in _TEMPLATES:
        return _TEMPLATES[keyword].format(value)
    if keyword in ("required", "additionalProperties", "pattern"):
        return str(error.message)  # written by the keyword functions above, without the value
    return f"fails the {keyword!r} rule"  # no compiled spec uses another keyword


def _article(type_name: str) -> str:
    return _ARTICLES.get(type_name, f"a {type_name}")


_JSON_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "a boolean"),  # before int, because bool is a subclass of int
    (int, "an integer"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


def _json_type(instance: object) -> str:
    if isinstance(instance, float):
        return "a number" if math.isfinite(instance) else "a non-finite number"
    for kind, name in _JSON_TYPE_NAMES:
        if isinstance(instance, kind):
            return name
    return "a value that is not JSON"


def _show_enum(values: list[Any]) -> str:
    shown = ", ".join(_show(value) for value in values[:ENUM_VALUES_SHOWN])
    if len(values) > ENUM_VALUES_SHOWN:
        shown += f", … ({len(values)} values in all)"
    return shown


# --- checking a spec ---------------------------------------------------------------------------


def check_spec(spec: ToolSpec) -> None:
    """Raise InvalidInput listing every problem that makes the spec unsafe, invalid or
    unsatisfiable: a schema that does not compile, a pattern RE2 cannot run, an unknown format,
    a constraint that does not apply to its type, or a default or condition value that its own
    schema rejects."""
    violations: list[Violation] = []
    try:
        compile_spec(spec)
    except InvalidInput as error:
        violations.extend(error.details)
    violations.extend(_check_parameters(spec.parameters, "parameters"))
    if violations:
        raise InvalidInput("the tool spec is invalid", details=violations)


def _check_parameters(parameters: list[Parameter], where: str) -> list[Violation]:
    found: list[Violation] = []
    for parameter in parameters:
        found.extend(_check_schema(parameter, child_path(where, parameter.name)))
    found.extend(_check_conditions(parameters, where))
    return found


def _check_schema(schema: Schema, where: str) -> list[Violation]:
    found = _check_constraints(schema, where)
    found.extend(_check_enum(schema, where))
    found.extend(_check_default(schema, where))
    if schema.items is not None:
        found.extend(_check_schema(schema.items, f"{where}[*]"))
    if schema.properties is not None:
        found.extend(_check_parameters(schema.properties, where))
    return found


def _check_constraints(schema: Schema, where: str) -> list[Violation]:
    found: list[Violation] = []
    for attribute, types in _APPLIES_TO.items():
        if getattr(schema, attribute) is not None and schema.type not in types:
            allowed = " or ".join(sorted(kind.value for kind in types))
            found.append(Violation(f"{where}.{attribute}", f"applies only to {allowed} parameters"))
    if schema.pattern is not None:
        reason = pattern_error(schema.pattern)
        if reason is not None:
            found.append(Violation(f"{where}.pattern", _pattern_problem(reason)))
    if schema.format is not None and schema.format not in KNOWN_FORMATS:
        known = ", ".join(sorted(KNOWN_FORMATS))
        found.append(
            Violation(
                f"{where}.format", f"unknown format {schema.format!r}; known formats: {known}"
            )
        )
    return found


def _pattern_problem(reason: str) -> str:
    return (
        f"RE2 cannot compile this pattern ({reason}); backreferences and lookaround are not "
        "supported, because they need backtracking"
    )


def _check_enum(schema: Schema, where: str) -> list[Violation]:
    if schema.enum is None or schema.type is ParameterType.ENUM:
        return []
    bare = schema.model_copy(update={"enum": None, "has_default": False, "default": None})
    rule = _schema_validator(bare)
    if rule is None:
        return []
    return [
        Violation(f"{where}.enum[{index}]", f"{_show(value)} is not a valid {schema.type.value}")
        for index, value in enumerate(schema.enum)
        if not rule.is_valid(value)
    ]


def _check_default(schema: Schema, where: str) -> list[Violation]:
    problem = default_problem(schema)
    if problem is None:
        return []
    return [Violation(f"{where}.default", f"does not match the parameter's own schema: {problem}")]


def default_problem(schema: Schema) -> str | None:
    """Return why the schema rejects its own default, or None when it accepts it.

    A null default means "no value unless one is given", so it is valid for every type.
    """
    if not schema.has_default or schema.default is None:
        return None
    if not is_finite_json(schema.default):
        return "it contains NaN or infinity"
    rule = _schema_validator(schema)
    error = None if rule is None else next(iter(rule.iter_errors(schema.default)), None)
    if error is None:
        return None
    location = list(error.absolute_path)
    problem = _problem(error)
    return f"{_json_path(location)} {problem}" if location else f"it {problem}"


def _schema_validator(schema: Schema) -> Any | None:
    try:
        return _validator(value_schema(schema))
    except InvalidInput:
        return None  # the spec-wide compile step already reports why


def _check_conditions(parameters: list[Parameter], where: str) -> list[Violation]:
    by_name = {parameter.name: parameter for parameter in parameters}
    found: list[Violation] = []
    for parameter in parameters:
        for index, condition in enumerate(parameter.conditions):
            location = f"{child_path(where, parameter.name)}.conditions[{index}]"
            problem = _condition_defect(parameter, condition, by_name)
            if problem is not None:
                found.append(Violation(location, problem))
    return found


def _condition_defect(
    parameter: Parameter, condition: Condition, by_name: dict[str, Parameter]
) -> str | None:
    if parameter.required:
        return f"'{parameter.name}' is always required, so a condition cannot apply to it"
    if not is_finite_json(condition.value):
        return "the value must not contain NaN or infinity"
    trigger = by_name.get(condition.parameter)
    if trigger is None:
        return None  # the spec model rejects conditions on unknown parameters
    target: Schema | None
    if condition.operator in (Operator.EQUALS, Operator.NOT_EQUALS):
        target, verb = trigger, "be"
    elif condition.operator is Operator.CONTAINS and trigger.type is ParameterType.ARRAY:
        target, verb = trigger.items, "contain"
    else:
        return None
    rule = _schema_validator(target) if target is not None else None
    if rule is None or rule.is_valid(condition.value):
        return None
    outcome = "always" if condition.operator is Operator.NOT_EQUALS else "never"
    return (
        f"'{condition.parameter}' can never {verb} {_show(condition.value)}, so the condition "
        f"{outcome} holds"
    )


def is_finite_json(value: object) -> bool:
    """Return whether a JSON value contains no NaN or infinity, at any depth, without recursion."""
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, float) and not math.isfinite(current):
            return False
        if isinstance(current, list):
            pending.extend(current)
        elif isinstance(current, dict):
            pending.extend(current.values())
    return True
