"""HTTP routes; each names its permission and calls the service."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from llero.access.permissions import Permission, requires
from llero.barracks import service
from llero.barracks.schemas import (
    AgentCreate,
    AgentDetail,
    AgentList,
    AgentQuery,
    AgentUpdate,
    StatusUpdate,
    ToolkitUpdate,
)
from llero.forge.routes import share_out
from llero.forge.schemas import ShareCreate, ShareOut
from llero.storage.base import utc_now
from llero.web.callers import CallerDep
from llero.web.deps import SessionDep
from llero.web.schemas import ID_MAX

AgentIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]
ToolIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]
ShareIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]

router = APIRouter(prefix="/agents", tags=["agents"])


@router.get("", dependencies=[requires(Permission.AGENT_READ)])
def list_agents(
    session: SessionDep, caller: CallerDep, query: Annotated[AgentQuery, Query()]
) -> AgentList:
    """Return one page of visible agents ordered by id, filtered by name, status and provider."""
    page = service.list_agents(
        session,
        caller,
        search=query.search,
        status=query.status,
        provider=query.provider,
        limit=query.limit,
        offset=query.offset,
    )
    return AgentList.of(page, utc_now())


@router.post("", status_code=201, dependencies=[requires(Permission.AGENT_CREATE)])
def create_agent(session: SessionDep, caller: CallerDep, body: AgentCreate) -> AgentDetail:
    new = service.NewAgent(
        name=body.name,
        provider=body.provider,
        model=body.model,
        description=body.description,
        system_prompt=body.system_prompt,
        status=body.status,
        expires_at=body.expires_at,
        tool_ids=body.tool_ids,
    )
    now = utc_now()
    return AgentDetail.of(service.create_agent(session, caller, new, now=now), now)


@router.get("/{agent_id}", dependencies=[requires(Permission.AGENT_READ)])
def get_agent(session: SessionDep, caller: CallerDep, agent_id: AgentIdPath) -> AgentDetail:
    return AgentDetail.of(service.get_agent(session, caller, agent_id), utc_now())


@router.put("/{agent_id}", dependencies=[requires(Permission.AGENT_UPDATE)])
def update_agent(
    session: SessionDep, caller: CallerDep, agent_id: AgentIdPath, body: AgentUpdate
) -> AgentDetail:
    """Change the fields present in the body; absent fields keep their values."""
    now = utc_now()
    agent = service.update_agent(session, caller, agent_id, body.changes(), now=now)
    return AgentDetail.of(agent, now)


@router.delete("/{agent_id}", status_code=204, dependencies=[requires(Permission.AGENT_DELETE)])
def delete_agent(session: SessionDep, caller: CallerDep, agent_id: AgentIdPath) -> Response:
    service.delete_agent(session, caller, agent_id)
    return Response(status_code=204)


@router.put("/{agent_id}/toolkit", dependencies=[requires(Permission.AGENT_UPDATE)])
def set_toolkit(
    session: SessionDep, caller: CallerDep, agent_id: AgentIdPath, body: ToolkitUpdate
) -> AgentDetail:
    """Replace the whole toolkit with active tools that are visible to the agent's owner."""
    agent = service.set_toolkit(session, caller, agent_id, body.tool_ids)
    return AgentDetail.of(agent, utc_now())


@router.put("/{agent_id}/toolkit/{tool_id}", dependencies=[requires(Permission.AGENT_UPDATE)])
def add_tool(
    session: SessionDep, caller: CallerDep, agent_id: AgentIdPath, tool_id: ToolIdPath
) -> AgentDetail:
    agent = service.add_tool(session, caller, agent_id, tool_id)
    return AgentDetail.of(agent, utc_now())


@router.delete("/{agent_id}/toolkit/{tool_id}", dependencies=[requires(Permission.AGENT_UPDATE)])
def remove_tool(
    session: SessionDep, caller: CallerDep, agent_id: AgentIdPath, tool_id: ToolIdPath
) -> AgentDetail:
    agent = service.remove_tool(session, caller, agent_id, tool_id)
    return AgentDetail.of(agent, utc_now())


@router.put("/{agent_id}/status", dependencies=[requires(Permission.AGENT_UPDATE_STATUS)])
def set_status(
    session: SessionDep, caller: CallerDep, agent_id: AgentIdPath, body: StatusUpdate
) -> AgentDetail:
    agent = service.set_status(session, caller, agent_id, body.status)
    return AgentDetail.of(agent, utc_now())


@router.get(
    "/{agent_id}/shares",
    dependencies=[requires(Permission.AGENT_SHARE)],
    response_model=list[ShareOut],
)
def list_shares(
    session: SessionDep, caller: CallerDep, agent_id: AgentIdPath
) -> list[dict[str, Any]]:
    """List who the agent is shared with; only its owner and admins may."""
    return [share_out(view) for view in service.list_agent_shares(session, caller, agent_id)]


@router.post(
    "/{agent_id}/shares",
    status_code=201,
    dependencies=[requires(Permission.AGENT_SHARE)],
    response_model=ShareOut,
)
def share_agent(
    session: SessionDep, caller: CallerDep, agent_id: AgentIdPath, body: ShareCreate
) -> dict[str, Any]:
    """Let one user, or everyone, read and use the agent; a share never lets them change it."""
    view = service.share_agent(
        session, caller, agent_id, user_id=body.user_id, everyone=body.everyone
    )
    return share_out(view)


@router.delete(
    "/{agent_id}/shares/{share_id}",
    status_code=204,
    dependencies=[requires(Permission.AGENT_SHARE)],
)
def unshare_agent(
    session: SessionDep, caller: CallerDep, agent_id: AgentIdPath, share_id: ShareIdPath
) -> Response:
    service.unshare_agent(session, caller, agent_id, share_id)
    return Response(status_code=204)
