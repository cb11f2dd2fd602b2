"""Export tools to provider formats, and import tool specs from them.

Export writes the shapes that the providers document: OpenAI Chat Completions function tools,
Anthropic Messages API client tools, and MCP ``tools/list`` entries. Import reads those three and
BFCL corpus lines. It reports every change it makes to a spec as a ``Mapping``, and every spec it
cannot import as a ``RefusedSpec`` with the reason, so the caller decides what to store.
"""

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from llero.errors import InvalidInput, Violation
from llero.forge.compiler import child_path, provider_schema
from llero.forge.models import DESCRIPTION_MAX, NAME_MAX
from llero.forge.schema_import import Mapping, Refusal, SchemaImporter
from llero.forge.spec import TOOL_NAME_PATTERN, Schema, ToolSpec
from llero.forge.validation import check_spec, condition_sentence, default_problem

EXPORT_FORMATS = ("openai", "anthropic", "mcp")
PROVIDER_FORMATS = ("openai", "anthropic")
IMPORT_FORMATS = ("openai", "anthropic", "mcp", "bfcl")

# JSON nesting allowed in one imported document. A spec nested as deep as Llero stores needs about
# 20 levels in a provider document (two per parameter level, plus the envelope), which leaves the
# rest for nested default values.
MAX_DOCUMENT_DEPTH = 64

_TOOL_NAME = re.compile(TOOL_NAME_PATTERN)
# Separators that tool names use for namespaces (``math.factorial``, ``files/read``); they become
# "_". Any other character outside the provider pattern makes the name unsafe to rewrite.
_RENAMED_CHARACTERS = re.compile(r"[.:/ ]")

# Keys each provider documents beside name, description and schema, with what they are for.
_PROVIDER_KEYS = {
    "openai": {"strict": "strict mode is a provider option; Llero checks every call itself"},
    "anthropic": {
        "type": "the tool type is a provider option",
        "strict": "strict mode is a provider option; Llero checks every call itself",
        "cache_control": "prompt caching is a provider option",
        "defer_loading": "deferred loading is a provider option",
        "allowed_callers": "allowed callers are a provider option",
        "input_examples": "input examples are not stored",
    },
    "mcp": {
        "title": "the display title is not stored",
        "outputSchema": "the output schema is not stored",
        "annotations": "behaviour hints are not stored",
        "icons": "icons are not stored",
        "_meta": "protocol metadata is not stored",
    },
    "bfcl": {},
}


# --- export ------------------------------------------------------------------------------------


def export_tool(spec: ToolSpec, fmt: str) -> dict[str, Any]:
    """Return the tool in a provider's format: ``openai``, ``anthropic`` or ``mcp``.

    Conditions between top-level parameters compile to a top-level ``allOf``, which Anthropic's
    Messages API rejects (and OpenAI's function schemas reportedly too). For those two formats the
    rules become sentences in the parameters' descriptions, which the model reads; Llero still
    enforces them on every call. The MCP descriptor keeps the exact schema.
    """
    schema = provider_schema(spec)
    if fmt in PROVIDER_FORMATS and "allOf" in schema:
        schema = _conditions_as_sentences(schema, spec)
    if fmt == "openai":
        function = {"name": spec.name, "description": spec.description, "parameters": schema}
        return {"type": "function", "function": function}
    if fmt == "anthropic":
        return {"name": spec.name, "description": spec.description, "input_schema": schema}
    if fmt == "mcp":
        return {"name": spec.name, "description": spec.description, "inputSchema": schema}
    raise _unknown_format(fmt, EXPORT_FORMATS)


def _conditions_as_sentences(schema: dict[str, Any], spec: ToolSpec) -> dict[str, Any]:
    """Return ``schema`` without its top-level allOf, each condition told in a description."""
    stated = {key: value for key, value in schema.items() if key != "allOf"}
    properties = {name: dict(value) for name, value in schema["properties"].items()}
    for parameter in spec.parameters:
        if not parameter.conditions:
            continue
        rules = [condition_sentence(parameter.name, item) + "." for item in parameter.conditions]
        text = " ".join([parameter.description, *rules]).strip()
        properties[parameter.name]["description"] = text
    stated["properties"] = properties
    return stated


def _unknown_format(fmt: str, known: tuple[str, ...]) -> InvalidInput:
    return InvalidInput(
        f"unknown format {fmt[:32]!r}",
        details=[Violation("format", f"must be one of: {', '.join(known)}")],
    )


# --- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseFailure:
    """A line (or the whole file, reported at the line of the error) that is not valid JSON."""

    line: int
    reason: str


class _JsonProblem(ValueError):
    pass


def parse_documents(data: bytes) -> list[object | ParseFailure]:
    """Split a file into documents: a JSON array's elements, one JSON object, or JSON lines.

    Python's ``json`` is made strict here: NaN, Infinity and duplicate keys are errors, because
    JSON has no such values and a duplicate key would silently drop one of its values.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return [ParseFailure(line, "the file is not valid UTF-8")]
    if not text.strip():
        return []
    try:
        whole = _loads(text)
    except _JsonProblem as problem:
        if _looks_like_json_lines(text):
            return _parse_lines(text)
        return [ParseFailure(_problem_line(problem), str(problem))]
    return list(whole) if isinstance(whole, list) else [whole]


def _looks_like_json_lines(text: str) -> bool:
    first = next(line for line in text.splitlines() if line.strip())
    try:
        _loads(first)
    except _JsonProblem:
        return False
    return True


def _parse_lines(text: str) -> list[object | ParseFailure]:
    documents: list[object | ParseFailure] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            documents.append(_loads(line))
        except _JsonProblem as problem:
            documents.append(ParseFailure(number, str(problem)))
    return documents


def _problem_line(problem: _JsonProblem) -> int:
    cause = problem.__cause__
    return cause.lineno if isinstance(cause, json.JSONDecodeError) else 1


def _loads(text: str) -> object:
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as error:
        raise _JsonProblem(f"invalid JSON: {error.msg} (column {error.colno})") from error
    except RecursionError as error:
        raise _JsonProblem("invalid JSON: nested too deeply") from error
    except _JsonProblem:
        raise
    except ValueError as error:  # integers longer than Python's digit limit
        raise _JsonProblem("invalid JSON: a number is too long") from error


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonProblem(f"invalid JSON: the key {key[:64]!r} appears twice in one object")
        result[key] = value
    return result


def _reject_constant(name: str) -> object:
    raise _JsonProblem(f"invalid JSON: {name} is not a JSON value")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _JsonProblem("invalid JSON: a number is too large")
    return number


# --- the import report -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedSpec:
    """A spec that can be stored, with every change import made to it."""

    spec: ToolSpec
    original_name: str | None  # the name in the document when import renamed the tool
    source: str  # where in the input it came from: "document 3", "case simple_python_0"
    mappings: list[Mapping]


@dataclass(frozen=True)
class RefusedSpec:
    """A spec that was not imported, with a stable ``code`` and a ``reason`` for people."""

    source: str
    name: str | None
    code: str
    reason: str


@dataclass
class ImportReport:
    """One entry per spec, imported or refused, in input order."""

    entries: list[ImportedSpec | RefusedSpec] = field(default_factory=list)

    @property
    def imported(self) -> list[ImportedSpec]:
        return [entry for entry in self.entries if isinstance(entry, ImportedSpec)]

    @property
    def refused(self) -> list[RefusedSpec]:
        return [entry for entry in self.entries if isinstance(entry, RefusedSpec)]


@dataclass
class _Candidate:
    """One tool found in a document, before its schema is translated."""

    source: str
    name: object
    description: object
    schema: object
    mappings: list[Mapping]


# --- import ------------------------------------------------------------------------------------


def import_specs(documents: list[object], fmt: str | None) -> ImportReport:
    """Import every tool in ``documents``; ``fmt`` None detects each document's format."""
    if fmt is not None and fmt not in IMPORT_FORMATS:
        raise _unknown_format(fmt, IMPORT_FORMATS)
    report = ImportReport()
    for position, document in enumerate(documents, start=1):
        source = f"document {position}"
        try:
            candidates = _candidates(document, fmt, source)
        except Refusal as refusal:
            report.entries.append(
                RefusedSpec(source, _name_of(document), refusal.code, refusal.reason)
            )
            continue
        report.entries.extend(_import_candidate(candidate) for candidate in candidates)
    return report


def _name_of(document: object) -> str | None:
    if isinstance(document, dict):
        name = document.get("name")
        if not isinstance(name, str) and isinstance(document.get("function"), dict):
            name = document["function"].get("name")
        if isinstance(name, str):
            return name[:256]
    return None


def _candidates(document: object, fmt: str | None, source: str) -> list[_Candidate]:
    if isinstance(document, ParseFailure):
        raise Refusal("invalid_json", f"line {document.line}: {document.reason}")
    if not isinstance(document, dict):
        raise Refusal("not_an_object", f"{source} is not a JSON object")
    _check_depth(document)
    detected = fmt or _detect_format(document)
    readers: dict[str, Callable[[dict[str, Any], str], list[_Candidate]]] = {
        "openai": _read_openai,
        "anthropic": _read_anthropic,
        "mcp": _read_mcp,
        "bfcl": _read_bfcl,
    }
    return readers[detected](document, source)


def _check_depth(document: object) -> None:
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DOCUMENT_DEPTH:
            raise Refusal("too_deep", f"the document nests deeper than {MAX_DOCUMENT_DEPTH} levels")
        if isinstance(value, dict):
            pending.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            pending.extend((child, depth + 1) for child in value)


def _detect_format(document: dict[str, Any]) -> str:
    if isinstance(document.get("function"), list) and "id" in document:
        return "bfcl"
    if document.get("type") == "function":
        return "openai"
    if "input_schema" in document:
        return "anthropic"
    if "inputSchema" in document:
        return "mcp"
    raise Refusal(
        "unknown_format",
        "the document is not a tool in a known format: an OpenAI tool has type 'function', an "
        "Anthropic tool has input_schema, an MCP tool has inputSchema, and a BFCL case has an id "
        "and a function list",
    )


def _read_openai(document: dict[str, Any], source: str) -> list[_Candidate]:
    if document.get("type") != "function":
        raise Refusal("wrong_format", f"{source} is not an OpenAI function tool (type 'function')")
    mappings: list[Mapping] = []
    body = document
    if "function" in document:
        body = document["function"]
        if not isinstance(body, dict):
            raise Refusal("wrong_format", f"{source}: 'function' is not a JSON object")
        _drop_keys(document, {"type", "function"}, "openai", mappings)
        _drop_keys(body, {"name", "description", "parameters"}, "openai", mappings)
    else:  # the Responses API writes the function's fields beside "type"
        _drop_keys(body, {"type", "name", "description", "parameters"}, "openai", mappings)
    return [_candidate(body, "parameters", source, mappings)]


def _read_anthropic(document: dict[str, Any], source: str) -> list[_Candidate]:
    if "input_schema" not in document:
        raise Refusal("wrong_format", f"{source} is not an Anthropic tool (no input_schema)")
    mappings: list[Mapping] = []
    _drop_keys(document, {"name", "description", "input_schema"}, "anthropic", mappings)
    return [_candidate(document, "input_schema", source, mappings)]


def _read_mcp(document: dict[str, Any], source: str) -> list[_Candidate]:
    if "inputSchema" not in document:
        raise Refusal("wrong_format", f"{source} is not an MCP tool (no inputSchema)")
    mappings: list[Mapping] = []
    _drop_keys(document, {"name", "description", "inputSchema"}, "mcp", mappings)
    return [_candidate(document, "inputSchema", source, mappings)]


def _read_bfcl(document: dict[str, Any], source: str) -> list[_Candidate]:
    functions = document.get("function")
    case = document.get("id")
    if not isinstance(functions, list) or not isinstance(case, str):
        raise Refusal("wrong_format", f"{source} is not a BFCL case (id and a function list)")
    case_source = f"case {case[:128]}"
    candidates = []
    for index, function in enumerate(functions, start=1):
        where = case_source if len(functions) == 1 else f"{case_source}, function {index}"
        if not isinstance(function, dict):
            raise Refusal("not_an_object", f"{where} is not a JSON object")
        mappings: list[Mapping] = []
        _drop_keys(function, {"name", "description", "parameters"}, "bfcl", mappings)
        candidates.append(_candidate(function, "parameters", where, mappings))
    return candidates


def _candidate(
    body: dict[str, Any], schema_key: str, source: str, mappings: list[Mapping]
) -> _Candidate:
    return _Candidate(
        source, body.get("name"), body.get("description", ""), body.get(schema_key), mappings
    )


def _drop_keys(body: dict[str, Any], expected: set[str], fmt: str, mappings: list[Mapping]) -> None:
    for key in body:
        if key in expected:
            continue
        reason = _PROVIDER_KEYS[fmt].get(key)
        if reason is not None:
            message = f"the key {key!r} was removed: {reason}"
            mappings.append(Mapping("provider_key_dropped", message, "tool"))
        else:
            message = f"the key {key[:64]!r} is not part of a {fmt} tool and was removed"
            mappings.append(Mapping("unknown_key_dropped", message, "tool"))


def _import_candidate(candidate: _Candidate) -> ImportedSpec | RefusedSpec:
    name = candidate.name
    original = name[:256] if isinstance(name, str) and name else None
    try:
        return _build(candidate)
    except Refusal as refusal:
        return RefusedSpec(candidate.source, original, refusal.code, refusal.reason)


def _build(candidate: _Candidate) -> ImportedSpec:
    mappings = list(candidate.mappings)
    name, original = _safe_name(candidate.name, mappings)
    description = _description(candidate.description)
    importer = SchemaImporter(candidate.schema)
    parameters = importer.parameters()
    mappings.extend(importer.mappings)
    try:
        spec = ToolSpec.model_validate(
            {"name": name, "description": description, "parameters": parameters}
        )
    except ValidationError as error:
        raise Refusal("invalid_spec", _validation_reason(error)) from error
    _drop_invalid_defaults(spec.parameters, "$", mappings)
    try:
        check_spec(spec)
    except InvalidInput as error:
        problems = "; ".join(f"{item.field}: {item.problem}" for item in error.details[:5])
        raise Refusal("invalid_spec", problems) from error
    return ImportedSpec(spec, original, candidate.source, mappings)


def _safe_name(name: object, mappings: list[Mapping]) -> tuple[str, str | None]:
    if not isinstance(name, str) or not name:
        raise Refusal("invalid_name", "the tool has no name")
    if _TOOL_NAME.fullmatch(name):
        return name, None
    renamed = _RENAMED_CHARACTERS.sub("_", name)
    if not _TOOL_NAME.fullmatch(renamed):
        reason = (
            f"the name is longer than {NAME_MAX} characters"
            if len(renamed) > NAME_MAX
            else "the name contains characters other than letters, digits, '_', '-' and the "
            "separators '.', ':', '/' and space, so it cannot be made safe"
        )
        raise Refusal("unsafe_name", reason)
    mappings.append(
        Mapping(
            "name_renamed",
            f"the name {name!r} became {renamed!r} to fit the providers' name pattern "
            f"{TOOL_NAME_PATTERN}",
            "name",
        )
    )
    return renamed, name


def _description(description: object) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise Refusal("invalid_schema", "the tool's description is not a string")
    if len(description) > DESCRIPTION_MAX:
        raise Refusal(
            "bound_exceeded", f"the tool's description is longer than {DESCRIPTION_MAX} characters"
        )
    return description


def _validation_reason(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        location = ".".join(str(part) for part in item["loc"])
        problems.append(f"{location}: {item['msg']}" if location else str(item["msg"]))
    return "; ".join(problems)


def _drop_invalid_defaults(parameters: list[Any], where: str, mappings: list[Mapping]) -> None:
    for parameter in parameters:
        _drop_invalid_default(parameter, child_path(where, parameter.name), mappings)


def _drop_invalid_default(schema: Schema, where: str, mappings: list[Mapping]) -> None:
    if schema.items is not None:
        _drop_invalid_default(schema.items, f"{where}[*]", mappings)
    if schema.properties is not None:
        _drop_invalid_defaults(schema.properties, where, mappings)
    problem = default_problem(schema)
    if problem is None:
        return
    shown = json.dumps(schema.default)[:80]
    mappings.append(
        Mapping(
            "invalid_default_dropped",
            f"the default {shown} was removed because it does not match the parameter's own "
            f"schema: {problem}",
            where,
        )
    )
    schema.default = None
    schema.has_default = False
