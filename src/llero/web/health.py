"""Liveness, readiness and the OpenAPI document."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from llero.access.permissions import Permission, requires
from llero.storage import migrate
from llero.web.deps import get_database
from llero.web.openapi import with_error_bodies

router = APIRouter()


@router.get("/healthz", dependencies=[requires(Permission.HEALTH_READ)], tags=["health"])
def healthz() -> dict[str, str]:
    """Return ok while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", dependencies=[requires(Permission.HEALTH_READ)], tags=["health"])
def readyz(request: Request) -> JSONResponse:
    """Return ok when the database answers, its schema is at the latest migration, and the vault
    is unsealed."""
    database = get_database(request)
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = migrate.current_revision(database.engine)
    except Exception:  # noqa: BLE001 - any database failure means not ready; the log has it
        return JSONResponse({"status": "unavailable", "reason": "database"}, status_code=503)
    if current != migrate.head_revision():
        return JSONResponse({"status": "unavailable", "reason": "migrations"}, status_code=503)
    if request.app.state.keyring.sealed:
        return JSONResponse({"status": "unavailable", "reason": "sealed"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get(
    "/api/openapi.json", dependencies=[requires(Permission.API_SCHEMA_READ)], tags=["health"]
)
def openapi_document(request: Request) -> dict[str, Any]:
    """Return the OpenAPI document that describes every route and body."""
    state = request.app.state
    if getattr(state, "openapi_document", None) is None:
        state.openapi_document = with_error_bodies(request.app.openapi())
    document: dict[str, Any] = state.openapi_document
    return document
