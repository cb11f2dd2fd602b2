"""Personal API tokens: shown once, stored as a hash, limited to scopes the owner may delegate,
and refused once revoked, expired, or owned by a disabled user."""

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from llero.access.roles import Role
from llero.crypto import hash_token
from llero.identity.models import ApiToken
from llero.storage.db import Database
from tests.conftest import FixtureUser, MakeUser
from tests.identity.helpers import bearer, freeze_clock


def _create(
    client: TestClient, owner: FixtureUser, scopes: list[str], **extra: object
) -> httpx.Response:
    return client.post(
        "/api/tokens",
        json={"name": "ci", "scopes": scopes, **extra},
        headers=owner.headers,
    )


def _token(client: TestClient, owner: FixtureUser, scopes: list[str], **extra: object) -> str:
    response = _create(client, owner, scopes, **extra)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_token_shown_once_and_stored_hashed(
    anonymous_client: TestClient, developer: FixtureUser, database: Database
) -> None:
    response = _create(anonymous_client, developer, ["tool:read"])

    assert response.status_code == 201
    body = response.json()
    token = body["token"]
    assert token.startswith("llero_pat_")
    assert body["prefix"] == token[:14]
    assert body["scopes"] == ["tool:read"]
    listed = anonymous_client.get("/api/tokens", headers=developer.headers).json()["items"]
    assert [item["id"] for item in listed] == [body["id"]]
    assert "token" not in listed[0]
    with database.reader() as session:
        stored = session.scalars(select(ApiToken)).one()
    assert stored.token_hash == hash_token(token)
    assert token not in repr(stored.__dict__)


def test_token_scope_enforced(anonymous_client: TestClient, developer: FixtureUser) -> None:
    token = _token(anonymous_client, developer, ["tool:read"])

    read = anonymous_client.get("/api/tools", headers=bearer(token))
    write = anonymous_client.post("/api/tools", json={"name": "scoped"}, headers=bearer(token))
    agents = anonymous_client.get("/api/agents", headers=bearer(token))

    assert read.status_code == 200
    assert write.status_code == 403
    assert agents.status_code == 403


def test_token_write_scope_works(anonymous_client: TestClient, developer: FixtureUser) -> None:
    token = _token(anonymous_client, developer, ["tool:create", "tool:read"])

    response = anonymous_client.post("/api/tools", json={"name": "by_token"}, headers=bearer(token))

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("scopes", "problem"),
    [
        (["user:create"], "user:create is not a permission of your role"),
        (["category:create"], "category:create is not a permission of your role"),
        (["api_token:create"], "api_token:create cannot be given to an API token"),
        (["auth:mfa_enroll"], "auth:mfa_enroll cannot be given to an API token"),
        (["auth:signin"], "auth:signin is not a permission of your role"),
    ],
)
def test_scope_beyond_role_rejected(
    anonymous_client: TestClient, developer: FixtureUser, scopes: list[str], problem: str
) -> None:
    response = _create(anonymous_client, developer, ["tool:read", *scopes])

    assert response.status_code == 422
    assert response.json()["details"] == [{"field": "scopes.1", "problem": problem}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": []}, "body.scopes"),
        ({"name": "x", "scopes": ["root:everything"]}, "body.scopes.0"),
        ({"name": "", "scopes": ["tool:read"]}, "body.name"),
        ({"name": "x", "scopes": ["tool:read"], "expires_in_days": 366}, "body.expires_in_days"),
        ({"name": "x", "scopes": ["tool:read"], "expires_in_days": 0}, "body.expires_in_days"),
        ({"name": "x", "scopes": ["tool:read"], "user_id": 1}, "body.user_id"),
    ],
)
def test_invalid_token_request_rejected(
    anonymous_client: TestClient, developer: FixtureUser, body: dict[str, object], field: str
) -> None:
    response = anonymous_client.post("/api/tokens", json=body, headers=developer.headers)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


def test_token_cannot_create_tokens(anonymous_client: TestClient, developer: FixtureUser) -> None:
    token = _token(anonymous_client, developer, ["api_token:read"])

    response = anonymous_client.post(
        "/api/tokens", json={"name": "child", "scopes": ["tool:read"]}, headers=bearer(token)
    )

    assert response.status_code == 403


def test_revoked_token_refused(anonymous_client: TestClient, developer: FixtureUser) -> None:
    created = _create(anonymous_client, developer, ["tool:read"]).json()

    revoked = anonymous_client.delete(f"/api/tokens/{created['id']}", headers=developer.headers)

    assert revoked.status_code == 204
    response = anonymous_client.get("/api/tools", headers=bearer(created["token"]))
    assert response.status_code == 401


def test_expired_token_refused(
    app: FastAPI, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    clock = freeze_clock(app)
    developer_token = app.state.identity.tokens.issue_access_token(
        subject=str(developer.id), role="developer", session_id=str(developer.session_id)
    )
    token = anonymous_client.post(
        "/api/tokens",
        json={"name": "short", "scopes": ["tool:read"], "expires_in_days": 1},
        headers=bearer(developer_token.token.reveal()),
    ).json()["token"]
    clock.advance(timedelta(days=1))

    assert anonymous_client.get("/api/tools", headers=bearer(token)).status_code == 401


def test_disabled_owner_token_refused(
    client: TestClient, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    token = _token(anonymous_client, developer, ["tool:read"])

    client.patch(f"/api/users/{developer.id}", json={"status": "disabled"})
    client.patch(f"/api/users/{developer.id}", json={"status": "active"})

    # Disabling revokes the tokens, so enabling the account again does not bring them back.
    assert anonymous_client.get("/api/tools", headers=bearer(token)).status_code == 401


def test_demoted_owner_token_shrinks(
    client: TestClient, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    token = _token(anonymous_client, developer, ["tool:create", "tool:read"])

    client.patch(f"/api/users/{developer.id}", json={"role": "viewer"})

    create = anonymous_client.post("/api/tools", json={"name": "after"}, headers=bearer(token))
    read = anonymous_client.get("/api/tools", headers=bearer(token))
    assert create.status_code == 403
    assert read.status_code == 200


def test_token_use_recorded(
    app: FastAPI, anonymous_client: TestClient, developer: FixtureUser, database: Database
) -> None:
    clock = freeze_clock(app)
    token = _token(anonymous_client, developer, ["tool:read"])
    anonymous_client.get("/api/tools", headers=bearer(token))
    first = clock()
    clock.advance(timedelta(seconds=30))
    anonymous_client.get("/api/tools", headers=bearer(token))

    with database.reader() as session:
        assert session.scalars(select(ApiToken.last_used_at)).one() == first
    clock.advance(timedelta(seconds=31))
    anonymous_client.get("/api/tools", headers=bearer(token))
    with database.reader() as session:
        assert session.scalars(select(ApiToken.last_used_at)).one() == clock()


def test_other_users_token_not_found(
    anonymous_client: TestClient, developer: FixtureUser, make_user: MakeUser
) -> None:
    other = make_user(role=Role.DEVELOPER)
    theirs = _create(anonymous_client, other, ["tool:read"]).json()

    response = anonymous_client.delete(f"/api/tokens/{theirs['id']}", headers=developer.headers)

    assert response.status_code == 404
    assert anonymous_client.get("/api/tools", headers=bearer(theirs["token"])).status_code == 200
    assert anonymous_client.get("/api/tokens", headers=developer.headers).json()["items"] == []


@pytest.mark.parametrize(
    "token",
    ["llero_pat_" + "0" * 49, "llero_pat_short", "llero_pat_" + "!" * 49],
)
def test_unknown_or_malformed_api_token_refused(anonymous_client: TestClient, token: str) -> None:
    assert anonymous_client.get("/api/tools", headers=bearer(token)).status_code == 401
