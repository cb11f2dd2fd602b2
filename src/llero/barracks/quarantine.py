"""Quarantine: stop a suspect agent from running and from using its grants until an admin
releases it.

A quarantined agent keeps its toolkit and its grants, so releasing it restores exactly what it
had. Suspending the grants is the vault's part: before it resolves a secret for an agent it
calls ``check_may_use_secrets``, which refuses while the agent is quarantined.
"""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.barracks.models import Agent, AgentStatus
from llero.barracks.service import ID_MAX
from llero.errors import InvalidInput, NotFound, Refused, Violation
from llero.logs import get_logger

log = get_logger("llero.barracks")

REASON_MAX = 200


class AgentQuarantined(Refused):
    """The agent is quarantined, so it may neither run nor use its grants."""

    code = "agent_quarantined"

    def __init__(self, agent_id: int) -> None:
        super().__init__(
            f"agent {agent_id} is quarantined; an admin must release it before it can run or "
            "use its grants"
        )
        self.agent_id = agent_id


def _agent(session: Session, agent_id: int) -> Agent:
    # Quarantine is an admin action on any agent, so no ownership check applies.
    agent = session.get(Agent, agent_id) if 1 <= agent_id <= ID_MAX else None
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    return agent


def find_agent(session: Session, name_or_id: str) -> Agent:
    """Return the agent named ``name_or_id``, or else the agent with that id; raise NotFound."""
    agent = session.scalar(select(Agent).where(Agent.name == name_or_id))
    if agent is None and name_or_id.isascii() and name_or_id.isdigit():
        agent = session.get(Agent, int(name_or_id)) if len(name_or_id) < 11 else None
    if agent is None:
        raise NotFound(f"no agent has the name or id {name_or_id!r}")
    return agent


def quarantine_agent(
    session: Session, origin: Origin, agent_id: int, *, reason: str, now: datetime
) -> Agent:
    """Quarantine the agent and record agent:quarantined; raise Refused if it already is."""
    reason = checked_reason(reason)
    agent = _agent(session, agent_id)
    if agent.status == AgentStatus.QUARANTINED:
        raise Refused(f"agent {agent.id} is already quarantined")

    previous = agent.status
    agent.status = AgentStatus.QUARANTINED
    agent.updated_at = now
    session.flush()
    record_as(
        session,
        origin,
        AuditEvent.AGENT_QUARANTINED,
        Target.of("agent", agent.id),
        {"name": agent.name, "previous_status": previous, "reason": reason},
    )
    log.warning("agent:quarantined", agent_id=agent.id)
    return agent


def release_agent(session: Session, origin: Origin, agent_id: int, *, now: datetime) -> Agent:
    """Lift the quarantine: the agent becomes active again with its toolkit and grants."""
    agent = _agent(session, agent_id)
    if agent.status != AgentStatus.QUARANTINED:
        raise Refused(f"agent {agent.id} is not quarantined")

    agent.status = AgentStatus.ACTIVE
    agent.updated_at = now
    session.flush()
    record_as(
        session,
        origin,
        AuditEvent.AGENT_RELEASED,
        Target.of("agent", agent.id),
        {"name": agent.name},
    )
    log.warning("agent:released", agent_id=agent.id)
    return agent


def check_may_use_secrets(session: Session, agent_id: int) -> None:
    """Raise AgentQuarantined while the agent is quarantined, and NotFound for an unknown agent.

    The vault calls this before it resolves a secret for an agent through a grant.
    """
    status = session.scalar(select(Agent.status).where(Agent.id == agent_id))
    if status is None:
        raise NotFound(f"agent {agent_id} not found")
    if status == AgentStatus.QUARANTINED:
        raise AgentQuarantined(agent_id)


def checked_reason(reason: str, max_length: int = REASON_MAX) -> str:
    """Return the reason without surrounding whitespace; raise InvalidInput naming ``reason``."""
    text = reason.strip()
    if len(text) > max_length or not text.isprintable():
        problem = f"must be at most {max_length} printable characters"
        raise InvalidInput(f"reason {problem}", details=[Violation("reason", problem)])
    return text
