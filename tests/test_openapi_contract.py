"""The published OpenAPI document is the contract for every request body: each object refuses
unknown fields, and each string and array states its bound, so a client can see the limits that
the server enforces."""

from typing import Any

from fastapi.testclient import TestClient

# Values whose size is bounded by something other than maxLength: a fixed format or an enum.
BOUNDED_STRING_KEYS = ("maxLength", "enum", "const", "format")


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    reference = schema.get("$ref")
    if reference is None:
        return schema
    target: Any = document
    for part in reference.removeprefix("#/").split("/"):
        target = target[part]
    resolved: dict[str, Any] = target
    return resolved


def _unbounded(
    document: dict[str, Any], schema: dict[str, Any], path: str, seen: set[str]
) -> list[str]:
    reference = schema.get("$ref")
    if reference in seen:
        return []
    if reference:
        seen = seen | {reference}
    schema = _resolve(document, schema)
    problems: list[str] = []
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for index, option in enumerate(schema.get(key, [])):
            problems += _unbounded(document, option, f"{path}.{key}[{index}]", seen)
    kind = schema.get("type")
    if kind == "string" and not any(key in schema for key in BOUNDED_STRING_KEYS):
        problems.append(f"{path}: string without maxLength")
    # Integers inside a tool's parameters are data of the spec (enum values, defaults), which the
    # spec validation bounds; every other integer is an id, a count or an offset.
    is_spec_value = ".parameters" in path
    if kind == "integer" and "maximum" not in schema and not is_spec_value:
        problems.append(f"{path}: integer without maximum")
    if kind == "array":
        if "maxItems" not in schema:
            problems.append(f"{path}: array without maxItems")
        if isinstance(schema.get("items"), dict):
            problems += _unbounded(document, schema["items"], f"{path}[]", seen)
    if kind == "object" or "properties" in schema:
        if schema.get("additionalProperties", True) is not False and "properties" in schema:
            problems.append(f"{path}: object accepts unknown fields")
        for name, child in schema.get("properties", {}).items():
            problems += _unbounded(document, child, f"{path}.{name}", seen)
    return problems


def _request_bodies(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    bodies = []
    for route, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                bodies.append((f"{method.upper()} {route}", media["schema"]))
    return bodies


def _parameters(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for route, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                label = f"{method.upper()} {route} {parameter['in']}:{parameter['name']}"
                found.append((label, parameter["schema"]))
    return found


def test_every_query_and_path_parameter_is_bounded(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()

    problems: list[str] = []
    for label, schema in _parameters(document):
        problems += _unbounded(document, schema, label, set())

    assert problems == []


def test_every_request_body_is_bounded_and_closed(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()

    problems: list[str] = []
    for label, schema in _request_bodies(document):
        problems += _unbounded(document, schema, label, set())

    assert problems == []


def test_unbounded_schema_is_detected() -> None:
    document = {"components": {"schemas": {}}}
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {}},
            "count": {"type": "integer", "minimum": 1},
        },
    }

    problems = _unbounded(document, schema, "body", set())

    assert problems == [
        "body: object accepts unknown fields",
        "body.name: string without maxLength",
        "body.tags: array without maxItems",
        "body.count: integer without maximum",
    ]


def test_error_responses_document_llero_error_body(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()

    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorResponse"]["required"]) == {"error", "message", "request_id"}
    for route, operations in document["paths"].items():
        for method, operation in operations.items():
            for status in ("4XX", "500"):
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, (
                    method,
                    route,
                )
            if "422" in operation["responses"]:
                content = operation["responses"]["422"]["content"]["application/json"]
                assert content["schema"]["$ref"].endswith("/ErrorResponse")
