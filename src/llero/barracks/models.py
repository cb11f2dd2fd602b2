"""Stored agents and their toolkits."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, relationship

from llero.forge.models import (
    DESCRIPTION_MAX,
    NAME_MAX,
    ShareColumns,
    Tool,
    owner_column,
    share_target_check,
)
from llero.storage.base import Base, DataClass, UTCDateTime, classified, utc_now

SYSTEM_PROMPT_MAX = 32_768


class AgentStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    QUARANTINED = "quarantined"


# A tool in a toolkit cannot be deleted (RESTRICT): the delete is refused with the agents named.
agent_tools = Table(
    "agent_tools",
    Base.metadata,
    Column(
        "agent_id",
        ForeignKey("agents.id", ondelete="CASCADE"),
        primary_key=True,
        info={"data_class": DataClass.INTERNAL},
    ),
    Column(
        "tool_id",
        ForeignKey("tools.id", ondelete="RESTRICT"),
        primary_key=True,
        index=True,
        info={"data_class": DataClass.INTERNAL},
    ),
)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    name: Mapped[str] = classified(DataClass.INTERNAL, String(NAME_MAX), unique=True)
    description: Mapped[str] = classified(DataClass.INTERNAL, Text, default="")
    system_prompt: Mapped[str] = classified(DataClass.INTERNAL, Text, default="")
    # Plain text until providers are configured objects; then these become references.
    provider: Mapped[str] = classified(DataClass.INTERNAL, String(NAME_MAX))
    model: Mapped[str] = classified(DataClass.INTERNAL, String(128))
    status: Mapped[str] = classified(DataClass.INTERNAL, String(16), default=AgentStatus.ACTIVE)
    expires_at: Mapped[datetime | None] = classified(DataClass.INTERNAL, UTCDateTime, nullable=True)
    # The creator; None means the system (a row older than ownership).
    owner_user_id: Mapped[int | None] = owner_column()
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)

    toolkit: Mapped[list[Tool]] = relationship(
        secondary=agent_tools, lazy="selectin", order_by=Tool.id
    )


class AgentShare(ShareColumns, Base):
    """The right to read and use an agent, for one user or for everyone (``everyone``)."""

    __tablename__ = "agent_shares"
    __table_args__ = (
        UniqueConstraint("agent_id", "user_id", name="uq_agent_shares_agent_user"),
        share_target_check(),
    )

    agent_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )


__all__ = ["DESCRIPTION_MAX", "Agent", "AgentShare", "AgentStatus", "agent_tools"]
