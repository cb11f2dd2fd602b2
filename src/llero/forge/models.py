"""Stored tools, their versions and categories."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, relationship

from llero.storage.base import Base, DataClass, UTCDateTime, classified, utc_now

NAME_MAX = 64
DESCRIPTION_MAX = 4096


def owner_column() -> Mapped[int | None]:
    """Return the column of an object's owner; the object passes to the system if they go."""
    column: Mapped[int | None] = classified(
        DataClass.INTERNAL,
        ForeignKey("users.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    )
    return column


def share_target_check() -> CheckConstraint:
    """Return the rule that a share names either one user or everyone, never both or neither."""
    return CheckConstraint(
        "(everyone AND user_id IS NULL) OR (NOT everyone AND user_id IS NOT NULL)",
        name="user_or_everyone",
    )


class ToolStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    INACTIVE = "inactive"


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    name: Mapped[str] = classified(DataClass.INTERNAL, String(NAME_MAX), unique=True)
    description: Mapped[str] = classified(DataClass.INTERNAL, Text, default="")
    # The admin who created it; None for the CLI and for rows older than ownership.
    owner_user_id: Mapped[int | None] = owner_column()
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)


class Tool(Base):
    """The current state of a tool; every earlier state is kept in ``ToolVersion``."""

    __tablename__ = "tools"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    name: Mapped[str] = classified(DataClass.INTERNAL, String(NAME_MAX), unique=True)
    # The name the spec had before import renamed it to fit the providers' name pattern.
    original_name: Mapped[str | None] = classified(DataClass.INTERNAL, String(256), nullable=True)
    description: Mapped[str] = classified(DataClass.INTERNAL, Text, default="")
    category_id: Mapped[int | None] = classified(
        DataClass.INTERNAL,
        ForeignKey("categories.id", ondelete="RESTRICT"),
        nullable=True,
        index=True,
    )
    status: Mapped[str] = classified(DataClass.INTERNAL, String(16), default=ToolStatus.DRAFT)
    # The list of parameters as `llero.forge.spec.Parameter` dumps them.
    parameters: Mapped[list[dict[str, Any]]] = classified(DataClass.INTERNAL, JSON, default=list)
    version: Mapped[int] = classified(DataClass.INTERNAL, Integer, default=1)
    # The creator; None means the system (the CLI, or a row older than ownership).
    owner_user_id: Mapped[int | None] = owner_column()
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)

    category: Mapped[Category | None] = relationship(lazy="joined")


class ToolVersion(Base):
    """A snapshot of a tool as it was at one version."""

    __tablename__ = "tool_versions"
    __table_args__ = (UniqueConstraint("tool_id", "version", name="uq_tool_versions_tool_version"),)

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    tool_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("tools.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = classified(DataClass.INTERNAL, Integer)
    # name, description, category, status and parameters at this version.
    snapshot: Mapped[dict[str, Any]] = classified(DataClass.INTERNAL, JSON)
    # What made this version: "created", "updated", "imported", "restored from version 2".
    change: Mapped[str] = classified(DataClass.INTERNAL, String(128))
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)


class ShareColumns:
    """The columns of a share, shared by tool and agent shares: whom it grants, and when."""

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    # None when the share is for everyone.
    user_id: Mapped[int | None] = classified(
        DataClass.INTERNAL,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    )
    everyone: Mapped[bool] = classified(DataClass.INTERNAL, Boolean, default=False)
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)


class ToolShare(ShareColumns, Base):
    """Read access to a tool for one user, or for everyone when ``everyone`` is set.

    At most one share names a given user, and at most one names everyone; the service checks
    the second rule while it holds the tool's row lock.
    """

    __tablename__ = "tool_shares"
    __table_args__ = (
        UniqueConstraint("tool_id", "user_id", name="uq_tool_shares_tool_user"),
        share_target_check(),
    )

    tool_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("tools.id", ondelete="CASCADE"), index=True
    )
