"""Builders shared by the tool, version, category and import tests."""

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llero.barracks.models import Agent, agent_tools
from llero.forge.models import Category, Tool, ToolVersion
from llero.storage.db import Database


def tool_body(name: str = "get_weather", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "description": "Current weather for a city.",
        "parameters": [
            {"name": "city", "type": "string", "required": True, "max_length": 100},
            {"name": "unit", "type": "enum", "enum": ["celsius", "fahrenheit"]},
        ],
    }
    body.update(overrides)
    return body


def create_tool(client: TestClient, name: str = "get_weather", **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/tools", json=tool_body(name, **overrides))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def create_category(client: TestClient, name: str = "Weather") -> dict[str, Any]:
    response = client.post("/api/categories", json={"name": name})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def count_rows(database: Database) -> dict[str, int]:
    with database.reader() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Tool, ToolVersion, Category)
        }


def put_in_toolkit(database: Database, tool_id: int, agent_name: str) -> None:
    """Store an agent whose toolkit contains the tool, as Barracks would."""
    with database.transaction() as session:
        agent = Agent(name=agent_name, provider="openai", model="gpt-test")
        session.add(agent)
        session.flush()
        session.execute(agent_tools.insert().values(agent_id=agent.id, tool_id=tool_id))
