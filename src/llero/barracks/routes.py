"""HTTP routes; each names its permission and calls the service."""

from typing import Annotated

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
from llero.storage.base import utc_now
from llero.web.deps import SessionDep
from llero.web.schemas import ID_MAX

AgentIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]
ToolIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]

router = APIRouter(prefix="/agents", tags=["agents"])


@router.get("", dependencies=[requires(Permission.AGENT_READ)])
def list_agents(session: SessionDep, query: Annotated[AgentQuery, Query()]) -> AgentList:
    """Return one page of agents ordered by id, filtered by name, status and provider."""
    page = service.list_agents(
        session,
        search=query.search,
        status=query.status,
        provider=query.provider,
        limit=query.limit,
        offset=query.offset,
    )
    return AgentList.of(page, utc_now())


@router.post("", status_code=201, dependencies=[requires(Permission.AGENT_CREATE)])
def create_agent(session: SessionDep, body: AgentCreate) -> AgentDetail:
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
    return AgentDetail.of(service.create_agent(session, new, now=now), now)


@router.get("/{agent_id}", dependencies=[requires(Permission.AGENT_READ)])
def get_agent(session: SessionDep, agent_id: AgentIdPath) -> AgentDetail:
    return AgentDetail.of(service.get_agent(session, agent_id), utc_now())


@router.put("/{agent_id}", dependencies=[requires(Permission.AGENT_UPDATE)])
def update_agent(session: SessionDep, agent_id: AgentIdPath, body: AgentUpdate) -> AgentDetail:
    """Change the fields present in the body; absent fields keep their values."""
    now = utc_now()
    agent = service.update_agent(session, agent_id, body.changes(), now=now)
    return AgentDetail.of(agent, now)


@router.delete("/{agent_id}", status_code=204, dependencies=[requires(Permission.AGENT_DELETE)])
def delete_agent(session: SessionDep, agent_id: AgentIdPath) -> Response:
    service.delete_agent(session, agent_id)
    return Response(status_code=204)


@router.put("/{agent_id}/toolkit", dependencies=[requires(Permission.AGENT_UPDATE)])
def set_toolkit(session: SessionDep, agent_id: AgentIdPath, body: ToolkitUpdate) -> AgentDetail:
    """Replace the whole toolkit with existing, active tools."""
    agent = service.set_toolkit(session, agent_id, body.tool_ids)
    return AgentDetail.of(agent, utc_now())


@router.put("/{agent_id}/toolkit/{tool_id}", dependencies=[requires(Permission.AGENT_UPDATE)])
def add_tool(session: SessionDep, agent_id: AgentIdPath, tool_id: ToolIdPath) -> AgentDetail:
    agent = service.add_tool(session, agent_id, tool_id)
    return AgentDetail.of(agent, utc_now())


@router.delete("/{agent_id}/toolkit/{tool_id}", dependencies=[requires(Permission.AGENT_UPDATE)])
def remove_tool(session: SessionDep, agent_id: AgentIdPath, tool_id: ToolIdPath) -> AgentDetail:
    agent = service.remove_tool(session, agent_id, tool_id)
    return AgentDetail.of(agent, utc_now())


@router.put("/{agent_id}/status", dependencies=[requires(Permission.AGENT_UPDATE_STATUS)])
def set_status(session: SessionDep, agent_id: AgentIdPath, body: StatusUpdate) -> AgentDetail:
    agent = service.set_status(session, agent_id, body.status)
    return AgentDetail.of(agent, utc_now())
