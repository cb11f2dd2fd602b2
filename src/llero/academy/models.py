"""Grants of secrets to agents, and the record of each use of a secret."""

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped

from llero.storage.base import Base, DataClass, UTCDateTime, classified, utc_now

# "provider:" or "webhook:" or "generic:" and a name of at most 64 characters.
PURPOSE_MAX = 80
SESSION_REF_MAX = 128


class SecretGrant(Base):
    """Permission for one agent to use one secret for one purpose.

    Revoking a grant deletes its row; the audit chain keeps the history.
    """

    __tablename__ = "secret_grants"
    __table_args__ = (
        UniqueConstraint(
            "secret_id", "agent_id", "purpose", name="uq_secret_grants_secret_agent_purpose"
        ),
    )

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    secret_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("secrets.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = classified(DataClass.INTERNAL, String(PURPOSE_MAX))
    granted_by_user_id: Mapped[int | None] = classified(
        DataClass.INTERNAL, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)


class SecretUse(Base):
    """One resolution of a secret by an agent: which version, for what, in which session."""

    __tablename__ = "secret_uses"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    secret_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("secrets.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = classified(DataClass.INTERNAL, Integer)
    purpose: Mapped[str] = classified(DataClass.INTERNAL, String(PURPOSE_MAX))
    # The caller's reference to the run or conversation the use belongs to.
    session_ref: Mapped[str] = classified(DataClass.INTERNAL, String(SESSION_REF_MAX))
    used_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
