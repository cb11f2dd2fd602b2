"""Tools for the toolkit tests, inserted with the ORM so these tests do not depend on the forge
service."""

import os
from dataclasses import dataclass

import pytest

from llero.audit.keys import AuditKeys, attach_keys_to_factory
from llero.forge.models import Tool, ToolStatus
from llero.storage.db import Database


@dataclass(frozen=True)
class ToolIds:
    active: int
    other_active: int
    draft: int
    inactive: int


@pytest.fixture
def tool_ids(database: Database) -> ToolIds:
    with database.transaction() as session:
        tools = [
            Tool(name="get_weather", status=ToolStatus.ACTIVE),
            Tool(name="send_email", status=ToolStatus.ACTIVE),
            Tool(name="draft_tool", status=ToolStatus.DRAFT),
            Tool(name="retired_tool", status=ToolStatus.INACTIVE),
        ]
        session.add_all(tools)
        session.flush()
        return ToolIds(*(tool.id for tool in tools))


@pytest.fixture(autouse=True)
def _audit_keys(database: Database) -> None:
    """Give the test's sessions audit keys, as the app does, so services can record events."""
    attach_keys_to_factory(database.sessions, AuditKeys.from_material(os.urandom(32)))
