"""Translate an imported JSON Schema (or BFCL's Python-flavoured variant) into Llero parameters.

Import never changes a spec silently: every translation is recorded as a ``Mapping`` with a
machine code and a sentence, and anything Llero cannot express faithfully raises ``Refusal``.
Annotations and unknown keys that JSON Schema validators ignore anyway are removed and reported.
Assertion keywords that Llero has no field for are refused, because dropping them would let
through tool calls that the original schema rejects.
"""

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from llero.forge.compiler import REGEX_SPECIAL, absent_schema, child_path
from llero.forge.models import DESCRIPTION_MAX
from llero.forge.spec import (
    MAX_ARRAY_ITEMS,
    MAX_ENUM_VALUES,
    MAX_NESTING,
    MAX_PARAMETERS,
    MAX_PATTERN_LENGTH,
    MAX_STRING_LENGTH,
    PARAMETER_NAME_PATTERN,
)
from llero.forge.validation import KNOWN_FORMATS, is_finite_json, pattern_error

# Inlining ``$ref`` can multiply a small document (each definition using the next one twice
# doubles the size), so the number of schemas one tool may expand to is bounded.
MAX_IMPORTED_SCHEMAS = 2048

PYTHON_TYPES = {
    "dict": "object",
    "float": "number",
    "tuple": "array",
    "int": "integer",
    "bool": "boolean",
    "str": "string",
    "list": "array",
}
JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array"})

ANNOTATIONS = frozenset(
    {
        "title",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
    }
)
UNSUPPORTED = frozenset(
    {
        "multipleOf",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "prefixItems",
        "additionalItems",
        "unevaluatedItems",
        "unevaluatedProperties",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "not",
        "if",
        "then",
        "else",
        "contentSchema",
        "$id",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "$vocabulary",
    }
)
HANDLED = frozenset(
    {
        "type",
        "description",
        "enum",
        "const",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "items",
        "properties",
        "required",
        "additionalProperties",
        "allOf",
        "anyOf",
        "oneOf",
        "nullable",
        "default",
        "optional",
    }
)
ROOT_ONLY = frozenset({"$schema", "$defs", "definitions"})
DIALECTS_2020_12 = frozenset(
    {
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2020-12/schema#",
    }
)

_APPLIES_TO = {
    "format": {"string"},
    "minimum": {"number", "integer"},
    "maximum": {"number", "integer"},
    "exclusiveMinimum": {"number", "integer"},
    "exclusiveMaximum": {"number", "integer"},
    "minLength": {"string"},
    "maxLength": {"string"},
    "pattern": {"string"},
    "minItems": {"array"},
    "maxItems": {"array"},
    "items": {"array"},
    "properties": {"object"},
    "required": {"object"},
    "additionalProperties": {"object"},
    "allOf": {"object"},
}
_PARAMETER_NAME = re.compile(PARAMETER_NAME_PATTERN)
ROOT_KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "allOf", "optional", "description"}
)
_COUNT_BOUNDS = {
    "minLength": ("min_length", MAX_STRING_LENGTH),
    "maxLength": ("max_length", MAX_STRING_LENGTH),
    "minItems": ("min_items", MAX_ARRAY_ITEMS),
    "maxItems": ("max_items", MAX_ARRAY_ITEMS),
}


@dataclass(frozen=True)
class Mapping:
    """One change that import made to a spec: a stable ``code`` and a sentence saying what."""

    code: str
    message: str
    field: str


class Refusal(Exception):
    """The spec cannot be imported; ``code`` is stable and ``reason`` is a sentence."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class SchemaImporter:
    """Translates one tool's argument schema; ``mappings`` collects every change made."""

    def __init__(self, root: object) -> None:
        self.root = root
        self.mappings: list[Mapping] = []
        self._budget = MAX_IMPORTED_SCHEMAS
        # The references being inlined on the path from the root to the current schema; meeting
        # one of them again means the definition contains itself.
        self._reference_stack: list[str] = []
        self._used_references: set[str] = set()

    def note(self, code: str, message: str, where: str) -> None:
        self.mappings.append(Mapping(code, message, where))

    # --- the root ------------------------------------------------------------------------------

    def parameters(self) -> list[dict[str, Any]]:
        """Return the parameters of the root schema, which must describe an object."""
        root = self.root
        if root is None:
            return []
        if not isinstance(root, dict):
            raise Refusal("invalid_schema", "the argument schema at $ is not a JSON object")
        self._check_dialect(root)
        node, _ = self._resolve(root, "$", ROOT_ONLY)
        if not node:
            return self._closed_root()
        kind = self._type_of(node, "$")
        if kind != "object":
            raise Refusal(
                "invalid_schema",
                f"the argument schema at $ has type {kind!r}; it must be an object",
            )
        self._check_root_keys(node)
        parameters = self._object_parameters(node, "$", depth=0, is_root=True)
        self._report_unused_definitions(root)
        return self._closed_root() if parameters is None else parameters

    def _closed_root(self) -> list[dict[str, Any]]:
        self.note(
            "closed_object",
            "the tool accepted any arguments; Llero accepts only listed parameters, and this "
            "schema lists none",
            "$",
        )
        return []

    def _check_dialect(self, root: dict[str, Any]) -> None:
        dialect = root.get("$schema")
        if dialect is None or dialect in DIALECTS_2020_12:
            return
        if not isinstance(dialect, str):
            raise Refusal("invalid_schema", "$schema at $ is not a string")
        self.note(
            "dialect_changed",
            f"the schema declared {dialect[:100]!r}; Llero stores it as JSON Schema draft 2020-12",
            "$",
        )

    def _check_root_keys(self, node: dict[str, Any]) -> None:
        for key, value in node.items():
            if key == "required" and isinstance(value, bool):
                self.note("unknown_key_dropped", "the flag 'required' was removed", "$")
            elif key in ROOT_KEYWORDS or key in ROOT_ONLY:
                continue
            elif key == "default":
                self.note(
                    "keyword_dropped", "the default of the whole argument object was removed", "$"
                )
            elif key in HANDLED and key in _APPLIES_TO:
                self._note_inapplicable(key, "object", "$")
            elif key in HANDLED:
                raise Refusal(
                    "unsupported_keyword", f"the keyword {key!r} at $ has no equivalent in Llero"
                )
            else:
                self._check_other_key(key, "$")
        if "description" in node:
            self.note(
                "annotation_dropped",
                "the description of the argument object was removed; the tool's own "
                "description is kept",
                "$",
            )

    def _report_unused_definitions(self, root: dict[str, Any]) -> None:
        for container in ("$defs", "definitions"):
            definitions = root.get(container)
            if not isinstance(definitions, dict):
                continue
            unused = [
                name
                for name in definitions
                if f"#/{container}/{_pointer_token(name)}" not in self._used_references
            ]
            if unused:
                names = ", ".join(repr(name) for name in unused[:10])
                self.note(
                    "unused_definitions_dropped",
                    f"definitions that no parameter uses were removed from {container}: {names}",
                    "$",
                )

    # --- one schema ----------------------------------------------------------------------------

    def value(self, raw: object, where: str, depth: int) -> dict[str, Any]:
        """Return the Schema fields for one array item or other schema that is not a property."""
        fields, _ = self._convert(raw, where, depth, is_property=False)
        return fields

    def _property(self, raw: object, where: str, depth: int) -> tuple[dict[str, Any], bool | None]:
        """Return a property's Schema fields and the required state its own flags set, if any."""
        return self._convert(raw, where, depth, is_property=True)

    def _convert(
        self, raw: object, where: str, depth: int, *, is_property: bool
    ) -> tuple[dict[str, Any], bool | None]:
        if depth > MAX_NESTING:
            raise Refusal("too_deep", f"{where} nests deeper than {MAX_NESTING} levels")
        self._budget -= 1
        if self._budget < 0:
            raise Refusal(
                "too_large",
                f"the schema expands to more than {MAX_IMPORTED_SCHEMAS} parameters and items",
            )
        if isinstance(raw, bool) or not isinstance(raw, dict):
            shown = "a boolean schema" if isinstance(raw, bool) else "not a JSON object"
            raise Refusal(
                "invalid_schema", f"the schema at {where} is {shown}; give it a concrete type"
            )
        node, pushed = self._resolve(raw, where, frozenset())
        try:
            node, more = self._unwrap_nullable(node, where)
            pushed += more
            kind = self._type_of(node, where)
            self._check_keys(node, where, kind, is_property=is_property)
            flag = self._property_flag(node, where) if is_property else None
            return self._fields(node, where, kind, depth), flag
        finally:
            del self._reference_stack[len(self._reference_stack) - pushed :]

    def _fields(self, node: dict[str, Any], where: str, kind: str, depth: int) -> dict[str, Any]:
        fields: dict[str, Any] = {"type": kind}
        self._description(node, where, fields)
        self._enum(node, where, kind, fields)
        self._format(node, where, fields)
        self._numbers(node, where, kind, fields)
        self._counts(node, where, fields)
        self._pattern(node, where, fields)
        if kind == "array" and "items" in node:
            self._items(node["items"], where, depth, fields)
        if kind == "object":
            properties = self._object_parameters(node, where, depth, is_root=False)
            if properties is not None:
                fields["properties"] = properties
        if "default" in node:
            self._default(node["default"], where, fields)
        return fields

    # --- $ref ----------------------------------------------------------------------------------

    def _resolve(
        self, node: dict[str, Any], where: str, siblings: frozenset[str]
    ) -> tuple[dict[str, Any], int]:
        """Inline ``$ref`` chains; return the merged schema and how many references were entered."""
        pushed = 0
        while "$ref" in node:
            reference = node["$ref"]
            self._check_reference(reference, node, where, siblings)
            target = self._pointer(reference, where)
            self._reference_stack.append(reference)
            self._used_references.add(reference)
            pushed += 1
            self.note("ref_inlined", f"$ref {reference!r} was replaced by its definition", where)
            node = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
            if "$ref" in target:
                node["$ref"] = target["$ref"]
        return node, pushed

    def _check_reference(
        self, reference: object, node: dict[str, Any], where: str, siblings: frozenset[str]
    ) -> None:
        if not isinstance(reference, str) or not (reference == "#" or reference.startswith("#/")):
            raise Refusal(
                "external_ref",
                f"$ref at {where} does not point inside this schema; only local references "
                "such as '#/$defs/Name' can be inlined",
            )
        if reference in self._reference_stack:
            raise Refusal(
                "recursive_ref",
                f"$ref {reference[:100]!r} at {where} refers back to a definition that contains "
                "it; a recursive schema has no finite form",
            )
        extra = set(node) - {"$ref", "description", "title", "default"} - siblings
        if extra:
            raise Refusal(
                "unsupported_keyword",
                f"$ref at {where} has sibling keywords Llero cannot merge: "
                + ", ".join(sorted(extra)),
            )

    def _pointer(self, reference: str, where: str) -> dict[str, Any]:
        current: object = self.root
        tokens = reference[2:].split("/") if reference != "#" else []
        for token in tokens:
            key = token.replace("~1", "/").replace("~0", "~")
            if isinstance(current, dict) and key in current:
                current = current[key]
            elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
                current = current[int(key)]
            else:
                current = None
                break
        if not isinstance(current, dict):
            raise Refusal(
                "invalid_schema", f"$ref {reference[:100]!r} at {where} does not name a schema"
            )
        return current

    # --- types ---------------------------------------------------------------------------------

    def _unwrap_nullable(self, node: dict[str, Any], where: str) -> tuple[dict[str, Any], int]:
        pushed = 0
        for keyword in ("anyOf", "oneOf"):
            if keyword in node:
                node, more = self._nullable_alternative(node, keyword, where)
                pushed += more
        if node.get("nullable") is True:
            self._note_nullable(where)
        elif "nullable" in node:
            self.note("unknown_key_dropped", "the non-standard key 'nullable' was removed", where)
        raw_type = node.get("type")
        if isinstance(raw_type, list):
            node = self._single_type(node, raw_type, where)
        return {key: value for key, value in node.items() if key != "nullable"}, pushed

    def _nullable_alternative(
        self, node: dict[str, Any], keyword: str, where: str
    ) -> tuple[dict[str, Any], int]:
        options = node[keyword]
        null = {"type": "null"}
        if not (isinstance(options, list) and len(options) == 2 and null in options):
            raise Refusal(
                "unsupported_keyword",
                f"{keyword} at {where} offers alternatives Llero cannot express; only "
                "'one schema or null' can be imported",
            )
        other = options[1] if options[0] == null else options[0]
        if not isinstance(other, dict):
            raise Refusal(
                "invalid_schema",
                f"{keyword} at {where} contains a schema that is not a JSON object",
            )
        other, pushed = self._resolve(other, where, frozenset())
        outer = {key: value for key, value in node.items() if key != keyword}
        clash = sorted(key for key in set(outer) & set(other) if outer[key] != other[key])
        if clash:
            raise Refusal(
                "unsupported_keyword",
                f"{keyword} at {where} conflicts with its sibling keywords: {', '.join(clash)}",
            )
        self._note_nullable(where)
        return {**other, **outer}, pushed

    def _note_nullable(self, where: str) -> None:
        self.note(
            "nullable_dropped",
            "null was also accepted; Llero has no nullable types, so leave the parameter out "
            "instead of sending null",
            where,
        )

    def _single_type(self, node: dict[str, Any], types: list[object], where: str) -> dict[str, Any]:
        concrete = [kind for kind in types if kind != "null"]
        if len(concrete) != 1:
            shown = json.dumps(types)[:100]
            raise Refusal(
                "unsupported_type",
                f"the type at {where} is a union {shown}; Llero needs exactly one type",
            )
        if len(concrete) < len(types):
            self._note_nullable(where)
        return {**node, "type": concrete[0]}

    def _type_of(self, node: dict[str, Any], where: str) -> str:
        raw = node.get("type")
        if raw is None:
            return self._inferred_type(node, where)
        if not isinstance(raw, str):
            raise Refusal("invalid_schema", f"the type at {where} is not a string")
        if raw in JSON_TYPES:
            return raw
        if raw in PYTHON_TYPES:
            json_type = PYTHON_TYPES[raw]
            detail = " of any length" if raw == "tuple" else ""
            self.note(
                f"{raw}_to_{json_type}",
                f"the Python type {raw!r} became the JSON Schema type {json_type!r}{detail}",
                where,
            )
            return json_type
        raise Refusal(
            "unsupported_type",
            f"the parameter at {where} has type {raw[:64]!r}, which Llero cannot validate; give "
            "it one of: " + ", ".join(sorted(JSON_TYPES)),
        )

    def _inferred_type(self, node: dict[str, Any], where: str) -> str:
        if "enum" in node or "const" in node:
            return "enum"
        for keyword, kind in (("properties", "object"), ("items", "array")):
            if keyword in node:
                self.note(
                    "type_inferred",
                    f"the schema had no type; it has {keyword}, so it became an {kind}",
                    where,
                )
                return kind
        raise Refusal(
            "unsupported_type",
            f"the schema at {where} has no type, so it accepts any value; give it a type",
        )

    # --- keywords ------------------------------------------------------------------------------

    def _check_keys(
        self, node: dict[str, Any], where: str, kind: str, *, is_property: bool
    ) -> None:
        for key, value in node.items():
            if key in ("optional", "required") and isinstance(value, bool):
                # Old-style flags; the enclosing object reads them from a property's schema.
                if not is_property:
                    self.note("unknown_key_dropped", f"the flag {key!r} was removed", where)
            elif key in _APPLIES_TO and kind not in _APPLIES_TO[key]:
                self._note_inapplicable(key, kind, where)
            elif key not in HANDLED:
                self._check_other_key(key, where)

    def _check_other_key(self, key: str, where: str) -> None:
        if key in UNSUPPORTED or key in ROOT_ONLY or key == "$ref":
            raise Refusal(
                "unsupported_keyword",
                f"the keyword {key[:64]!r} at {where} has no equivalent in Llero",
            )
        if key in ANNOTATIONS:
            self.note("annotation_dropped", f"the annotation {key!r} was removed", where)
        else:
            self.note(
                "unknown_key_dropped",
                f"the key {key[:64]!r} is not JSON Schema and was removed",
                where,
            )

    def _note_inapplicable(self, key: str, kind: str, where: str) -> None:
        self.note(
            "inapplicable_keyword_dropped",
            f"{key!r} has no effect on a value of type {kind!r} and was removed",
            where,
        )

    def _description(self, node: dict[str, Any], where: str, fields: dict[str, Any]) -> None:
        if "description" not in node:
            return
        description = node["description"]
        if not isinstance(description, str):
            raise Refusal("invalid_schema", f"the description at {where} is not a string")
        if len(description) > DESCRIPTION_MAX:
            raise Refusal(
                "bound_exceeded",
                f"the description at {where} is longer than {DESCRIPTION_MAX} characters",
            )
        if description:
            fields["description"] = description

    def _enum(self, node: dict[str, Any], where: str, kind: str, fields: dict[str, Any]) -> None:
        if "const" in node:
            if "enum" in node:
                raise Refusal("unsupported_keyword", f"{where} has both const and enum")
            self.note("const_to_enum", "const became an enum with one value", where)
            values: object = [node["const"]]
        elif "enum" in node:
            values = node["enum"]
        else:
            return
        if not isinstance(values, list) or not values:
            raise Refusal("invalid_schema", f"the enum at {where} is not a non-empty list")
        if len(values) > MAX_ENUM_VALUES:
            raise Refusal(
                "bound_exceeded", f"the enum at {where} has more than {MAX_ENUM_VALUES} values"
            )
        if not all(_is_scalar(value) for value in values):
            raise Refusal(
                "invalid_schema",
                f"the enum at {where} holds a value that is not a string, number, boolean or null",
            )
        items = node.get("items")
        if kind == "array" and isinstance(items, dict) and items and "enum" not in items:
            # BFCL writes the allowed values of each item on the array. Read as JSON Schema, that
            # enum would require the whole array to equal one string, which no array can.
            self.note(
                "enum_moved_to_items",
                "the enum was given on the array itself; it now applies to each item",
                where,
            )
            fields["items_enum"] = values
            return
        fields["enum"] = values

    def _format(self, node: dict[str, Any], where: str, fields: dict[str, Any]) -> None:
        if "format" not in node or fields["type"] != "string":
            return
        value = node["format"]
        if not isinstance(value, str):
            raise Refusal("invalid_schema", f"the format at {where} is not a string")
        if value in KNOWN_FORMATS:
            fields["format"] = value
            return
        self.note(
            "format_dropped",
            f"the format {value[:64]!r} is not one Llero checks, so it was removed "
            "(JSON Schema treats an unknown format as an annotation)",
            where,
        )

    def _numbers(self, node: dict[str, Any], where: str, kind: str, fields: dict[str, Any]) -> None:
        if kind not in ("number", "integer"):
            return
        for keyword in ("minimum", "maximum"):
            if keyword in node:
                fields[keyword] = _finite_number(node[keyword], keyword, where)
        self._exclusive(node, where, kind, fields, "exclusiveMinimum")
        self._exclusive(node, where, kind, fields, "exclusiveMaximum")

    def _exclusive(
        self, node: dict[str, Any], where: str, kind: str, fields: dict[str, Any], keyword: str
    ) -> None:
        if keyword not in node:
            return
        inclusive, step = ("minimum", 1) if keyword == "exclusiveMinimum" else ("maximum", -1)
        bound = node[keyword]
        if isinstance(bound, bool):
            # Draft 4 spelled an exclusive bound as a flag on minimum or maximum.
            if not bound:
                self.note(
                    "keyword_dropped", f"{keyword}: false has no effect and was removed", where
                )
                return
            if inclusive not in fields:
                raise Refusal("invalid_schema", f"{keyword}: true at {where} has no {inclusive}")
            bound = fields.pop(inclusive)
        bound = _finite_number(bound, keyword, where)
        if kind != "integer" or not float(bound).is_integer():
            raise Refusal(
                "unsupported_keyword",
                f"{keyword} at {where} excludes its bound on a number; Llero has only inclusive "
                "minimum and maximum",
            )
        converted = int(bound) + step
        current = fields.get(inclusive)
        if current is not None:
            converted = max(current, converted) if step > 0 else min(current, converted)
        fields[inclusive] = converted
        self.note(
            "exclusive_bound_converted",
            f"{keyword} {bound} became {inclusive} {converted}, the same rule for integers",
            where,
        )

    def _counts(self, node: dict[str, Any], where: str, fields: dict[str, Any]) -> None:
        for keyword, (attribute, bound) in _COUNT_BOUNDS.items():
            if keyword not in node or fields["type"] not in _APPLIES_TO[keyword]:
                continue
            value = node[keyword]
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise Refusal(
                    "invalid_schema", f"{keyword} at {where} is not a non-negative integer"
                )
            if value > bound:
                raise Refusal(
                    "bound_exceeded",
                    f"{keyword} {value} at {where} is above Llero's bound of {bound}",
                )
            fields[attribute] = value

    def _pattern(self, node: dict[str, Any], where: str, fields: dict[str, Any]) -> None:
        if "pattern" not in node or fields["type"] != "string":
            return
        pattern = node["pattern"]
        if not isinstance(pattern, str):
            raise Refusal("invalid_schema", f"the pattern at {where} is not a string")
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise Refusal(
                "bound_exceeded",
                f"the pattern at {where} is longer than {MAX_PATTERN_LENGTH} characters",
            )
        reason = pattern_error(pattern)
        if reason is not None:
            raise Refusal(
                "unsupported_pattern",
                f"RE2 cannot compile the pattern at {where} ({reason}); backreferences and "
                "lookaround are not supported",
            )
        fields["pattern"] = pattern

    def _items(self, items: object, where: str, depth: int, fields: dict[str, Any]) -> None:
        moved = fields.pop("items_enum", None)
        if items is True or items == {}:
            return  # every item is allowed, which is what no items schema means
        if isinstance(items, list):
            raise Refusal(
                "unsupported_keyword",
                f"items at {where} is a list (one schema per position); Llero supports one "
                "schema for every item",
            )
        fields["items"] = self.value(items, f"{where}[*]", depth + 1)
        if moved is not None:
            fields["items"]["enum"] = moved

    def _default(self, default: object, where: str, fields: dict[str, Any]) -> None:
        if not is_finite_json(default):
            raise Refusal("invalid_schema", f"the default at {where} contains NaN or infinity")
        if default is None:
            self.note(
                "null_default_kept",
                "the default null was kept; it means the parameter has no value unless given",
                where,
            )
        fields["default"] = default
        fields["has_default"] = True

    # --- objects -------------------------------------------------------------------------------

    def _object_parameters(
        self, node: dict[str, Any], where: str, depth: int, *, is_root: bool
    ) -> list[dict[str, Any]] | None:
        """Return the object's parameters, or None for an object that accepts any keys."""
        properties = node.get("properties", {})
        if not isinstance(properties, dict):
            raise Refusal("invalid_schema", f"properties at {where} is not a JSON object")
        if len(properties) > MAX_PARAMETERS:
            raise Refusal("bound_exceeded", f"{where} has more than {MAX_PARAMETERS} properties")
        required = self._required_names(node, properties, where)
        if not self._is_closed(node, properties, where, is_root=is_root):
            if "optional" in node:
                message = (
                    "the non-standard key 'optional' was removed; the object lists no properties"
                )
                self.note("unknown_key_dropped", message, where)
            return None
        parameters = []
        for name, schema in properties.items():
            location = child_path(where, name)
            _check_parameter_name(name, location)
            fields, flag = self._property(schema, location, depth + 1)
            is_required = name in required if flag is None else flag
            parameters.append({"name": name, **fields, "required": is_required})
        self._optional_list(node.get("optional"), parameters, where)
        if "allOf" in node:
            attach_conditions(node["allOf"], parameters, where)
        return parameters

    def _is_closed(
        self, node: dict[str, Any], properties: dict[str, Any], where: str, *, is_root: bool
    ) -> bool:
        additional = node.get("additionalProperties")
        if additional is False:
            return True
        if additional not in (None, True, {}):
            raise Refusal(
                "unsupported_keyword",
                f"additionalProperties at {where} gives a schema for unlisted keys; Llero "
                "cannot express that",
            )
        if properties or (is_root and additional is not None):
            if additional is not None:
                raise Refusal(
                    "unsupported_keyword",
                    f"{where} allows keys beyond its listed properties; Llero accepts only "
                    "listed parameters",
                )
            self.note(
                "closed_object",
                "keys other than the listed properties are now rejected "
                "(additionalProperties false)",
                where,
            )
            return True
        if "allOf" in node:
            raise Refusal("invalid_schema", f"allOf at {where} sets rules on unlisted properties")
        return False

    def _required_names(
        self, node: dict[str, Any], properties: dict[str, Any], where: str
    ) -> set[str]:
        required = node.get("required", [])
        if isinstance(required, bool):
            return set()  # an old-style flag on this object itself, read by its parent
        if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
            raise Refusal("invalid_schema", f"required at {where} is not a list of names")
        unknown = [name for name in required if name not in properties]
        if unknown:
            raise Refusal(
                "invalid_schema",
                f"required at {where} names properties that do not exist: "
                + ", ".join(repr(name[:64]) for name in unknown[:5]),
            )
        return set(required)

    def _property_flag(self, schema: dict[str, Any], where: str) -> bool | None:
        """Return the required state that a property's own old-style flag sets, if any."""
        flag: bool | None = None
        if isinstance(schema.get("required"), bool):
            flag = schema["required"]
            self.note(
                "required_flag",
                f"the old-style flag required: {json.dumps(flag)} became the parameter's "
                "required state",
                where,
            )
        if "optional" in schema:
            optional = schema["optional"]
            if not isinstance(optional, bool):
                raise Refusal("invalid_schema", f"optional at {where} is not true or false")
            flag = not optional
            state = "optional" if optional else "required"
            self.note(
                "optional_flag",
                f"the non-standard key optional: {json.dumps(optional)} was removed; the "
                f"parameter is {state}",
                where,
            )
        return flag

    def _optional_list(self, names: object, parameters: list[dict[str, Any]], where: str) -> None:
        if names is None:
            return
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise Refusal("invalid_schema", f"optional at {where} is not a list of names")
        if not names:
            self.note(
                "optional_list_dropped",
                "the non-standard empty list 'optional' was removed; it named no parameters",
                where,
            )
            return
        known = {parameter["name"] for parameter in parameters}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise Refusal(
                "invalid_schema",
                f"optional at {where} names properties that do not exist: "
                + ", ".join(repr(name[:64]) for name in unknown[:5]),
            )
        for parameter in parameters:
            if parameter["name"] in names:
                parameter["required"] = False
        self.note(
            "optional_list",
            "the non-standard list 'optional' was removed; the parameters it names are "
            "optional: " + ", ".join(repr(name) for name in names[:10]),
            where,
        )


# --- conditions ------------------------------------------------------------------------------


def attach_conditions(clauses: object, parameters: list[dict[str, Any]], where: str) -> None:
    """Turn an ``allOf`` that Llero's compiler wrote back into conditions on ``parameters``."""
    if not isinstance(clauses, list):
        raise Refusal("invalid_schema", f"allOf at {where} is not a list")
    by_name = {parameter["name"]: parameter for parameter in parameters}
    for clause in clauses:
        name, condition = _read_clause(clause, by_name, where)
        by_name[name].setdefault("conditions", []).append(condition)


def _read_clause(
    clause: object, by_name: dict[str, dict[str, Any]], where: str
) -> tuple[str, dict[str, Any]]:
    refusal = Refusal(
        "unsupported_keyword",
        f"allOf at {where} holds a rule other than a condition in Llero's own form "
        "(if one parameter matches a value, then another is required, forbidden or allowed)",
    )
    if not isinstance(clause, dict) or set(clause) not in ({"if", "then"}, {"if", "else"}):
        raise refusal
    trigger, operator, value = _read_test(clause["if"], by_name, refusal)
    branch = "then" if "then" in clause else "else"
    name, effect = _read_effect(clause[branch], branch, refusal)
    if name not in by_name or name == trigger:
        raise refusal
    condition = {"effect": effect, "parameter": trigger, "operator": operator, "value": value}
    return name, condition


def _read_test(
    test: object, by_name: dict[str, dict[str, Any]], refusal: Refusal
) -> tuple[str, str, object]:
    if not isinstance(test, dict) or set(test) != {"properties", "required"}:
        raise refusal
    properties, required = test["properties"], test["required"]
    if not isinstance(properties, dict) or len(properties) != 1 or required != list(properties):
        raise refusal
    trigger, rule = next(iter(properties.items()))
    if trigger not in by_name or not isinstance(rule, dict):
        raise refusal
    operator, value = _read_operator(rule, refusal)
    return trigger, operator, value


def _read_operator(rule: dict[str, Any], refusal: Refusal) -> tuple[str, object]:
    keys = set(rule)
    if keys == {"const"}:
        return "equals", rule["const"]
    if keys == {"not"} and isinstance(rule["not"], dict) and set(rule["not"]) == {"const"}:
        return "not_equals", rule["not"]["const"]
    if keys == {"type", "pattern"} and rule["type"] == "string":
        literal = unescape_literal(rule["pattern"])
        if literal is None:
            raise refusal
        return "contains", literal
    contains = rule.get("contains")
    if keys == {"type", "contains"} and rule["type"] == "array" and isinstance(contains, dict):
        if set(contains) != {"const"}:
            raise refusal
        return "contains", contains["const"]
    if rule.get("type") == "number" and len(keys) == 2:
        if "exclusiveMinimum" in keys:
            return "greater_than", rule["exclusiveMinimum"]
        if "exclusiveMaximum" in keys:
            return "less_than", rule["exclusiveMaximum"]
    raise refusal


def _read_effect(branch: object, name: str, refusal: Refusal) -> tuple[str, str]:
    if name == "then" and isinstance(branch, dict) and set(branch) == {"required"}:
        required = branch["required"]
        if isinstance(required, list) and len(required) == 1 and isinstance(required[0], str):
            return required[0], "required"
    if isinstance(branch, dict) and set(branch) == {"properties"}:
        properties = branch["properties"]
        if isinstance(properties, dict) and len(properties) == 1:
            forbidden = next(iter(properties))
            if branch == absent_schema(forbidden):
                return forbidden, "hidden" if name == "then" else "visible"
    raise refusal


def unescape_literal(pattern: object) -> str | None:
    """Return the text that ``escape_literal`` turned into ``pattern``, or None if it is not one."""
    if not isinstance(pattern, str):
        return None
    text: list[str] = []
    escaped = False
    for character in pattern:
        if escaped:
            if character not in REGEX_SPECIAL:
                return None
            text.append(character)
            escaped = False
        elif character == "\\":
            escaped = True
        elif character in REGEX_SPECIAL:
            return None
        else:
            text.append(character)
    return None if escaped else "".join(text)


# --- helpers ---------------------------------------------------------------------------------


def _check_parameter_name(name: str, where: str) -> None:
    if not _PARAMETER_NAME.fullmatch(name):
        raise Refusal(
            "invalid_parameter_name",
            f"the parameter name at {where} must be 1 to 64 letters, digits or '_.$-'; renaming "
            "a parameter would break every call that uses it",
        )


def _is_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _finite_number(value: object, keyword: str, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refusal("invalid_schema", f"{keyword} at {where} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise Refusal("invalid_schema", f"{keyword} at {where} is not a finite number")
    return value


def _pointer_token(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
