"""Probe routes added to an app from ``create_app``, for edge behaviour that no product route
triggers on purpose: a route that raises, an HTML page, a strict body, a write that then fails.

The probes are added to one app instance only, never to ``create_app`` itself, so the route
permission check in test_route_permissions.py walks the product's routes alone.
"""

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from pydantic import Field
from sqlalchemy import func, select

from llero.access.permissions import Permission, requires
from llero.config.settings import Settings
from llero.errors import Conflict
from llero.forge.models import Category
from llero.storage.db import Database
from llero.web.app import create_app
from llero.web.deps import SessionDep
from llero.web.schemas import RequestModel

ALLOWED_ORIGIN = "https://app.example.com"

# A value shaped like a provider key; tests assert it never reaches a response body.
PLANTED_SECRET = "sk-test-PLANTED-4f9c2e7a1b8d"

# What the failing probe raises: SQL, a file path and a secret, none of which may reach a client.
PROBE_FAILURE = (
    "SELECT password FROM users WHERE key = '"  # noqa: S608 - an exception message, never run
    + PLANTED_SECRET
    + "' -- /srv/llero/llero.db"
)

BODY_METHODS = ["POST", "PUT", "PATCH", "DELETE", "GET"]


class ProbeBody(RequestModel):
    name: str = Field(max_length=64)
    count: int
    tags: list[str] = Field(default_factory=list, max_length=8)


def echo(body: ProbeBody) -> dict[str, object]:
    return {"name": body.name, "count": body.count, "tags": body.tags}


def fail() -> None:
    raise RuntimeError(PROBE_FAILURE)


def page() -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>probe</title><p>probe page</p>")


def branded() -> Response:
    return Response(
        b"{}",
        media_type="application/json",
        headers={"Server": "probe/1.0", "X-Powered-By": "probe"},
    )


def create_category(session: SessionDep) -> dict[str, str]:
    session.add(Category(name="written"))
    return {"status": "created"}


def create_category_then_fail(session: SessionDep) -> None:
    session.add(Category(name="half-written"))
    session.flush()
    raise RuntimeError(PROBE_FAILURE)


def create_category_then_refuse(session: SessionDep) -> None:
    session.add(Category(name="half-written"))
    session.flush()
    raise Conflict("probe refused after writing")


def add_probe_routes(app: FastAPI) -> None:
    # HEALTH_READ is public, so the probes stay reachable once permissions are enforced.
    permission = [requires(Permission.HEALTH_READ)]
    app.add_api_route("/probe/echo", echo, methods=BODY_METHODS, dependencies=permission)
    app.add_api_route("/probe/fail", fail, methods=["GET"], dependencies=permission)
    app.add_api_route("/probe/page", page, methods=["GET"], dependencies=permission)
    app.add_api_route("/probe/branded", branded, methods=["GET"], dependencies=permission)
    app.add_api_route("/probe/category", create_category, methods=["POST"], dependencies=permission)
    app.add_api_route(
        "/probe/category-fail",
        create_category_then_fail,
        methods=["POST"],
        dependencies=permission,
    )
    app.add_api_route(
        "/probe/category-refuse",
        create_category_then_refuse,
        methods=["POST"],
        dependencies=permission,
    )


def build_probe_app(settings: Settings, database: Database) -> FastAPI:
    app = create_app(settings, database)
    add_probe_routes(app)
    return app


def category_count(database: Database) -> int:
    with database.reader() as session:
        return session.scalar(select(func.count()).select_from(Category)) or 0
