"""Stored tools, their versions and categories."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, relationship

from llero.storage.base import Base, DataClass, UTCDateTime, classified, utc_now

NAME_MAX = 64
DESCRIPTION_MAX = 4096


class ToolStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    INACTIVE = "inactive"


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    name: Mapped[str] = classified(DataClass.INTERNAL, String(NAME_MAX), unique=True)
    description: Mapped[str] = classified(DataClass.INTERNAL, Text, default="")
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
