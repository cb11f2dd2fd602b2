"""Agents: create, read, search, change and delete them, and set their toolkits, status and expiry.

Every function works in the caller's session and flushes but never commits, so the caller's
transaction decides. A change that raises leaves nothing written once the caller rolls back.
Each function validates its own input as well, because the CLI and the run loop call it without
the HTTP schemas in front of it.

Each function takes the ``Caller`` it acts for and applies ``llero.access.ownership``: an agent
the caller may not see is reported as not found, exactly as a missing id is, and a toolkit may
contain only tools that the agent's owner sees. Every change records its audit event in the
caller's transaction.
"""

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llero.access import sharing
from llero.access.ownership import Caller, NotOwner
from llero.audit.context import Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.barracks.models import (
    DESCRIPTION_MAX,
    SYSTEM_PROMPT_MAX,
    Agent,
    AgentShare,
    AgentStatus,
)
from llero.errors import Conflict, InvalidInput, NotFound, Refused, Violation
from llero.forge.models import NAME_MAX, Tool, ToolShare, ToolStatus
from llero.logs import get_logger
from llero.storage.base import utc_now

log = get_logger("llero.barracks")

AGENT_SHARES = sharing.ShareTable(AgentShare, AgentShare.agent_id, "agent")
_TOOL_SHARES = sharing.ShareTable(ToolShare, ToolShare.tool_id, "tool")

PROVIDER_MAX = 64
MODEL_MAX = 128
# The OpenAI chat completions API reference states that a request supports at most 128
# functions as tools, so a larger toolkit could never be sent whole to that provider.
TOOLKIT_MAX = 128
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200
# Ids are 32-bit integers on PostgreSQL. A larger number cannot name a row, and binding it would
# make the driver fail instead of the lookup.
ID_MAX = 2**31 - 1
OFFSET_MAX = ID_MAX

# Characters that a reviewer does not see but a model reads: bidirectional embeddings, overrides
# and isolates reorder the visible text (CVE-2021-42574), and Unicode tag characters
# (U+E0000..U+E007F) render as nothing, so they can hide instructions inside a system prompt.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_TAG_FIRST, _TAG_LAST = 0xE0000, 0xE007F
_ALLOWED_CONTROLS = frozenset("\t\n\r")


class AgentChanges(TypedDict, total=False):
    """The fields of a partial update. A key that is absent keeps its stored value."""

    name: str
    description: str
    system_prompt: str
    provider: str
    model: str
    # None removes the expiry.
    expires_at: datetime | None


@dataclass(frozen=True)
class NewAgent:
    name: str
    provider: str
    model: str
    description: str = ""
    system_prompt: str = ""
    status: AgentStatus = AgentStatus.ACTIVE
    expires_at: datetime | None = None
    tool_ids: Sequence[int] = ()


@dataclass(frozen=True)
class AgentPage:
    """One page of a search, with the number of agents that match it on all pages."""

    items: list[Agent]
    total: int
    limit: int
    offset: int


class ToolkitRejected(Refused):
    """Rejection of a toolkit that names tools which do not exist or are not active.

    Nothing was changed. ``reasons`` maps each rejected tool id to ``unknown`` or to the tool's
    status (``draft``, ``inactive``).
    """

    def __init__(self, reasons: dict[int, str], details: list[Violation]) -> None:
        listed = ", ".join(f"{tool_id} ({reason})" for tool_id, reason in reasons.items())
        super().__init__(
            f"a toolkit can contain only existing, active tools; rejected tools: {listed}",
            details=details,
        )
        self.reasons = reasons


def is_runnable(agent: Agent, now: datetime) -> bool:
    """Return whether the agent may start a run at ``now``: it is active and not expired."""
    if agent.status != AgentStatus.ACTIVE:
        return False
    return agent.expires_at is None or agent.expires_at > now


# Text rules. Each ``*_problem`` function returns what is wrong with a value, or None. The HTTP
# schemas call them too, so both layers reject exactly the same values.


def line_problem(value: str, max_length: int) -> str | None:
    """Return what makes a one-line value (name, provider, model) invalid, or None.

    The value must be non-empty and printable, with no whitespace at either end.
    """
    if not value:
        return "must not be empty"
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if value != value.strip():
        return "must not start or end with whitespace"
    # isprintable() is False for control, format and separator characters other than the space.
    hidden = next((char for char in value if not char.isprintable()), None)
    if hidden is not None:
        return f"contains the non-printable character {_code_point(hidden)}"
    return None


def text_problem(value: str, max_length: int) -> str | None:
    """Return what makes a multi-line value (description, system prompt) invalid, or None.

    Tabs and line breaks are allowed. Other control characters and invisible characters are not.
    """
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    hidden = next((char for char in value if _is_hidden(char)), None)
    if hidden is not None:
        return f"contains the control or invisible character {_code_point(hidden)}"
    return None


def _is_hidden(char: str) -> bool:
    if char in _ALLOWED_CONTROLS:
        return False
    if char in _BIDI_CONTROLS or _TAG_FIRST <= ord(char) <= _TAG_LAST:
        return True
    # Cs: a lone surrogate cannot be encoded as UTF-8, so the database would fail to store it.
    return unicodedata.category(char) in {"Cc", "Cs"}


def _code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{field}: {problem}", details=[Violation(field, problem)])


def _check_line(field: str, value: object, max_length: int) -> str:
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    problem = line_problem(value, max_length)
    if problem is not None:
        raise _invalid(field, problem)
    return value


def _check_text(field: str, value: object, max_length: int) -> str:
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    problem = text_problem(value, max_length)
    if problem is not None:
        raise _invalid(field, problem)
    return value


def _check_expiry(value: object, now: datetime) -> datetime | None:
    """Return the expiry in UTC, or None. It must be timezone-aware and later than ``now``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise _invalid("expires_at", "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise _invalid("expires_at", "must include a time zone, for example +00:00 or Z")
    try:
        expires_at = value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:00-05:00 is a valid datetime that falls after year 9999 in UTC.
        raise _invalid("expires_at", "is out of range") from None
    if expires_at <= now:
        raise _invalid("expires_at", "must be in the future")
    return expires_at


def _check_status(value: object) -> AgentStatus:
    if isinstance(value, str) and value in set(AgentStatus):
        return AgentStatus(value)
    allowed = ", ".join(status.value for status in AgentStatus)
    raise _invalid("status", f"must be one of: {allowed}")


_FIELD_CHECKS: dict[str, tuple[Callable[[str, object, int], str], int]] = {
    "name": (_check_line, NAME_MAX),
    "provider": (_check_line, PROVIDER_MAX),
    "model": (_check_line, MODEL_MAX),
    "description": (_check_text, DESCRIPTION_MAX),
    "system_prompt": (_check_text, SYSTEM_PROMPT_MAX),
}


def _checked_changes(changes: AgentChanges, now: datetime) -> dict[str, Any]:
    unknown = sorted(set(changes) - set(_FIELD_CHECKS) - {"expires_at"})
    if unknown:
        raise _invalid(unknown[0], "is not a field that can be changed")
    checked: dict[str, Any] = {}
    for field, value in changes.items():
        if field == "expires_at":
            checked[field] = _check_expiry(value, now)
            continue
        check, max_length = _FIELD_CHECKS[field]
        checked[field] = check(field, value, max_length)
    return checked


# Storage helpers.


def _now_or_current(now: datetime | None) -> datetime:
    if now is None:
        return utc_now()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _is_valid_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ID_MAX


def _check_name_free(session: Session, name: str, agent_id: int | None) -> None:
    owner = session.scalar(select(Agent.id).where(Agent.name == name))
    if owner is not None and owner != agent_id:
        raise Conflict(
            f"an agent named '{name}' already exists; choose another name",
            details=[Violation("name", "is already used by another agent")],
        )


def _flush(session: Session, agent_name: str) -> None:
    """Flush, turning a constraint violation into Conflict.

    The checks before a flush catch the usual cases. This catches a concurrent request that took
    the same name or deleted a tool between the check and the write.
    """
    try:
        session.flush()
    except IntegrityError as error:
        log.warning("agent_write_conflict", agent=agent_name, error=type(error.orig).__name__)
        raise Conflict(
            f"agent '{agent_name}' was not saved because a concurrent change took its name or"
            " removed one of its tools; retry the request"
        ) from error


def _touch(agent: Agent) -> None:
    agent.updated_at = utc_now()


def _assign_toolkit(agent: Agent, tools: list[Tool]) -> None:
    # Sorted as the relationship loads it, so the agent reads the same before and after a reload.
    agent.toolkit = sorted(tools, key=lambda tool: tool.id)


# Toolkits.


def _toolkit_tools(
    session: Session, owner: Caller, tool_ids: Sequence[int], field: str
) -> list[Tool]:
    """Return the tools in ``tool_ids`` order, or raise naming every id that cannot be used.

    A tool that ``owner`` (the agent's owner) may not see is rejected as ``unknown``, exactly
    like an id that names no tool.
    """
    if len(tool_ids) > TOOLKIT_MAX:
        raise _invalid(field, f"must contain at most {TOOLKIT_MAX} tools")
    _check_no_duplicates(tool_ids, field)

    valid_ids = {tool_id for tool_id in tool_ids if _is_valid_id(tool_id)}
    statement = select(Tool).where(Tool.id.in_(valid_ids))
    visible = _tools_visible_to(owner)
    if visible is not None:
        statement = statement.where(visible)
    found = session.scalars(statement).all() if valid_ids else []
    tools = {tool.id: tool for tool in found}

    reasons: dict[int, str] = {}
    details: list[Violation] = []
    for position, tool_id in enumerate(tool_ids):
        reason = _rejection_reason(tools.get(tool_id))
        if reason is not None:
            reasons[tool_id] = reason
            details.append(Violation(f"{field}.{position}", _rejection_problem(tool_id, reason)))
    if reasons:
        raise ToolkitRejected(reasons, details)
    return [tools[tool_id] for tool_id in tool_ids]


def _check_no_duplicates(tool_ids: Sequence[int], field: str) -> None:
    first_position: dict[int, int] = {}
    repeated: list[int] = []
    details: list[Violation] = []
    for position, tool_id in enumerate(tool_ids):
        if not isinstance(tool_id, int) or isinstance(tool_id, bool):
            raise _invalid(f"{field}.{position}", "must be an integer tool id")
        if tool_id not in first_position:
            first_position[tool_id] = position
            continue
        repeated.append(tool_id)
        details.append(
            Violation(
                f"{field}.{position}",
                f"repeats tool {tool_id}, already at {field}.{first_position[tool_id]}",
            )
        )
    if repeated:
        listed = ", ".join(str(tool_id) for tool_id in repeated)
        raise InvalidInput(
            f"{field} lists these tools more than once: {listed}. List each tool once.",
            details=details,
        )


def _rejection_problem(tool_id: int, reason: str) -> str:
    return f"tool {tool_id} is {reason}; only active tools can be in a toolkit"


def _tools_visible_to(owner: Caller) -> ColumnElement[bool] | None:
    if owner.sees_all or owner.user_id is None:
        return None
    return sharing.visible_clause(Tool.owner_user_id, Tool.id, _TOOL_SHARES, owner.user_id)


def _active_tool(session: Session, owner: Caller, tool_id: int, field: str) -> Tool:
    tool = session.get(Tool, tool_id) if _is_valid_id(tool_id) else None
    if tool is not None and not sharing.is_visible(
        session, owner, _TOOL_SHARES, tool.id, tool.owner_user_id
    ):
        tool = None
    if tool is not None and tool.status == ToolStatus.ACTIVE:
        return tool
    reason = "unknown" if tool is None else str(tool.status)
    problem = _rejection_problem(tool_id, reason)
    raise ToolkitRejected({tool_id: reason}, [Violation(field, problem)])


def _rejection_reason(tool: Tool | None) -> str | None:
    if tool is None:
        return "unknown"
    if tool.status == ToolStatus.ACTIVE:
        return None
    return str(tool.status)


# Agents.


def get_agent(session: Session, caller: Caller, agent_id: int) -> Agent:
    """Return an agent that ``caller`` may see, or raise NotFound as for a missing id."""
    agent = session.get(Agent, agent_id) if _is_valid_id(agent_id) else None
    if agent is None or not _sees(session, caller, agent):
        raise NotFound(f"agent {agent_id} not found")
    return agent


def get_agent_to_change(
    session: Session, caller: Caller, agent_id: int, *, lock: bool = True
) -> Agent:
    """Return an agent that ``caller`` may change; ``lock`` holds its row to the transaction's end.

    Raises NotFound when the caller may not see it, and NotOwner when they see it only
    through a share.
    """
    agent = (
        session.get(Agent, agent_id, with_for_update={"of": Agent} if lock else None)
        if _is_valid_id(agent_id)
        else None
    )
    if agent is None or not _sees(session, caller, agent):
        raise NotFound(f"agent {agent_id} not found")
    if not caller.owns(agent.owner_user_id):
        raise NotOwner("agent", agent_id)
    return agent


def _sees(session: Session, caller: Caller, agent: Agent) -> bool:
    return sharing.is_visible(session, caller, AGENT_SHARES, agent.id, agent.owner_user_id)


def _owner_of(session: Session, caller: Caller, agent: Agent) -> Caller:
    """Return the agent's owner as a caller, to decide which tools its toolkit may contain."""
    if agent.owner_user_id == caller.user_id:
        return caller
    return sharing.caller_for_owner(session, agent.owner_user_id, caller.origin)


def _record(
    session: Session,
    caller: Caller,
    event: AuditEvent,
    agent_id: int,
    detail: dict[str, Any],
) -> None:
    record_as(session, caller.origin, event, Target.of("agent", agent_id), detail)


def create_agent(
    session: Session, caller: Caller, new: NewAgent, *, now: datetime | None = None
) -> Agent:
    """Validate and insert an agent owned by ``caller`` with its toolkit.

    Any error is raised before a write.
    """
    now = _now_or_current(now)
    name = _check_line("name", new.name, NAME_MAX)
    agent = Agent(
        name=name,
        provider=_check_line("provider", new.provider, PROVIDER_MAX),
        model=_check_line("model", new.model, MODEL_MAX),
        description=_check_text("description", new.description, DESCRIPTION_MAX),
        system_prompt=_check_text("system_prompt", new.system_prompt, SYSTEM_PROMPT_MAX),
        status=_check_status(new.status),
        expires_at=_check_expiry(new.expires_at, now),
        owner_user_id=caller.user_id,
    )
    toolkit = _toolkit_tools(session, caller, new.tool_ids, "tool_ids")
    _check_name_free(session, name, None)

    _assign_toolkit(agent, toolkit)
    session.add(agent)
    _flush(session, name)
    _record(
        session,
        caller,
        AuditEvent.AGENT_CREATED,
        agent.id,
        {"name": name, "status": str(agent.status), "tool_ids": [tool.id for tool in toolkit]},
    )
    log.info("agent_created", agent_id=agent.id, tools=len(toolkit))
    return agent


def list_agents(
    session: Session,
    caller: Caller,
    *,
    search: str | None = None,
    status: AgentStatus | None = None,
    provider: str | None = None,
    limit: int = LIST_LIMIT_DEFAULT,
    offset: int = 0,
) -> AgentPage:
    """Return one page of the agents ``caller`` sees, ordered by id.

    ``search`` matches a substring of the name without regard to case (on SQLite, only for ASCII
    letters). ``%`` and ``_`` in it match themselves.
    """
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise _invalid("limit", f"must be between 1 and {LIST_LIMIT_MAX}")
    if not 0 <= offset <= OFFSET_MAX:
        raise _invalid("offset", f"must be between 0 and {OFFSET_MAX}")

    query = select(Agent)
    if not caller.sees_all:
        if caller.user_id is None:
            raise ValueError("a caller that is not the system needs a user id")
        query = query.where(
            sharing.visible_clause(Agent.owner_user_id, Agent.id, AGENT_SHARES, caller.user_id)
        )
    if search:
        query = query.where(Agent.name.icontains(search, autoescape=True))
    if status is not None:
        query = query.where(Agent.status == _check_status(status))
    if provider is not None:
        query = query.where(Agent.provider == provider)

    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(Agent.id).limit(limit).offset(offset)).all()
    return AgentPage(items=list(items), total=total, limit=limit, offset=offset)


def update_agent(
    session: Session,
    caller: Caller,
    agent_id: int,
    changes: AgentChanges,
    *,
    now: datetime | None = None,
) -> Agent:
    """Apply the fields present in ``changes``. The other fields keep their stored values."""
    checked = _checked_changes(changes, _now_or_current(now))
    agent = get_agent_to_change(session, caller, agent_id)
    if "name" in checked:
        _check_name_free(session, checked["name"], agent.id)
    if not checked:
        return agent

    changed = sorted(field for field, value in checked.items() if getattr(agent, field) != value)
    for field, value in checked.items():
        setattr(agent, field, value)
    _touch(agent)
    _flush(session, agent.name)
    if changed:
        _record(session, caller, AuditEvent.AGENT_UPDATED, agent.id, {"fields": changed})
    log.info("agent_updated", agent_id=agent.id, fields=sorted(checked))
    return agent


def delete_agent(session: Session, caller: Caller, agent_id: int) -> None:
    """Delete the agent, its toolkit rows and its shares. The tools themselves stay."""
    agent = get_agent_to_change(session, caller, agent_id)
    name = agent.name
    session.delete(agent)
    session.flush()
    _record(session, caller, AuditEvent.AGENT_DELETED, agent_id, {"name": name})
    log.info("agent_deleted", agent_id=agent_id)


def set_status(session: Session, caller: Caller, agent_id: int, status: AgentStatus) -> Agent:
    """Set the status of an agent to active or disabled.

    Quarantine is entered and lifted only through barracks.quarantine, which records who did it
    and why, so this refuses any change into or out of it.
    """
    checked = _check_status(status)
    agent = get_agent_to_change(session, caller, agent_id)
    if agent.status == checked:
        return agent
    if AgentStatus.QUARANTINED in (checked, agent.status):
        raise Refused(
            f"agent {agent.id}: quarantine is set and lifted only with POST "
            f"/api/agents/{agent.id}/quarantine and /release (or `llero agents`)"
        )

    previous = agent.status
    agent.status = checked
    _touch(agent)
    session.flush()
    _record(
        session,
        caller,
        AuditEvent.AGENT_STATUS_CHANGED,
        agent.id,
        {"previous": str(previous), "status": str(checked)},
    )
    log.info("agent_status_changed", agent_id=agent.id, previous=previous, status=checked)
    return agent


def set_toolkit(session: Session, caller: Caller, agent_id: int, tool_ids: Sequence[int]) -> Agent:
    """Replace the whole toolkit. Every tool must exist and be active, and none may repeat."""
    agent = get_agent_to_change(session, caller, agent_id)
    owner = _owner_of(session, caller, agent)
    _assign_toolkit(agent, _toolkit_tools(session, owner, tool_ids, "tool_ids"))
    _touch(agent)
    _flush(session, agent.name)
    _record_toolkit(session, caller, agent)
    log.info("agent_toolkit_set", agent_id=agent.id, tools=len(agent.toolkit))
    return agent


def _record_toolkit(session: Session, caller: Caller, agent: Agent) -> None:
    detail = {"fields": ["toolkit"], "tool_ids": [tool.id for tool in agent.toolkit]}
    _record(session, caller, AuditEvent.AGENT_UPDATED, agent.id, detail)


def add_tool(session: Session, caller: Caller, agent_id: int, tool_id: int) -> Agent:
    """Add one active tool to the toolkit, or raise Conflict when it is already there."""
    agent = get_agent_to_change(session, caller, agent_id)
    if any(tool.id == tool_id for tool in agent.toolkit):
        raise Conflict(f"tool {tool_id} is already in the toolkit of agent {agent.id}")
    if len(agent.toolkit) >= TOOLKIT_MAX:
        raise Refused(
            f"the toolkit of agent {agent.id} already has the maximum of {TOOLKIT_MAX} tools;"
            " remove one before adding another"
        )

    owner = _owner_of(session, caller, agent)
    _assign_toolkit(agent, [*agent.toolkit, _active_tool(session, owner, tool_id, "tool_id")])
    _touch(agent)
    _flush(session, agent.name)
    _record_toolkit(session, caller, agent)
    log.info("agent_tool_added", agent_id=agent.id, tool_id=tool_id)
    return agent


def remove_tool(session: Session, caller: Caller, agent_id: int, tool_id: int) -> Agent:
    """Remove one tool from the toolkit, or raise NotFound when it is not there."""
    agent = get_agent_to_change(session, caller, agent_id)
    tool = next((tool for tool in agent.toolkit if tool.id == tool_id), None)
    if tool is None:
        raise NotFound(f"tool {tool_id} is not in the toolkit of agent {agent.id}")

    agent.toolkit.remove(tool)
    _touch(agent)
    session.flush()
    _record_toolkit(session, caller, agent)
    log.info("agent_tool_removed", agent_id=agent.id, tool_id=tool_id)
    return agent


# Sharing.


def list_agent_shares(session: Session, caller: Caller, agent_id: int) -> list[sharing.ShareView]:
    """Return the shares of an agent; only its owner and admins may read them."""
    get_agent_to_change(session, caller, agent_id, lock=False)
    return sharing.list_shares(session, AGENT_SHARES, agent_id)


def share_agent(
    session: Session, caller: Caller, agent_id: int, *, user_id: int | None, everyone: bool
) -> sharing.ShareView:
    """Let one user, or everyone, read and use the agent, never change it."""
    agent = get_agent_to_change(session, caller, agent_id)
    view = sharing.add_share(
        session, AGENT_SHARES, agent.id, agent.owner_user_id, user_id=user_id, everyone=everyone
    )
    _record(session, caller, AuditEvent.AGENT_SHARED, agent.id, sharing.share_detail(view))
    return view


def unshare_agent(session: Session, caller: Caller, agent_id: int, share_id: int) -> None:
    """Delete one share of the agent."""
    agent = get_agent_to_change(session, caller, agent_id)
    view = sharing.remove_share(session, AGENT_SHARES, agent.id, share_id)
    _record(session, caller, AuditEvent.AGENT_UNSHARED, agent.id, sharing.share_detail(view))
