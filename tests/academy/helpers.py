"""Steps shared by the secret tests: agents inserted with the ORM, secrets made over HTTP, and
the vault of the app under test."""

from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.barracks.models import Agent, AgentStatus
from llero.storage.db import Database
from llero.vault.service import VaultService

PLANTED = "sk-live-PLANTED-3f9c1a7e5b2d4c6e8a0f1b3d"
PLANTED_ROTATED = "sk-live-PLANTED-ROTATED-9e8d7c6b5a4f3e2d"


def add_agent(
    database: Database,
    name: str,
    *,
    provider: str = "openai",
    status: AgentStatus = AgentStatus.ACTIVE,
) -> int:
    with database.transaction() as session:
        agent = Agent(name=name, provider=provider, model="gpt-test", status=status)
        session.add(agent)
        session.flush()
        return agent.id


def create_secret(
    client: TestClient,
    headers: dict[str, str] | None = None,
    *,
    name: str = "openai-prod",
    value: str = PLANTED,
    **fields: Any,
) -> httpx.Response:
    body = {"name": name, "kind": "provider_api_key", "value": value, **fields}
    return client.post("/api/secrets", json=body, headers=headers)


def vault_of(app: FastAPI) -> VaultService:
    vault: VaultService = app.state.vault
    return vault
