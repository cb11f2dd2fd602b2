"""The published OpenAPI document, with the error bodies Llero really sends.

FastAPI documents its own validation error shape (``HTTPValidationError``) on every route, but
Llero answers every error, validation included, with one body: error, message, request id and
optional details. The document is rewritten once so clients generate the right types.
"""

from copy import deepcopy
from typing import Any

from llero.web.schemas import ErrorResponse

ERROR_REF = "#/components/schemas/ErrorResponse"
FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")


def with_error_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``document`` whose error responses use Llero's error body."""
    patched = deepcopy(document)
    schemas = patched.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    for name in FASTAPI_ERROR_SCHEMAS:
        schemas.pop(name, None)

    error_content = {"application/json": {"schema": {"$ref": ERROR_REF}}}
    for operations in patched.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "Invalid request", "content": error_content}
            responses.setdefault("4XX", {"description": "Client error", "content": error_content})
            responses.setdefault(
                "500", {"description": "Unexpected error", "content": error_content}
            )
    return patched
