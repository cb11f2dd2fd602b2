"""Stored Command Center sessions, their messages, and how each tool runs."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped

# The tables these models reference by name must be in the metadata before any of them is used.
from llero.barracks import models as _barracks_models  # noqa: F401
from llero.identity import models as _identity_models  # noqa: F401
from llero.storage.base import AtRest, Base, DataClass, UTCDateTime, classified, utc_now
from llero.vault import models as _vault_models  # noqa: F401

TITLE_MAX = 200
URL_MAX = 2048
TOOL_CALL_ID_MAX = 128


class ChatStatus(StrEnum):
    # The last run ended waiting for the client to post tool results.
    AWAITING_TOOL_RESULTS = "awaiting_tool_results"
    IDLE = "idle"
    RUNNING = "running"


class ToolRunner(Base):
    """How a tool runs in sessions: by a webhook Llero calls, or by the client."""

    __tablename__ = "tool_runners"

    tool_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("tools.id", ondelete="CASCADE"), primary_key=True
    )
    mode: Mapped[str] = classified(DataClass.INTERNAL, String(16))
    url: Mapped[str | None] = classified(DataClass.INTERNAL, String(URL_MAX), nullable=True)
    # The webhook signing secret; a grant to the agent is still needed to use it.
    signing_secret_id: Mapped[int | None] = classified(
        DataClass.INTERNAL,
        ForeignKey("secrets.id", ondelete="SET NULL"),
        nullable=True,
    )
    updated_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)


class ChatSession(Base):
    """A conversation of one user with one agent."""

    __tablename__ = "chat_sessions"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    owner_user_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = classified(DataClass.INTERNAL, String(TITLE_MAX), default="")
    status: Mapped[str] = classified(DataClass.INTERNAL, String(32), default=ChatStatus.IDLE)
    message_count: Mapped[int] = classified(DataClass.INTERNAL, Integer, default=0)
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    expires_at: Mapped[datetime | None] = classified(DataClass.INTERNAL, UTCDateTime, nullable=True)


class ChatMessage(Base):
    """One message of a session. Its text and tool calls are sealed in one envelope.

    The envelope is bound to ("chat_messages", "<session id>:<position>", "body", 1), which is
    known before the row is inserted, so a message is sealed and stored in one step.
    """

    __tablename__ = "chat_messages"
    __table_args__ = (UniqueConstraint("session_id", "position"),)

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    session_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("chat_sessions.id", ondelete="CASCADE")
    )
    position: Mapped[int] = classified(DataClass.INTERNAL, Integer)
    role: Mapped[str] = classified(DataClass.INTERNAL, String(16))
    body_envelope: Mapped[bytes] = classified(
        DataClass.CONFIDENTIAL, LargeBinary, at_rest=AtRest.ENVELOPE
    )
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
