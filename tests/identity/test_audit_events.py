"""Every identity action writes its audit event in the action's own transaction: with the actor,
the target, the client address and the request id, without any password, token, code or seed,
and when the event cannot be written the action does not happen."""

from collections.abc import Callable
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llero.access.roles import Role
from llero.audit import service as audit_service
from llero.audit.events import ActorKind, AuditEvent
from llero.audit.keys import keys_of
from llero.audit.models import AuditRecord
from llero.audit.redaction import audit_hash
from llero.audit.service import AuditFilter, export_jsonl, query
from llero.identity.models import ApiToken, AuthSession, User
from llero.storage.db import Database
from tests.conftest import FixtureUser, MakeUser
from tests.identity.helpers import (
    PASSWORD,
    bearer,
    freeze_clock,
    password_hash,
    sign_in,
    totp_code,
    user_row,
)

CLIENT = "testclient"
WRONG_PASSWORD = "plum kettle orbit lantern harbor"


def _records(database: Database, *events: AuditEvent) -> list[AuditRecord]:
    """Return the records of ``events``, oldest first."""
    with database.reader() as session:
        page = query(session, AuditFilter(events=events), newest_first=False, limit=1000)
        for found in page.records:
            session.expunge(found)
        return page.records


def _only(database: Database, event: AuditEvent) -> AuditRecord:
    (found,) = _records(database, event)
    return found


def _assert_request(found: AuditRecord, response: httpx.Response) -> None:
    assert found.client_address == CLIENT
    assert found.request_id == response.headers["X-Request-ID"]


def _assert_by_user(found: AuditRecord, actor_id: int) -> None:
    assert found.actor_kind == ActorKind.USER
    assert found.actor_id == str(actor_id)


def _audit_hash(database: Database, value: str) -> str:
    with database.reader() as session:
        return audit_hash(value, keys_of(session))


def _signed_in(client: TestClient, user: FixtureUser) -> dict[str, Any]:
    response = sign_in(client, user.email)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _developer(make_user: MakeUser) -> FixtureUser:
    return make_user(role=Role.DEVELOPER, mfa=False, password_hash=password_hash())


def test_signin_success_recorded(
    anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    user = _developer(make_user)

    response = sign_in(anonymous_client, user.email)

    found = _only(database, AuditEvent.USER_LOGIN_SUCCEEDED)
    _assert_by_user(found, user.id)
    _assert_request(found, response)
    assert (found.target_kind, found.target_id) == ("user", str(user.id))
    assert found.detail_data() == {
        "factors": ["password"],
        "session": response.json()["session_id"],
    }


def test_wrong_password_recorded(
    anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    user = _developer(make_user)

    response = sign_in(anonymous_client, user.email, WRONG_PASSWORD)

    found = _only(database, AuditEvent.USER_LOGIN_FAILED)
    _assert_by_user(found, user.id)
    _assert_request(found, response)
    assert found.detail_data() == {
        "email_hash": _audit_hash(database, user.email),
        "factor": "password",
        "reason": "wrong_password",
    }


def test_unknown_email_recorded_hashed(anonymous_client: TestClient, database: Database) -> None:
    response = sign_in(anonymous_client, "Nobody@Example.com")

    found = _only(database, AuditEvent.USER_LOGIN_FAILED)
    assert (found.actor_kind, found.actor_id) == (ActorKind.SYSTEM, "llero")
    assert found.target_kind is None
    _assert_request(found, response)
    assert found.detail_data()["reason"] == "unknown_account"
    assert found.detail_data()["email_hash"] == _audit_hash(database, "nobody@example.com")
    assert "nobody" not in found.detail.lower()


def test_second_factor_recorded(
    app: FastAPI, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    clock = freeze_clock(app)
    user = make_user(role=Role.ADMIN, mfa=True, password_hash=password_hash())
    challenge = sign_in(anonymous_client, user.email).json()["challenge"]
    right = totp_code(database, user.id, clock())
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    anonymous_client.post("/api/auth/signin/mfa", json={"challenge": challenge, "code": wrong})
    anonymous_client.post("/api/auth/signin/mfa", json={"challenge": challenge, "code": right})

    failed = _only(database, AuditEvent.USER_LOGIN_FAILED)
    assert failed.detail_data()["reason"] == "wrong_second_factor"
    assert failed.detail_data()["factor"] == "totp"
    succeeded = _only(database, AuditEvent.USER_LOGIN_SUCCEEDED)
    assert succeeded.detail_data()["factors"] == ["password", "totp"]
    _assert_by_user(succeeded, user.id)


def test_signout_recorded(
    anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    user = _developer(make_user)
    tokens = _signed_in(anonymous_client, user)

    response = anonymous_client.post(
        "/api/auth/signout", json={"refresh_token": tokens["refresh_token"]}
    )

    found = _only(database, AuditEvent.USER_LOGOUT)
    _assert_by_user(found, user.id)
    _assert_request(found, response)
    assert (found.target_kind, found.target_id) == ("session", str(tokens["session_id"]))


def test_refresh_reuse_recorded(
    anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    user = _developer(make_user)
    tokens = _signed_in(anonymous_client, user)
    body = {"refresh_token": tokens["refresh_token"]}
    assert anonymous_client.post("/api/auth/refresh", json=body).status_code == 200

    replayed = anonymous_client.post("/api/auth/refresh", json=body)

    assert replayed.status_code == 401
    found = _only(database, AuditEvent.TOKEN_FAMILY_REVOKED)
    assert found.actor_kind == ActorKind.SYSTEM
    _assert_request(found, replayed)
    assert (found.target_kind, found.target_id) == ("session", str(tokens["session_id"]))
    assert found.detail_data() == {"reason": "refresh_token_reused", "user_id": user.id}


def test_user_admin_actions_recorded(
    client: TestClient, admin: FixtureUser, make_user: MakeUser, database: Database
) -> None:
    created = client.post(
        "/api/users", json={"email": "dev@example.com", "display_name": "Dev", "role": "developer"}
    )
    user_id = created.json()["user"]["id"]
    promoted = client.patch(f"/api/users/{user_id}", json={"role": "viewer"})
    other = _developer(make_user)
    _signed_in(client, other)
    disabled = client.patch(f"/api/users/{other.id}", json={"status": "disabled"})

    for event in (AuditEvent.USER_CREATED, AuditEvent.USER_ENROLLMENT_CODE_ISSUED):
        found = [item for item in _records(database, event) if item.target_id == str(user_id)]
        assert len(found) == 1
        _assert_by_user(found[0], admin.id)
        _assert_request(found[0], created)
    revoked = _only(database, AuditEvent.ROLE_REVOKED)
    granted = _only(database, AuditEvent.ROLE_GRANTED)
    assert revoked.detail_data() == {"role": "developer"}
    assert granted.detail_data() == {"role": "viewer"}
    _assert_request(granted, promoted)
    status = _only(database, AuditEvent.USER_STATUS_CHANGED)
    _assert_by_user(status, admin.id)
    _assert_request(status, disabled)
    assert status.detail_data() == {"from": "active", "to": "disabled"}
    session_revoked = _only(database, AuditEvent.SESSION_REVOKED)
    assert (session_revoked.target_kind, session_revoked.target_id) == ("user", str(other.id))
    # The fixture's own session and the sign-in above.
    assert session_revoked.detail_data() == {"reason": "user_disabled", "sessions_revoked": 2}
    _assert_request(session_revoked, disabled)


def test_session_revocations_recorded(
    client: TestClient,
    admin: FixtureUser,
    anonymous_client: TestClient,
    make_user: MakeUser,
    database: Database,
) -> None:
    user = _developer(make_user)
    first = _signed_in(anonymous_client, user)
    _signed_in(anonymous_client, user)

    own = anonymous_client.delete(
        f"/api/auth/sessions/{first['session_id']}", headers=bearer(first["access_token"])
    )
    everything = client.post(f"/api/users/{user.id}/sessions/revoke")

    assert own.status_code == 204
    by_user, by_admin = _records(database, AuditEvent.SESSION_REVOKED)
    _assert_by_user(by_user, user.id)
    _assert_request(by_user, own)
    assert by_user.detail_data()["reason"] == "revoked_by_user"
    assert (by_user.target_kind, by_user.target_id) == ("session", str(first["session_id"]))
    _assert_by_user(by_admin, admin.id)
    _assert_request(by_admin, everything)
    assert (by_admin.target_kind, by_admin.target_id) == ("user", str(user.id))
    # The fixture's own session and the second sign-in.
    assert by_admin.detail_data() == {"reason": "revoked_by_admin", "sessions_revoked": 2}


def test_own_account_actions_recorded(
    app: FastAPI, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    user = _developer(make_user)
    headers = bearer(user.access_token)

    profile = anonymous_client.patch(
        "/api/users/me", headers=headers, json={"display_name": "Secret Agent"}
    )
    started = anonymous_client.post("/api/auth/mfa/totp", headers=headers)
    code = pyotp.parse_uri(started.json()["provisioning_uri"]).at(app.state.identity.now())
    confirmed = anonymous_client.post(
        "/api/auth/mfa/totp/confirm", headers=headers, json={"code": code}
    )
    created = anonymous_client.post(
        "/api/tokens", headers=headers, json={"name": "ci", "scopes": ["tool:read"]}
    )
    token_id = created.json()["id"]
    revoked = anonymous_client.delete(f"/api/tokens/{token_id}", headers=headers)

    expected = [
        (AuditEvent.USER_PROFILE_UPDATED, profile, ("user", str(user.id))),
        (AuditEvent.USER_MFA_ENABLED, confirmed, ("user", str(user.id))),
        (AuditEvent.API_TOKEN_CREATED, created, ("api_token", str(token_id))),
        (AuditEvent.API_TOKEN_REVOKED, revoked, ("api_token", str(token_id))),
    ]
    for event, response, target in expected:
        found = _only(database, event)
        _assert_by_user(found, user.id)
        _assert_request(found, response)
        assert (found.target_kind, found.target_id) == target
    assert "Secret Agent" not in _only(database, AuditEvent.USER_PROFILE_UPDATED).detail
    assert _only(database, AuditEvent.API_TOKEN_CREATED).detail_data()["scopes"] == ["tool:read"]


def test_enrollment_recorded(
    client: TestClient, anonymous_client: TestClient, database: Database
) -> None:
    created = client.post(
        "/api/users", json={"email": "new@example.com", "display_name": "", "role": "developer"}
    ).json()

    enrolled = anonymous_client.post(
        "/api/auth/enroll", json={"code": created["enrollment_code"], "password": PASSWORD}
    )

    user_id = created["user"]["id"]
    password = _only(database, AuditEvent.USER_PASSWORD_CHANGED)
    _assert_by_user(password, user_id)
    _assert_request(password, enrolled)
    assert password.detail_data() == {"method": "enrollment_code"}
    status = _only(database, AuditEvent.USER_STATUS_CHANGED)
    assert status.detail_data() == {"from": "pending", "to": "active"}


def test_no_secret_in_audit_details(
    app: FastAPI, client: TestClient, anonymous_client: TestClient, database: Database
) -> None:
    created = client.post(
        "/api/users", json={"email": "plant@example.com", "display_name": "", "role": "admin"}
    ).json()
    planted = [created["enrollment_code"], PASSWORD, WRONG_PASSWORD]
    anonymous_client.post(
        "/api/auth/enroll", json={"code": created["enrollment_code"], "password": PASSWORD}
    )
    sign_in(anonymous_client, "plant@example.com", WRONG_PASSWORD)
    tokens = _signed_in(anonymous_client, FixtureUser(0, "plant@example.com", Role.ADMIN, ""))
    headers = bearer(tokens["access_token"])
    started = anonymous_client.post("/api/auth/mfa/totp", headers=headers).json()
    totp = pyotp.parse_uri(started["provisioning_uri"])
    code = totp.at(app.state.identity.now())
    recovery = anonymous_client.post(
        "/api/auth/mfa/totp/confirm", headers=headers, json={"code": code}
    ).json()["recovery_codes"]
    refreshed = anonymous_client.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    ).json()
    api_token = anonymous_client.post(
        "/api/tokens",
        headers=bearer(refreshed["access_token"]),
        json={"name": "ci", "scopes": ["tool:read"]},
    ).json()["token"]
    challenge = sign_in(anonymous_client, "plant@example.com").json()["challenge"]
    anonymous_client.post(
        "/api/auth/signin/mfa", json={"challenge": challenge, "recovery_code": recovery[0]}
    )
    planted += [
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed["refresh_token"],
        api_token,
        challenge,
        code,
        totp.secret,
        started["manual_key"],
        *recovery,
    ]

    with database.reader() as session:
        exported = "".join(export_jsonl(session))
    assert len(exported.splitlines()) >= 9
    for value in planted:
        assert value not in exported


def _fail_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("the audit trail cannot be written")

    monkeypatch.setattr(audit_service, "record", refuse)


def _count(database: Database, model: type[Any]) -> int:
    with database.reader() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


Action = Callable[[TestClient, FixtureUser], httpx.Response]

ACTIONS: dict[str, tuple[Action, Callable[[Database, FixtureUser], object]]] = {
    "create_user": (
        lambda client, _user: client.post(
            "/api/users", json={"email": "x@example.com", "display_name": "", "role": "viewer"}
        ),
        lambda database, _user: _count(database, User),
    ),
    "disable_user": (
        lambda client, user: client.patch(f"/api/users/{user.id}", json={"status": "disabled"}),
        lambda database, user: user_row(database, user.id).status,
    ),
    "change_role": (
        lambda client, user: client.patch(f"/api/users/{user.id}", json={"role": "viewer"}),
        lambda database, user: user_row(database, user.id).role,
    ),
    "revoke_sessions": (
        lambda client, user: client.post(f"/api/users/{user.id}/sessions/revoke"),
        lambda database, user: user_row(database, user.id).not_before,
    ),
    "create_api_token": (
        lambda client, _user: client.post(
            "/api/tokens", json={"name": "ci", "scopes": ["tool:read"]}
        ),
        lambda database, _user: _count(database, ApiToken),
    ),
    "sign_in": (
        lambda client, user: sign_in(client, user.email),
        lambda database, _user: _count(database, AuthSession),
    ),
}


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_action_fails_closed_without_audit(
    client: TestClient,
    make_user: MakeUser,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    action, state = ACTIONS[name]
    user = _developer(make_user)
    before = state(database, user)
    events_before = _count(database, AuditRecord)
    _fail_audit(monkeypatch)

    response = action(client, user)

    assert response.status_code == 500
    assert state(database, user) == before
    assert _count(database, AuditRecord) == events_before
