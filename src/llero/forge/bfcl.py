"""Ground-truth calls of the Berkeley Function Calling Leaderboard, checked against imported specs.

An answer file holds one JSON line per case: ``{"id": ..., "ground_truth": [{name: {argument:
[acceptable values]}}]}``. The first acceptable value is the one checked; an empty string there
means the argument may be left out, and an empty list names no acceptable value, so the argument
is left out as well. Inside an argument that the spec declares as an object (or an array of
objects), BFCL lists acceptable values for every property too, so the same rule applies there.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llero.errors import InvalidInput, Violation
from llero.forge.formats import ImportedSpec, RefusedSpec, import_specs, parse_documents
from llero.forge.spec import ParameterType, Schema
from llero.forge.validation import validate_arguments


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    tool: str
    violations: list[Violation]


@dataclass
class AnswerCheck:
    """The outcome of checking every ground-truth call of an answer file."""

    passed: list[CaseResult] = field(default_factory=list)
    failed: list[CaseResult] = field(default_factory=list)
    refused: list[RefusedSpec] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # answer ids with no case in the spec file

    @property
    def total(self) -> int:
        return len(self.passed) + len(self.failed) + len(self.refused) + len(self.missing)


def first_acceptable_arguments(
    answer: Mapping[str, Any], parameters: Mapping[str, Schema]
) -> dict[str, Any]:
    """Return the call that takes the first acceptable value of every argument."""
    arguments = {}
    for name, acceptable in answer.items():
        if not isinstance(acceptable, list):
            arguments[name] = acceptable
            continue
        if not acceptable or acceptable[0] == "":
            continue
        schema = parameters.get(name)
        arguments[name] = acceptable[0] if schema is None else _nested(acceptable[0], schema)
    return arguments


def _nested(value: object, schema: Schema) -> object:
    if schema.type is ParameterType.OBJECT and schema.properties and isinstance(value, dict):
        return first_acceptable_arguments(
            value, {parameter.name: parameter for parameter in schema.properties}
        )
    if schema.type is ParameterType.ARRAY and schema.items is not None and isinstance(value, list):
        return [_nested(item, schema.items) for item in value]
    return value


def import_cases(spec_data: bytes) -> dict[str, ImportedSpec | RefusedSpec]:
    """Import every case of a BFCL spec file in memory, keyed by case id."""
    documents = parse_documents(spec_data)
    report = import_specs(documents, "bfcl")
    return {entry.source.removeprefix("case "): entry for entry in report.entries}


def parse_answers(answer_data: bytes) -> list[dict[str, Any]]:
    answers = []
    for number, line in enumerate(answer_data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
            raise InvalidInput(f"answer line {number} is not valid JSON") from None
        if not isinstance(answer, dict) or "id" not in answer or "ground_truth" not in answer:
            raise InvalidInput(f"answer line {number} has no id and ground_truth")
        answers.append(answer)
    return answers


def check_answers(spec_data: bytes, answer_data: bytes) -> AnswerCheck:
    """Validate each case's first ground-truth call against the spec imported from that case."""
    cases = import_cases(spec_data)
    check = AnswerCheck()
    for answer in parse_answers(answer_data):
        entry = cases.get(str(answer["id"]))
        if entry is None:
            check.missing.append(str(answer["id"]))
        elif isinstance(entry, RefusedSpec):
            check.refused.append(entry)
        else:
            _check_case(check, str(answer["id"]), entry, answer["ground_truth"])
    return check


def _check_case(check: AnswerCheck, case_id: str, entry: ImportedSpec, calls: Any) -> None:
    if not isinstance(calls, list) or len(calls) != 1 or not isinstance(calls[0], dict):
        raise InvalidInput(f"case {case_id}: ground_truth must hold exactly one call")
    [(name, answer)] = calls[0].items()
    if name != (entry.original_name or entry.spec.name):
        problem = f"the ground truth calls {name!r}, but the case defines {entry.spec.name!r}"
        check.failed.append(CaseResult(case_id, name, [Violation("$", problem)]))
        return
    parameters = {parameter.name: parameter for parameter in entry.spec.parameters}
    violations = validate_arguments(entry.spec, first_acceptable_arguments(answer, parameters))
    result = CaseResult(case_id, entry.spec.name, violations)
    (check.failed if violations else check.passed).append(result)
