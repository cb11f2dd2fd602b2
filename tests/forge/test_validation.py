"""Validating tool call arguments: every violation, located, explained, and never slow."""

import time
from typing import Any

import pytest

from llero.errors import InvalidInput, Violation
from llero.forge import validation
from llero.forge.validation import check_spec, validate_arguments
from tests.forge.helpers import condition, make_spec

PLANTED_SECRET = "sk-planted-7f3e9a1c"


def _weather_spec() -> Any:
    return make_spec(
        {"name": "city", "type": "string", "required": True, "min_length": 2},
        {"name": "mode", "type": "enum", "enum": ["metric", "imperial"]},
        {
            "name": "unit",
            "type": "string",
            "conditions": [condition("required", "mode", "equals", "metric")],
        },
        {"name": "days", "type": "integer", "minimum": 1, "maximum": 14},
        {"name": "coord1", "type": "array", "items": {"type": "number"}, "max_items": 2},
    )


def test_validate_arguments_valid_returns_no_violations() -> None:
    arguments = {"city": "Lima", "mode": "metric", "unit": "C", "days": 3, "coord1": [1.5, 2]}

    assert validate_arguments(_weather_spec(), arguments) == []


def test_validate_arguments_returns_every_violation() -> None:
    arguments = {"city": "L", "mode": "metric", "days": 0, "coord1": ["x", 2, 3], "extra": 1}

    violations = validate_arguments(_weather_spec(), arguments)

    assert set(violations) == {
        Violation("$.city", "must be at least 2 characters long"),
        Violation("$.days", "must be at least 1"),
        Violation("$.coord1", "must have at most 2 items"),
        Violation("$.coord1[0]", "must be a number, got a string"),
        Violation("$.extra", "is not a known parameter"),
        Violation("$.unit", "'unit' is required when 'mode' equals 'metric'"),
    }
    assert len(violations) == 6


def test_validate_arguments_missing_required_names_the_parameter() -> None:
    violations = validate_arguments(_weather_spec(), {})

    assert violations == [Violation("$.city", "'city' is required")]


@pytest.mark.parametrize("arguments", [[], "text", 3, None, True])
def test_validate_arguments_non_object_is_one_root_violation(arguments: object) -> None:
    violations = validate_arguments(_weather_spec(), arguments)

    assert len(violations) == 1
    assert violations[0].field == "$"
    assert violations[0].problem.startswith("must be an object, got ")


@pytest.mark.parametrize(
    ("effect", "arguments", "problem"),
    [
        ("required", {"mode": "metric"}, "'unit' is required when 'mode' equals 'metric'"),
        (
            "hidden",
            {"mode": "metric", "unit": "C"},
            "'unit' must not be given when 'mode' equals 'metric'",
        ),
        (
            "visible",
            {"mode": "imperial", "unit": "C"},
            "'unit' may be given only when 'mode' equals 'metric'",
        ),
        ("visible", {"unit": "C"}, "'unit' may be given only when 'mode' equals 'metric'"),
    ],
)
def test_dependency_violation_explains_the_rule(
    effect: str, arguments: dict[str, str], problem: str
) -> None:
    spec = make_spec(
        {"name": "mode", "type": "string"},
        {
            "name": "unit",
            "type": "string",
            "conditions": [condition(effect, "mode", "equals", "metric")],
        },
    )

    assert validate_arguments(spec, arguments) == [Violation("$.unit", problem)]


@pytest.mark.parametrize(
    ("trigger", "operator", "value", "given", "phrase"),
    [
        ({"type": "integer"}, "not_equals", 0, 1, "'count' does not equal 0"),
        ({"type": "string"}, "contains", "x", "axb", "'count' contains 'x'"),
        ({"type": "integer"}, "greater_than", 5, 6, "'count' is greater than 5"),
        ({"type": "number"}, "less_than", 0.5, 0.25, "'count' is less than 0.5"),
        ({"type": "boolean"}, "equals", True, True, "'count' equals true"),
    ],
)
def test_dependency_violation_names_operator(
    trigger: dict[str, Any], operator: str, value: object, given: object, phrase: str
) -> None:
    spec = make_spec(
        {"name": "count", **trigger},
        {
            "name": "note",
            "type": "string",
            "conditions": [condition("required", "count", operator, value)],
        },
    )

    violations = validate_arguments(spec, {"count": given})

    assert violations == [Violation("$.note", f"'note' is required when {phrase}")]


def test_dependency_violation_in_nested_object_is_located() -> None:
    spec = make_spec(
        {
            "name": "params",
            "type": "object",
            "properties": [
                {"name": "mode", "type": "string"},
                {
                    "name": "unit",
                    "type": "string",
                    "conditions": [condition("required", "mode", "equals", "a")],
                },
            ],
        },
        {
            "name": "list",
            "type": "array",
            "items": {
                "type": "object",
                "properties": [
                    {"name": "mode", "type": "string"},
                    {
                        "name": "unit",
                        "type": "string",
                        "conditions": [condition("hidden", "mode", "equals", "a")],
                    },
                ],
            },
        },
    )

    violations = validate_arguments(
        spec,
        {"params": {"mode": "a"}, "list": [{"mode": "b", "unit": "x"}, {"mode": "a", "unit": "x"}]},
    )

    assert violations == [
        Violation("$.params.unit", "'unit' is required when 'mode' equals 'a'"),
        Violation("$.list[1].unit", "'unit' must not be given when 'mode' equals 'a'"),
    ]


def test_violation_path_quotes_names_that_are_not_identifiers() -> None:
    spec = make_spec({"name": "a.b", "type": "integer"}, {"name": "$x", "type": "integer"})

    violations = validate_arguments(spec, {"a.b": "1", "$x": "2"})

    assert [violation.field for violation in violations] == ["$['a.b']", "$['$x']"]


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "string", "pattern": "^[0-9]+$"}, PLANTED_SECRET),
        ({"type": "string", "max_length": 3}, PLANTED_SECRET),
        ({"type": "string", "format": "uuid"}, PLANTED_SECRET),
        ({"type": "string", "format": "date-time"}, PLANTED_SECRET),
        ({"type": "enum", "enum": ["a", "b"]}, PLANTED_SECRET),
        ({"type": "string", "enum": ["a"]}, PLANTED_SECRET),
        ({"type": "integer"}, PLANTED_SECRET),
        ({"type": "array", "items": {"type": "integer"}}, [PLANTED_SECRET]),
        (
            {"type": "object", "properties": [{"name": "a", "type": "integer"}]},
            {"a": PLANTED_SECRET},
        ),
        ({"type": "object", "properties": []}, {PLANTED_SECRET[:20]: 1}),
    ],
)
def test_violation_never_echoes_argument_value(schema: dict[str, Any], value: object) -> None:
    spec = make_spec({"name": "token", **schema})

    violations = validate_arguments(spec, {"token": value})

    assert violations
    for violation in violations:
        assert PLANTED_SECRET not in violation.problem
        assert PLANTED_SECRET not in violation.field or isinstance(value, dict)


def test_unknown_key_is_named_only_in_its_location() -> None:
    violations = validate_arguments(make_spec(), {"sk-key": 1})

    assert violations == [Violation("$['sk-key']", "is not a known parameter")]


def test_catastrophic_pattern_validates_in_linear_time() -> None:
    spec = make_spec({"name": "word", "type": "string", "pattern": "^(a+)+$"})
    hostile = "a" * 100_000 + "!"

    started = time.perf_counter()
    violations = validate_arguments(spec, {"word": hostile})
    elapsed = time.perf_counter() - started

    assert violations == [Violation("$.word", "does not match the pattern '^(a+)+$'")]
    # Python's re would need longer than the age of the universe; RE2 takes about a millisecond.
    assert elapsed < 0.5


def test_pattern_matches_anywhere_like_json_schema() -> None:
    spec = make_spec({"name": "code", "type": "string", "pattern": "[0-9]{3}"})

    assert validate_arguments(spec, {"code": "ab123cd"}) == []
    assert len(validate_arguments(spec, {"code": "ab12cd"})) == 1


def test_pattern_that_re2_rejects_fails_closed() -> None:
    # check_spec refuses such a spec; one that bypasses it still never matches.
    spec = make_spec({"name": "word", "type": "string", "pattern": "(a)\\1"})

    violations = validate_arguments(spec, {"word": "aa"})

    assert [violation.field for violation in violations] == ["$.word"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_number_is_rejected(value: float) -> None:
    spec = make_spec({"name": "ratio", "type": "number", "minimum": 0})

    violations = validate_arguments(spec, {"ratio": value})

    assert violations == [Violation("$.ratio", "must be a number, got a non-finite number")]


@pytest.mark.parametrize(("value", "valid"), [(True, False), (2.5, False), (5.0, True), (7, True)])
def test_integer_follows_json_schema(value: object, valid: bool) -> None:
    spec = make_spec({"name": "count", "type": "integer"})

    assert (validate_arguments(spec, {"count": value}) == []) is valid


@pytest.mark.parametrize(
    ("fmt", "valid", "invalid"),
    [
        ("date-time", "2024-02-29T23:59:60.5+05:30", "2023-02-29T10:00:00Z"),
        ("date-time", "2024-01-01t00:00:00z", "2024-01-01 00:00:00Z"),
        ("date-time", "2024-01-01T00:00:00Z", "2024-01-01T24:00:00Z"),
        ("time", "10:20:30-01:00", "10:20:30"),
        ("date", "2024-12-31", "2024-13-01"),
        ("uuid", "12345678-1234-5678-1234-567812345678", "1234"),
        ("ipv4", "192.0.2.1", "192.0.2.300"),
        ("ipv6", "2001:db8::1", "2001:db8:::1"),
        ("email", "a@example.com", "example.com"),
        ("regex", "^[a-z]+$", "(a)\\1"),
    ],
)
def test_format_is_asserted(fmt: str, valid: str, invalid: str) -> None:
    spec = make_spec({"name": "value", "type": "string", "format": fmt})

    assert validate_arguments(spec, {"value": valid}) == []
    assert validate_arguments(spec, {"value": invalid}) == [
        Violation("$.value", f"must be a valid {fmt}")
    ]


def test_enum_violation_lists_at_most_ten_values() -> None:
    spec = make_spec({"name": "letter", "type": "enum", "enum": [f"v{n}" for n in range(25)]})

    [violation] = validate_arguments(spec, {"letter": "zz"})

    assert violation.problem.startswith("must be one of 'v0', 'v1'")
    assert violation.problem.endswith("… (25 values in all)")
    assert "'v10'" not in violation.problem


def test_validator_is_cached_per_spec() -> None:
    spec = _weather_spec()
    validate_arguments(spec, {"city": "Lima"})
    before = validation._validator_for.cache_info()

    validate_arguments(spec, {"city": "Oslo"})
    changed = spec.model_copy(update={"description": "changed"})
    validate_arguments(changed, {"city": "Oslo"})
    after = validation._validator_for.cache_info()

    assert after.hits == before.hits + 1
    assert after.misses == before.misses + 1


# --- check_spec --------------------------------------------------------------------------------


def _problems(spec: Any) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        check_spec(spec)
    assert caught.value.code == "invalid_request"
    return {violation.field: violation.problem for violation in caught.value.details}


def test_check_spec_accepts_valid_spec() -> None:
    check_spec(_weather_spec())


@pytest.mark.parametrize("pattern", ["(a)\\1", "(?=a)b", "(?<=a)b", "a(?!b)", "\\Z"])
def test_check_spec_rejects_pattern_re2_cannot_compile(pattern: str) -> None:
    spec = make_spec({"name": "word", "type": "string", "pattern": pattern})

    problems = _problems(spec)

    assert problems["parameters.word.pattern"].startswith("RE2 cannot compile this pattern (")


@pytest.mark.parametrize(
    ("parameter", "field", "problem"),
    [
        (
            {"type": "string", "format": "colour"},
            "parameters.p.format",
            "unknown format 'colour'; known formats: date, date-time, email, idn-email, "
            "idn-hostname, ipv4, ipv6, regex, time, uuid",
        ),
        (
            {"type": "integer", "default": "ten"},
            "parameters.p.default",
            "does not match the parameter's own schema: it must be an integer, got a string",
        ),
        (
            {"type": "integer", "minimum": 1, "default": 0},
            "parameters.p.default",
            "does not match the parameter's own schema: it must be at least 1",
        ),
        (
            {"type": "array", "items": {"type": "string"}, "default": ["a", 2]},
            "parameters.p.default",
            "does not match the parameter's own schema: $[1] must be a string, got an integer",
        ),
        (
            {"type": "enum", "enum": ["a", "b"], "default": "c"},
            "parameters.p.default",
            "does not match the parameter's own schema: it must be one of 'a', 'b'",
        ),
        (
            {"type": "number", "default": float("inf")},
            "parameters.p.default",
            "does not match the parameter's own schema: it contains NaN or infinity",
        ),
        (
            {"type": "integer", "min_length": 2},
            "parameters.p.min_length",
            "applies only to string parameters",
        ),
        (
            {"type": "string", "minimum": 2},
            "parameters.p.minimum",
            "applies only to integer or number parameters",
        ),
        (
            {"type": "enum", "enum": [1], "pattern": "x"},
            "parameters.p.pattern",
            "applies only to string parameters",
        ),
        (
            {"type": "string", "max_items": 2},
            "parameters.p.max_items",
            "applies only to array parameters",
        ),
        (
            {"type": "integer", "enum": [1, "two"]},
            "parameters.p.enum[1]",
            "'two' is not a valid integer",
        ),
        (
            {"type": "string", "enum": ["ab", "c"], "min_length": 2},
            "parameters.p.enum[1]",
            "'c' is not a valid string",
        ),
        (
            {"type": "object", "properties": [{"name": "q", "type": "string", "format": "x"}]},
            "parameters.p.q.format",
            "unknown format 'x'; known formats: date, date-time, email, "
            "idn-email, idn-hostname, ipv4, ipv6, regex, time, uuid",
        ),
        (
            {"type": "array", "items": {"type": "string", "pattern": "(?=x)"}},
            "parameters.p[*].pattern",
            None,
        ),
    ],
)
def test_check_spec_rejects_invalid_parameter(
    parameter: dict[str, Any], field: str, problem: str | None
) -> None:
    problems = _problems(make_spec({"name": "p", **parameter}))

    assert field in problems
    if problem is not None:
        assert problems[field] == problem


def test_check_spec_accepts_null_default_for_any_type() -> None:
    check_spec(make_spec({"name": "p", "type": "integer", "minimum": 3, "default": None}))


@pytest.mark.parametrize(
    ("trigger", "dependent", "problem"),
    [
        (
            {"type": "enum", "enum": ["a", "b"]},
            {"conditions": [condition("required", "mode", "equals", "c")]},
            "'mode' can never be 'c', so the condition never holds",
        ),
        (
            {"type": "integer"},
            {"conditions": [condition("hidden", "mode", "not_equals", "1")]},
            "'mode' can never be '1', so the condition always holds",
        ),
        (
            {"type": "array", "items": {"type": "integer"}},
            {"conditions": [condition("required", "mode", "contains", "x")]},
            "'mode' can never contain 'x', so the condition never holds",
        ),
        (
            {"type": "string"},
            {"required": True, "conditions": [condition("hidden", "mode", "equals", "a")]},
            "'unit' is always required, so a condition cannot apply to it",
        ),
        (
            {"type": "integer"},
            {"conditions": [condition("required", "mode", "contains", 1)]},
            "contains needs a string or array parameter to look in",
        ),
        (
            {"type": "string"},
            {"conditions": [condition("required", "mode", "greater_than", 1)]},
            "greater_than needs a number or integer parameter to compare",
        ),
    ],
)
def test_check_spec_rejects_condition_that_cannot_work(
    trigger: dict[str, Any], dependent: dict[str, Any], problem: str
) -> None:
    spec = make_spec({"name": "mode", **trigger}, {"name": "unit", "type": "string", **dependent})

    problems = _problems(spec)

    assert problems["parameters.unit.conditions[0]"] == problem


def test_check_spec_lists_every_problem() -> None:
    spec = make_spec(
        {"name": "a", "type": "string", "pattern": "(a)\\1", "format": "nope"},
        {"name": "b", "type": "integer", "default": "x"},
    )

    problems = _problems(spec)

    assert set(problems) == {"parameters.a.pattern", "parameters.a.format", "parameters.b.default"}


def test_validate_arguments_caps_violation_count() -> None:
    spec = make_spec({"name": "list", "type": "array", "items": {"type": "integer"}})

    violations = validate_arguments(spec, {"list": ["x"] * 5000})

    assert len(violations) == validation.MAX_VIOLATIONS + 1
    assert violations[0] == Violation("$.list[0]", "must be an integer, got a string")
    assert violations[-1] == Violation(
        "$", f"more violations were found; only the first {validation.MAX_VIOLATIONS} are listed"
    )
