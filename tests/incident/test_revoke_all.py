"""`POST /api/incident/revoke-all` ends every credential at once, access tokens included."""

import json

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from llero.access.roles import Role
from llero.audit.events import AuditEvent
from llero.identity.models import ApiToken, AuthSession, OneTimeToken
from llero.storage.db import Database
from tests.conftest import FixtureUser, MakeUser, create_test_user
from tests.identity.helpers import PASSWORD, bearer, password_hash, sign_in
from tests.incident.helpers import audit_records

REVOKE_ALL = "/api/incident/revoke-all"
CONFIRM = {"confirm": "revoke-all"}


def _signed_in_developer(make_user: MakeUser, client: TestClient) -> tuple[FixtureUser, dict]:
    user = make_user(role=Role.DEVELOPER, mfa=False, password_hash=password_hash())
    tokens = sign_in(client, user.email).json()
    assert "refresh_token" in tokens, tokens
    return user, tokens


def test_revoke_all_rejects_access_tokens_at_once(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    _, tokens = _signed_in_developer(make_user, anonymous_client)
    viewer = make_user(role=Role.VIEWER)
    assert anonymous_client.get("/api/tools", headers=bearer(tokens["access_token"])).is_success

    response = client.post(REVOKE_ALL, json=CONFIRM)

    assert response.status_code == 200, response.text
    for headers in (bearer(tokens["access_token"]), viewer.headers, client.headers):
        assert anonymous_client.get("/api/tools", headers=headers).status_code == 401


def test_revoke_all_ends_refresh_tokens(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    _, tokens = _signed_in_developer(make_user, anonymous_client)

    client.post(REVOKE_ALL, json=CONFIRM)

    refreshed = anonymous_client.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401


def test_revoke_all_ends_api_tokens(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    user = make_user(role=Role.DEVELOPER)
    created = anonymous_client.post(
        "/api/tokens", json={"name": "ci", "scopes": ["tool:read"]}, headers=user.headers
    ).json()
    assert anonymous_client.get("/api/tools", headers=bearer(created["token"])).is_success

    client.post(REVOKE_ALL, json=CONFIRM)

    assert anonymous_client.get("/api/tools", headers=bearer(created["token"])).status_code == 401


def test_revoke_all_ends_enrollment_codes(client: TestClient, anonymous_client: TestClient) -> None:
    created = client.post(
        "/api/users", json={"email": "new@example.com", "display_name": "", "role": "viewer"}
    ).json()

    client.post(REVOKE_ALL, json=CONFIRM)

    enrolled = anonymous_client.post(
        "/api/auth/enroll", json={"code": created["enrollment_code"], "password": PASSWORD}
    )
    assert enrolled.status_code == 401


def test_sign_in_after_revoke_all_works(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    user, _ = _signed_in_developer(make_user, anonymous_client)
    client.post(REVOKE_ALL, json=CONFIRM)

    tokens = sign_in(anonymous_client, user.email).json()

    assert anonymous_client.get("/api/tools", headers=bearer(tokens["access_token"])).is_success


def test_revoke_all_counts_and_audits(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    admin_id = client.get("/api/users/me").json()["id"]
    _signed_in_developer(make_user, anonymous_client)
    _signed_in_developer(make_user, anonymous_client)

    body = client.post(REVOKE_ALL, json=CONFIRM).json()

    # Two sign-ins, plus the sign-in session each of the three fixture users holds.
    assert (body["sessions"], body["api_tokens"]) == (5, 0)
    (recorded,) = audit_records(database, AuditEvent.INCIDENT_REVOKE_ALL)
    assert recorded["actor"] == ("user", str(admin_id))
    detail = json.loads(recorded["detail"])
    assert (detail["sessions"], detail["personal_api"], detail["one_time"]) == (5, 0, 0)
    with database.reader() as session:
        assert session.scalars(select(AuthSession.revoked_reason)).all() == ["incident"] * 5
        assert session.scalars(select(ApiToken).where(ApiToken.revoked_at.is_(None))).all() == []
        unused = select(OneTimeToken).where(OneTimeToken.used_at.is_(None))
        assert session.scalars(unused).all() == []


def test_revoke_all_needs_confirmation(client: TestClient, database: Database) -> None:
    response = client.post(REVOKE_ALL, json={})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body.confirm"
    assert audit_records(database, AuditEvent.INCIDENT_REVOKE_ALL) == []
    assert client.get("/api/users/me").status_code == 200


def test_revoke_all_is_admin_only(anonymous_client: TestClient, make_user: MakeUser) -> None:
    developer = make_user(role=Role.DEVELOPER)

    response = anonymous_client.post(REVOKE_ALL, json=CONFIRM, headers=developer.headers)

    assert response.status_code == 403
    assert anonymous_client.get("/api/tools", headers=developer.headers).is_success


def test_revoke_all_rolls_back_without_audit(
    client: TestClient, app: FastAPI, make_user: MakeUser, database: Database
) -> None:
    user = create_test_user(app, role=Role.VIEWER)
    with database.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE audit_events")
    try:
        response = client.post(REVOKE_ALL, json=CONFIRM)
        survived = client.get("/api/tools", headers=user.headers).status_code
    finally:
        _restore_audit_table(database)

    assert response.status_code == 500
    assert survived == 200


def _restore_audit_table(database: Database) -> None:
    from llero.audit.models import AuditRecord  # noqa: PLC0415

    AuditRecord.__table__.create(database.engine)
