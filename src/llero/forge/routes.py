"""HTTP routes of tools and categories; each names its permission and calls the service."""

import json
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from llero.access.ownership import Caller
from llero.access.permissions import Permission, requires
from llero.access.sharing import ShareView
from llero.forge import schemas, service
from llero.forge.models import Tool, ToolStatus, ToolVersion
from llero.forge.service import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from llero.storage.db import Database
from llero.web.callers import CallerDep
from llero.web.deps import SessionDep, SettingsDep, get_database
from llero.web.schemas import ID_MAX

# Ids are 32-bit integers in every supported database.
EXPORT_IDS_MAX = 1000
SEARCH_MAX = 64


class SafeJSONResponse(JSONResponse):
    """JSON with <, > and & escaped as \\u003c, \\u003e and \\u0026.

    Tool names, descriptions and original names may come from uploaded files. The escapes
    decode to the same strings, but the raw body never contains markup that a browser or a
    careless client could render.
    """

    def render(self, content: Any) -> bytes:
        text = json.dumps(
            content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_encode
        )
        return _escape_markup(text)


def _escape_markup(json_text: str) -> bytes:
    # In JSON, <, > and & occur only inside strings, where these escapes mean the same.
    return (
        json_text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .encode("utf-8")
    )


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        # The form pydantic writes in the response models, with UTC as "Z".
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


router = APIRouter(default_response_class=SafeJSONResponse)

ToolIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]
CategoryIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]
VersionPath = Annotated[int, Path(ge=1, le=ID_MAX)]
ShareIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]
FormatQuery = Annotated[
    service.ExportFormat,
    Query(alias="format", description="Provider format of the exported tools."),
]


# --- Tools: collection routes ---------------------------------------------------------------


@router.get(
    "/tools",
    dependencies=[requires(Permission.TOOL_READ)],
    response_model=schemas.ToolPageOut,
    tags=["tools"],
)
async def list_tools(
    *,
    request: Request,
    caller: CallerDep,
    search: Annotated[
        str | None, Query(max_length=SEARCH_MAX, description="Part of the tool name.")
    ] = None,
    category_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    status: ToolStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
) -> Response:
    """List tools sorted by name, filtered by name substring, category and status."""
    query = service.ToolQuery(search, category_id, status, limit, offset)
    # This is the busiest route. It reads in one worker thread, where a sync route with the
    # session dependency would take three (open, run, close). It sends the JSON that the
    # database wrote, without validating the page again through the response model.
    text = await run_in_threadpool(_read_tool_page, get_database(request), caller, query)
    return Response(_escape_markup(text), media_type="application/json")


def _read_tool_page(database: Database, caller: Caller, query: service.ToolQuery) -> str:
    with database.engine.connect() as connection:
        return service.list_tools_json(connection, caller, query)


@router.post(
    "/tools",
    dependencies=[requires(Permission.TOOL_CREATE)],
    status_code=201,
    response_model=schemas.ToolOut,
    tags=["tools"],
)
def create_tool(session: SessionDep, caller: CallerDep, body: schemas.ToolCreate) -> dict[str, Any]:
    """Create a tool at version 1."""
    state = service.ToolFields.of(
        body.name,
        description=body.description,
        parameters=body.parameters,
        category_id=body.category_id,
        status=body.status,
    )
    return _tool_out(service.create_tool(session, caller, state))


IMPORT_MEDIA_TYPES = ("application/json", "application/x-ndjson", "application/jsonl")
IMPORT_BODY = {
    "required": True,
    "description": "The file to import, sent as is: one JSON document (an object or a list of "
    "tool specs), or JSON lines with one document per line, such as a BFCL corpus file. "
    "LLERO_MAX_BODY_BYTES bounds its size (1 MiB unless configured, 64 MiB at most).",
    "content": {
        "application/json": {"schema": {"description": "A tool spec or a list of tool specs."}},
        **{
            media_type: {"schema": {"type": "string", "maxLength": 64 * 1024 * 1024}}
            for media_type in IMPORT_MEDIA_TYPES[1:]
        },
    },
}


async def _raw_body(request: Request) -> bytes:
    """Return the request body of an import, which is a file rather than a JSON request model."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in IMPORT_MEDIA_TYPES:
        raise HTTPException(415, f"send the file as one of: {', '.join(IMPORT_MEDIA_TYPES)}")
    return await request.body()


@router.post(
    "/tools/import",
    dependencies=[requires(Permission.TOOL_IMPORT)],
    response_model=schemas.ImportReportOut,
    openapi_extra={"requestBody": IMPORT_BODY},
    tags=["tools"],
)
def import_tools(
    *,
    session: SessionDep,
    caller: CallerDep,
    settings: SettingsDep,
    data: Annotated[bytes, Depends(_raw_body)],
    fmt: Annotated[
        service.ImportFormat,
        Query(alias="format", description="Format of the specs in the file."),
    ] = service.ImportFormat.AUTO,
    on_conflict: Annotated[
        service.OnConflict,
        Query(
            description="What to do with a spec whose name is already taken: refuse it, "
            "skip it when identical, or store it as a new version of the existing tool."
        ),
    ] = service.OnConflict.REFUSE,
    all_or_nothing: Annotated[
        bool, Query(description="Reject the whole import when any spec is refused.")
    ] = False,
) -> dict[str, Any]:
    """Import tool specs from a file in one transaction and report what became of each."""
    options = service.ImportOptions(fmt, on_conflict, all_or_nothing)
    report = service.import_tools(
        session, caller, data, options, max_specs=settings.max_import_specs
    )
    return asdict(report)


@router.get(
    "/tools/export",
    dependencies=[requires(Permission.TOOL_EXPORT)],
    response_model=list[dict[str, Any]],
    tags=["tools"],
)
def export_tools(
    *,
    session: SessionDep,
    caller: CallerDep,
    fmt: FormatQuery = service.ExportFormat.OPENAI,
    ids: Annotated[
        list[Annotated[int, Query(ge=1, le=ID_MAX)]] | None,
        Query(max_length=EXPORT_IDS_MAX, description="Export only these tools."),
    ] = None,
    category_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    status: ToolStatus | None = None,
) -> list[dict[str, Any]]:
    """Export the selected tools, or all of them, as a JSON list in a provider format."""
    selection = service.ExportSelection(ids, category_id, status)
    return service.export_tools(session, caller, selection, fmt)


# --- Tools: one tool ------------------------------------------------------------------------


@router.get(
    "/tools/{tool_id}",
    dependencies=[requires(Permission.TOOL_READ)],
    response_model=schemas.ToolOut,
    tags=["tools"],
)
def get_tool(session: SessionDep, caller: CallerDep, tool_id: ToolIdPath) -> dict[str, Any]:
    return _tool_out(service.get_tool(session, caller, tool_id))


@router.put(
    "/tools/{tool_id}",
    dependencies=[requires(Permission.TOOL_UPDATE)],
    response_model=schemas.ToolOut,
    tags=["tools"],
)
def update_tool(
    session: SessionDep, caller: CallerDep, tool_id: ToolIdPath, body: schemas.ToolUpdate
) -> dict[str, Any]:
    """Change some fields of a tool; a change that alters nothing keeps the version."""
    changes = {
        name: getattr(body, name) for name in body.model_fields_set if name != "expected_version"
    }
    tool = service.update_tool(
        session, caller, tool_id, changes, expected_version=body.expected_version
    )
    return _tool_out(tool)


@router.delete(
    "/tools/{tool_id}",
    dependencies=[requires(Permission.TOOL_DELETE)],
    status_code=204,
    tags=["tools"],
)
def delete_tool(session: SessionDep, caller: CallerDep, tool_id: ToolIdPath) -> Response:
    """Delete a tool and its versions; refused while an agent's toolkit contains it."""
    service.delete_tool(session, caller, tool_id)
    return Response(status_code=204)


@router.get(
    "/tools/{tool_id}/schema",
    dependencies=[requires(Permission.TOOL_READ)],
    response_model=dict[str, Any],
    tags=["tools"],
)
def tool_schema(session: SessionDep, caller: CallerDep, tool_id: ToolIdPath) -> dict[str, Any]:
    """Return the JSON Schema that the arguments of a call to the tool must match."""
    return service.tool_schema(service.get_tool(session, caller, tool_id))


@router.get(
    "/tools/{tool_id}/export",
    dependencies=[requires(Permission.TOOL_EXPORT)],
    response_model=dict[str, Any],
    tags=["tools"],
)
def export_tool(
    session: SessionDep,
    caller: CallerDep,
    tool_id: ToolIdPath,
    fmt: FormatQuery = service.ExportFormat.OPENAI,
) -> dict[str, Any]:
    """Export one tool in a provider format."""
    return service.export_tool_as(session, caller, tool_id, fmt)


@router.post(
    "/tools/{tool_id}/test",
    dependencies=[requires(Permission.TOOL_TEST)],
    response_model=schemas.ToolTestOut,
    tags=["tools"],
)
def test_tool(
    session: SessionDep, caller: CallerDep, tool_id: ToolIdPath, body: schemas.ToolTestRequest
) -> dict[str, Any]:
    """Check arguments against the tool and list every violation with its JSON path."""
    result = service.test_tool(service.get_tool(session, caller, tool_id), body.arguments)
    return {"ok": result.ok, "violations": [item.as_dict() for item in result.violations]}


@router.post(
    "/tools/{tool_id}/clone",
    dependencies=[requires(Permission.TOOL_CREATE)],
    status_code=201,
    response_model=schemas.ToolOut,
    tags=["tools"],
)
def clone_tool(
    session: SessionDep, caller: CallerDep, tool_id: ToolIdPath, body: schemas.ToolClone
) -> dict[str, Any]:
    """Copy a visible tool under a new name, as a private draft of the caller at version 1."""
    return _tool_out(service.clone_tool(session, caller, tool_id, body.name))


# --- Tools: versions ------------------------------------------------------------------------


@router.get(
    "/tools/{tool_id}/versions",
    dependencies=[requires(Permission.TOOL_READ)],
    response_model=list[schemas.VersionSummaryOut],
    tags=["tools"],
)
def list_versions(
    session: SessionDep,
    caller: CallerDep,
    tool_id: ToolIdPath,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
) -> list[dict[str, Any]]:
    """List the versions of a tool, newest first."""
    versions = service.list_versions(session, caller, tool_id, limit=limit, offset=offset)
    return [
        {"version": item.version, "change": item.change, "created_at": item.created_at}
        for item in versions
    ]


@router.get(
    "/tools/{tool_id}/versions/{version}",
    dependencies=[requires(Permission.TOOL_READ)],
    response_model=schemas.VersionOut,
    tags=["tools"],
)
def get_version(
    session: SessionDep, caller: CallerDep, tool_id: ToolIdPath, version: VersionPath
) -> dict[str, Any]:
    return _version_out(service.get_version(session, caller, tool_id, version))


@router.get(
    "/tools/{tool_id}/diff",
    dependencies=[requires(Permission.TOOL_READ)],
    response_model=schemas.VersionDiffOut,
    tags=["tools"],
)
def diff_versions(
    session: SessionDep,
    caller: CallerDep,
    tool_id: ToolIdPath,
    from_version: Annotated[int, Query(alias="from", ge=1, le=ID_MAX)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=ID_MAX)],
) -> dict[str, Any]:
    """Compare two versions: changed fields, and added, removed and changed parameters."""
    return asdict(service.diff_versions(session, caller, tool_id, from_version, to_version))


@router.post(
    "/tools/{tool_id}/versions/{version}/restore",
    dependencies=[requires(Permission.TOOL_UPDATE)],
    response_model=schemas.ToolOut,
    tags=["tools"],
)
def restore_version(
    session: SessionDep, caller: CallerDep, tool_id: ToolIdPath, version: VersionPath
) -> dict[str, Any]:
    """Make an earlier version current again by storing it as a new version."""
    return _tool_out(service.restore_version(session, caller, tool_id, version))


# --- Tools: shares --------------------------------------------------------------------------


@router.get(
    "/tools/{tool_id}/shares",
    dependencies=[requires(Permission.TOOL_SHARE)],
    response_model=list[schemas.ShareOut],
    tags=["tools"],
)
def list_tool_shares(
    session: SessionDep, caller: CallerDep, tool_id: ToolIdPath
) -> list[dict[str, Any]]:
    """List who the tool is shared with; only its owner and admins may."""
    return [share_out(view) for view in service.list_tool_shares(session, caller, tool_id)]


@router.post(
    "/tools/{tool_id}/shares",
    dependencies=[requires(Permission.TOOL_SHARE)],
    status_code=201,
    response_model=schemas.ShareOut,
    tags=["tools"],
)
def share_tool(
    session: SessionDep, caller: CallerDep, tool_id: ToolIdPath, body: schemas.ShareCreate
) -> dict[str, Any]:
    """Let one user, or everyone, read the tool; a share never lets them change it."""
    view = service.share_tool(
        session, caller, tool_id, user_id=body.user_id, everyone=body.everyone
    )
    return share_out(view)


@router.delete(
    "/tools/{tool_id}/shares/{share_id}",
    dependencies=[requires(Permission.TOOL_SHARE)],
    status_code=204,
    tags=["tools"],
)
def unshare_tool(
    session: SessionDep, caller: CallerDep, tool_id: ToolIdPath, share_id: ShareIdPath
) -> Response:
    """Delete a share; rejected while an agent's owner would lose a tool of its toolkit."""
    service.unshare_tool(session, caller, tool_id, share_id)
    return Response(status_code=204)


# --- Categories -----------------------------------------------------------------------------


@router.get(
    "/categories",
    dependencies=[requires(Permission.CATEGORY_READ)],
    response_model=list[schemas.CategoryOut],
    tags=["categories"],
)
def list_categories(session: SessionDep, caller: CallerDep) -> list[dict[str, Any]]:
    """List every category sorted by name, each with the number of visible tools in it."""
    return [asdict(category) for category in service.list_categories(session, caller)]


@router.post(
    "/categories",
    dependencies=[requires(Permission.CATEGORY_CREATE)],
    status_code=201,
    response_model=schemas.CategoryOut,
    tags=["categories"],
)
def create_category(
    session: SessionDep, caller: CallerDep, body: schemas.CategoryCreate
) -> dict[str, Any]:
    return asdict(service.create_category(session, caller, body.name, body.description))


@router.get(
    "/categories/{category_id}",
    dependencies=[requires(Permission.CATEGORY_READ)],
    response_model=schemas.CategoryOut,
    tags=["categories"],
)
def get_category(
    session: SessionDep, caller: CallerDep, category_id: CategoryIdPath
) -> dict[str, Any]:
    return asdict(service.get_category(session, caller, category_id))


@router.put(
    "/categories/{category_id}",
    dependencies=[requires(Permission.CATEGORY_UPDATE)],
    response_model=schemas.CategoryOut,
    tags=["categories"],
)
def update_category(
    session: SessionDep,
    caller: CallerDep,
    category_id: CategoryIdPath,
    body: schemas.CategoryUpdate,
) -> dict[str, Any]:
    """Rename a category or change its description."""
    category = service.update_category(
        session, caller, category_id, name=body.name, description=body.description
    )
    return asdict(category)


@router.delete(
    "/categories/{category_id}",
    dependencies=[requires(Permission.CATEGORY_DELETE)],
    status_code=204,
    tags=["categories"],
)
def delete_category(
    session: SessionDep, caller: CallerDep, category_id: CategoryIdPath
) -> Response:
    """Delete a category; refused while any tool is in it."""
    service.delete_category(session, caller, category_id)
    return Response(status_code=204)


def _tool_out(tool: Tool) -> dict[str, Any]:
    return {
        "id": tool.id,
        "name": tool.name,
        "original_name": tool.original_name,
        "description": tool.description,
        "category_id": tool.category_id,
        "category": tool.category.name if tool.category else None,
        "status": tool.status,
        "parameters": tool.parameters,
        "version": tool.version,
        "owner_user_id": tool.owner_user_id,
        "created_at": tool.created_at,
        "updated_at": tool.updated_at,
    }


def share_out(view: ShareView) -> dict[str, Any]:
    return {
        "id": view.id,
        "user_id": view.user_id,
        "everyone": view.everyone,
        "created_at": view.created_at,
    }


def _version_out(version: ToolVersion) -> dict[str, Any]:
    return {
        "tool_id": version.tool_id,
        "version": version.version,
        "change": version.change,
        "created_at": version.created_at,
        "snapshot": version.snapshot,
    }
