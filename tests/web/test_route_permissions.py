"""Every route of the app names exactly one permission through ``requires``, and the permission
registry stays sorted and named ``resource:action``.

The walk covers every route ``create_app`` mounts, so a route added later without a permission
fails here. A plain Starlette route or mount cannot declare a permission at all, so it fails too.
"""

import re
from collections.abc import Iterator, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.responses import PlainTextResponse
from fastapi.routing import RouteContext, iter_route_contexts
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount

from llero.access.permissions import Permission, permission_of, requires
from llero.config.settings import Settings
from llero.storage.db import Database
from llero.web.app import create_app

PERMISSION_VALUE = re.compile(r"[a-z][a-z0-9_]*:[a-z][a-z0-9_]*")


def _permissions_in(dependant: Dependant) -> list[Permission]:
    """Collect every permission in the dependency tree, so a second one hidden in a shared
    dependency counts too."""
    found: list[Permission] = []
    for dependency in dependant.dependencies:
        permission = permission_of(dependency.call) if dependency.call else None
        if permission is not None:
            found.append(permission)
        found += _permissions_in(dependency)
    return found


def _leaf_routes(
    routes: Sequence[BaseRoute], prefix: str = ""
) -> Iterator[tuple[str, RouteContext]]:
    """Yield every route with its full path and effective dependencies.

    ``iter_route_contexts`` is what FastAPI's OpenAPI generator uses to flatten included routers
    and combine router-level dependencies with each route's own; mounts are walked here.
    """
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, Mount) and route.routes:
            yield from _leaf_routes(route.routes, prefix + route.path)
        else:
            yield prefix + str(context.path or getattr(route, "path", "?")), context


def _describe(path: str, context: RouteContext) -> str:
    kind = type(context.original_route).__name__
    methods = ",".join(sorted(context.methods or [])) or kind
    return f"{methods} {path}"


def routes_without_one_permission(app: FastAPI) -> list[str]:
    """Return one line per route that does not declare exactly one permission."""
    problems = []
    for path, context in _leaf_routes(app.routes):
        dependant = getattr(context, "dependant", None)
        declared = _permissions_in(dependant) if isinstance(dependant, Dependant) else []
        if len(declared) != 1:
            names = ", ".join(declared) if declared else "no permission"
            problems.append(f"{_describe(path, context)} declares {names}")
    return problems


def all_route_paths(app: FastAPI) -> set[str]:
    return {path for path, _ in _leaf_routes(app.routes)}


def test_every_route_declares_one_permission(settings: Settings, database: Database) -> None:
    app = create_app(settings, database)

    assert routes_without_one_permission(app) == []
    # The walk must see the product's routes, or the check above proves nothing.
    assert {"/healthz", "/readyz", "/api/openapi.json"} <= all_route_paths(app)


def _bad_app() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    def endpoint() -> dict[str, str]:
        return {}

    def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("plain")

    app.add_api_route("/good", endpoint, dependencies=[requires(Permission.TOOL_READ)])
    app.add_api_route("/none", endpoint)
    app.add_api_route(
        "/two",
        endpoint,
        dependencies=[requires(Permission.TOOL_READ), requires(Permission.TOOL_DELETE)],
    )

    # A second permission hidden one level down, in a dependency of a dependency.
    nested_update = requires(Permission.TOOL_UPDATE)

    def nested_permission(_: Annotated[None, nested_update]) -> None:
        return None

    app.add_api_route(
        "/nested",
        endpoint,
        dependencies=[requires(Permission.TOOL_READ), Depends(nested_permission)],
    )
    router = APIRouter(dependencies=[requires(Permission.TOOL_CREATE)])
    router.add_api_route(
        "/router-and-route", endpoint, dependencies=[requires(Permission.TOOL_READ)]
    )
    router.add_api_route("/router-only", endpoint)
    inner = APIRouter()
    inner.add_api_route("/inner-only", endpoint)
    router.include_router(inner, prefix="/inner")
    app.include_router(router, prefix="/api")
    app.add_route("/plain", plain)
    app.mount("/mounted", PlainTextResponse("mounted"))
    sub_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    sub_app.add_api_route("/hidden", endpoint)
    app.mount("/sub", sub_app)
    return app


def test_permission_walk_flags_bad_routes() -> None:
    problems = routes_without_one_permission(_bad_app())

    assert problems == [
        "GET /none declares no permission",
        "GET /two declares tool:read, tool:delete",
        "GET /nested declares tool:read, tool:update",
        "GET /api/router-and-route declares tool:create, tool:read",
        "GET,HEAD /plain declares no permission",
        "Mount /mounted declares no permission",
        "GET /sub/hidden declares no permission",
    ]


def test_permission_enum_sorted_by_value() -> None:
    values = [permission.value for permission in Permission]

    assert values == sorted(values)
    assert len(values) == len(set(values))


def test_permission_values_are_resource_action() -> None:
    for permission in Permission:
        assert PERMISSION_VALUE.fullmatch(permission.value), permission.value
        assert permission.name == permission.value.upper().replace(":", "_"), permission.name
