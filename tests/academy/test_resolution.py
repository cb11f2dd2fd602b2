"""resolve_for_agent, the only way a value leaves the vault. It serves a granted, runnable agent,
for its purpose, before the secret expires, and records and audits each use."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from llero.academy.models import SecretUse
from llero.academy.resolution import DenialReason, ResolutionDenied, resolve_for_agent
from llero.audit.service import AuditFilter, query
from llero.barracks.models import Agent, AgentStatus
from llero.crypto import Secret
from llero.errors import InvalidInput
from llero.storage.db import Database
from tests.academy.helpers import PLANTED, PLANTED_ROTATED, add_agent, create_secret, vault_of


def _resolve(
    app: FastAPI,
    agent_id: int,
    secret_id: int,
    purpose: str = "provider:openai",
    *,
    now: datetime | None = None,
    session_ref: str = "run-1",
) -> Secret[str]:
    database: Database = app.state.database
    with database.transaction() as session:
        return resolve_for_agent(
            session,
            vault_of(app),
            agent_id=agent_id,
            secret_id=secret_id,
            purpose=purpose,
            session_ref=session_ref,
            now=now,
        )


def _denial(app: FastAPI, agent_id: int, secret_id: int, **options: object) -> DenialReason:
    with pytest.raises(ResolutionDenied) as caught:
        _resolve(app, agent_id, secret_id, **options)  # type: ignore[arg-type]
    return caught.value.reason


@pytest.fixture
def granted(client: TestClient, database: Database) -> tuple[int, int]:
    """An agent and a provider key granted to it for provider:openai, as (agent id, secret id)."""
    agent_id = add_agent(database, "writer")
    secret_id = create_secret(client).json()["id"]
    response = client.post(
        f"/api/secrets/{secret_id}/grants",
        json={"agent_id": agent_id, "purpose": "provider:openai"},
    )
    assert response.status_code == 201
    return agent_id, secret_id


def test_granted_agent_gets_current_value(
    app: FastAPI, client: TestClient, granted: tuple[int, int]
) -> None:
    agent_id, secret_id = granted

    first = _resolve(app, agent_id, secret_id)
    client.post(f"/api/secrets/{secret_id}/versions", json={"value": PLANTED_ROTATED})
    second = _resolve(app, agent_id, secret_id)

    assert first.reveal() == PLANTED
    assert second.reveal() == PLANTED_ROTATED


def test_use_recorded_and_audited(
    app: FastAPI, client: TestClient, database: Database, granted: tuple[int, int]
) -> None:
    agent_id, secret_id = granted

    _resolve(app, agent_id, secret_id, session_ref="conversation-42")

    with database.reader() as session:
        uses = session.scalars(select(SecretUse)).all()
        records = query(session, AuditFilter(target_kind="secret")).records
    assert [(use.agent_id, use.secret_id, use.version) for use in uses] == [
        (agent_id, secret_id, 1)
    ]
    assert uses[0].purpose == "provider:openai"
    assert uses[0].session_ref == "conversation-42"
    used = records[0]
    assert used.event == "secret:used"
    assert (used.actor_kind, used.actor_id) == ("agent", str(agent_id))
    assert json.loads(used.detail) == {
        "agent_id": agent_id,
        "purpose": "provider:openai",
        "session_ref": "conversation-42",
        "version": 1,
    }
    assert PLANTED not in used.detail
    assert client.get(f"/api/secrets/{secret_id}").json()["last_used_at"] is not None


def test_rolled_back_resolution_keeps_no_use(
    app: FastAPI, database: Database, granted: tuple[int, int]
) -> None:
    agent_id, secret_id = granted

    def resolve_then_fail() -> None:
        with database.transaction() as session:
            resolve_for_agent(
                session,
                vault_of(app),
                agent_id=agent_id,
                secret_id=secret_id,
                purpose="provider:openai",
                session_ref="run-1",
            )
            raise RuntimeError("the provider call failed")

    with pytest.raises(RuntimeError):
        resolve_then_fail()

    with database.reader() as session:
        assert session.scalars(select(SecretUse)).all() == []
        assert query(session, AuditFilter(events=())).records[0].event != "secret:used"


def test_ungranted_agent_denied(app: FastAPI, database: Database, granted: tuple[int, int]) -> None:
    _, secret_id = granted
    stranger = add_agent(database, "stranger")

    assert _denial(app, stranger, secret_id) is DenialReason.NOT_GRANTED


def test_denial_says_how_to_grant(
    app: FastAPI, database: Database, granted: tuple[int, int]
) -> None:
    _, secret_id = granted
    stranger = add_agent(database, "stranger")

    with pytest.raises(ResolutionDenied) as caught:
        _resolve(app, stranger, secret_id)

    assert caught.value.message == (
        f"agent {stranger} may not use secret {secret_id}: not_granted (the agent holds no "
        "grant of this secret for this purpose; the secret's owner or an admin grants it with "
        f"POST /api/secrets/{secret_id}/grants)"
    )


def test_other_purpose_denied(app: FastAPI, granted: tuple[int, int]) -> None:
    agent_id, secret_id = granted

    assert _denial(app, agent_id, secret_id, purpose="provider:anthropic") is (
        DenialReason.NOT_GRANTED
    )


def test_revoked_grant_stops_resolution(
    app: FastAPI, client: TestClient, granted: tuple[int, int]
) -> None:
    agent_id, secret_id = granted
    _resolve(app, agent_id, secret_id)
    (grant,) = client.get(f"/api/secrets/{secret_id}/grants").json()["items"]

    client.delete(f"/api/secrets/{secret_id}/grants/{grant['id']}")

    assert _denial(app, agent_id, secret_id) is DenialReason.NOT_GRANTED


def test_expired_secret_denied(app: FastAPI, client: TestClient, database: Database) -> None:
    agent_id = add_agent(database, "writer")
    expiry = datetime.now(UTC) + timedelta(hours=1)
    secret_id = create_secret(client, expires_at=expiry.isoformat()).json()["id"]
    client.post(
        f"/api/secrets/{secret_id}/grants",
        json={"agent_id": agent_id, "purpose": "provider:openai"},
    )

    assert _resolve(app, agent_id, secret_id).reveal() == PLANTED
    later = expiry + timedelta(seconds=1)
    assert _denial(app, agent_id, secret_id, now=later) is DenialReason.SECRET_EXPIRED


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (AgentStatus.QUARANTINED, DenialReason.AGENT_QUARANTINED),
        (AgentStatus.DISABLED, DenialReason.AGENT_NOT_ACTIVE),
    ],
)
def test_agent_not_active_denied(
    app: FastAPI,
    database: Database,
    granted: tuple[int, int],
    status: AgentStatus,
    reason: DenialReason,
) -> None:
    agent_id, secret_id = granted
    with database.transaction() as session:
        session.execute(update(Agent).where(Agent.id == agent_id).values(status=status))

    assert _denial(app, agent_id, secret_id) is reason


def test_expired_agent_denied(app: FastAPI, database: Database, granted: tuple[int, int]) -> None:
    agent_id, secret_id = granted
    expiry = datetime.now(UTC) + timedelta(minutes=5)
    with database.transaction() as session:
        session.execute(update(Agent).where(Agent.id == agent_id).values(expires_at=expiry))

    assert _denial(app, agent_id, secret_id, now=expiry) is DenialReason.AGENT_EXPIRED


def test_agent_moved_to_other_provider_denied(
    app: FastAPI, database: Database, granted: tuple[int, int]
) -> None:
    agent_id, secret_id = granted
    with database.transaction() as session:
        session.execute(update(Agent).where(Agent.id == agent_id).values(provider="anthropic"))

    assert _denial(app, agent_id, secret_id) is DenialReason.WRONG_PROVIDER


def test_missing_agent_and_secret_denied(app: FastAPI, granted: tuple[int, int]) -> None:
    agent_id, secret_id = granted

    assert _denial(app, 999_999, secret_id) is DenialReason.AGENT_NOT_FOUND
    assert _denial(app, agent_id, 999_999) is DenialReason.NOT_GRANTED


def test_deleted_secret_denied(app: FastAPI, client: TestClient, granted: tuple[int, int]) -> None:
    agent_id, secret_id = granted

    client.delete(f"/api/secrets/{secret_id}")

    assert _denial(app, agent_id, secret_id) is DenialReason.NOT_GRANTED


@pytest.mark.parametrize("session_ref", ["", "has space", "x" * 129, "line\nbreak"])
def test_malformed_session_ref_rejected(
    app: FastAPI, granted: tuple[int, int], session_ref: str
) -> None:
    agent_id, secret_id = granted

    with pytest.raises(InvalidInput, match="session_ref"):
        _resolve(app, agent_id, secret_id, session_ref=session_ref)


def test_denial_logged_without_value(
    app: FastAPI,
    database: Database,
    granted: tuple[int, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, secret_id = granted
    stranger = add_agent(database, "stranger")

    _denial(app, stranger, secret_id)

    logged = capsys.readouterr().err
    assert '"event": "secret_resolution_denied"' in logged
    assert '"reason": "not_granted"' in logged
    assert PLANTED not in logged
