"""Every protected route checks the bearer credential against the keys and the database, so a
forged, stale, misdirected or confused token gets 401, and a disabled or demoted user loses
access with the very next request."""

import base64
import hmac
import json
import time
from datetime import timedelta
from hashlib import sha256
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.config.settings import Settings
from llero.identity.context import TOKEN_AUDIENCE, TOKEN_ISSUER
from llero.identity.opaque import issue_email_link_token, issue_refresh_token
from llero.identity.signing_keys import load_signing_key_ring
from llero.identity.tokens import AccessTokenService, TokenPolicy
from llero.storage.db import Database
from tests.conftest import FixtureUser, MakeUser
from tests.identity.helpers import bearer, freeze_clock

GENERIC_401 = {"error": "unauthenticated", "message": "authentication is required"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(document: dict[str, Any]) -> str:
    return _b64(json.dumps(document, separators=(",", ":")).encode())


def _claims(user: FixtureUser, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": TOKEN_ISSUER,
        "aud": TOKEN_AUDIENCE,
        "sub": str(user.id),
        "sid": str(user.session_id),
        "role": "admin",
        "typ": "access",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "test-token-id-0001",
    }
    claims.update(changes)
    return claims


def _signed(header: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def _assert_unauthenticated(client: TestClient, token: str, path: str = "/api/tools") -> None:
    response = client.get(path, headers=bearer(token))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    body.pop("request_id")
    assert body == GENERIC_401


@pytest.fixture
def ring_key(settings: Settings) -> tuple[str, Ed25519PrivateKey]:
    ring = load_signing_key_ring(settings.keys_dir)
    return ring.current_kid, ring.signing_key()


def test_valid_access_token_accepted(anonymous_client: TestClient, admin: FixtureUser) -> None:
    response = anonymous_client.get("/api/tools", headers=bearer(admin.access_token))

    assert response.status_code == 200


def test_hand_signed_token_accepted(
    anonymous_client: TestClient, admin: FixtureUser, ring_key: tuple[str, Ed25519PrivateKey]
) -> None:
    # The forgeries below differ from this control in one part only.
    kid, key = ring_key
    token = _signed({"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}, _claims(admin), key)

    assert anonymous_client.get("/api/tools", headers=bearer(token)).status_code == 200


def test_alg_none_rejected(
    anonymous_client: TestClient, admin: FixtureUser, ring_key: tuple[str, Ed25519PrivateKey]
) -> None:
    kid, _ = ring_key
    header = {"alg": "none", "kid": kid, "typ": "at+jwt"}
    token = f"{_segment(header)}.{_segment(_claims(admin))}."

    _assert_unauthenticated(anonymous_client, token)


def test_hs256_keyed_with_public_key_rejected(
    anonymous_client: TestClient, admin: FixtureUser, ring_key: tuple[str, Ed25519PrivateKey]
) -> None:
    kid, key = ring_key
    public = key.public_key().public_bytes_raw()
    signing_input = (
        f"{_segment({'alg': 'HS256', 'kid': kid, 'typ': 'at+jwt'})}.{_segment(_claims(admin))}"
    )
    signature = hmac.new(public, signing_input.encode(), sha256).digest()

    _assert_unauthenticated(anonymous_client, f"{signing_input}.{_b64(signature)}")


@pytest.mark.parametrize(
    "kid",
    ["../keys/signing-ed25519.pem", "/etc/passwd", "signing/ring.json", "", None],
)
def test_kid_not_in_ring_rejected(
    anonymous_client: TestClient,
    admin: FixtureUser,
    ring_key: tuple[str, Ed25519PrivateKey],
    kid: str | None,
) -> None:
    _, key = ring_key
    header: dict[str, Any] = {"alg": "EdDSA", "typ": "at+jwt"}
    if kid is not None:
        header["kid"] = kid

    _assert_unauthenticated(anonymous_client, _signed(header, _claims(admin), key))


def test_token_signed_by_foreign_key_rejected(
    anonymous_client: TestClient, admin: FixtureUser, ring_key: tuple[str, Ed25519PrivateKey]
) -> None:
    kid, _ = ring_key
    header = {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}

    token = _signed(header, _claims(admin), Ed25519PrivateKey.generate())

    _assert_unauthenticated(anonymous_client, token)


@pytest.mark.parametrize(
    "header_member", [{"jku": "https://evil.example/jwks.json"}, {"jwk": {"kty": "OKP"}}]
)
def test_key_from_header_rejected(
    anonymous_client: TestClient,
    admin: FixtureUser,
    ring_key: tuple[str, Ed25519PrivateKey],
    header_member: dict[str, Any],
) -> None:
    kid, key = ring_key
    header = {"alg": "EdDSA", "kid": kid, "typ": "at+jwt", **header_member}

    _assert_unauthenticated(anonymous_client, _signed(header, _claims(admin), key))


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"aud": "another-api"}, id="other audience"),
        pytest.param({"iss": "https://other.example"}, id="other issuer"),
        pytest.param({"typ": "refresh"}, id="wrong type"),
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"nbf": int(time.time()) + 3600, "iat": int(time.time()) + 3600}, id="future"),
        pytest.param({"sub": "999999"}, id="unknown user"),
        pytest.param({"sub": "../1"}, id="subject not an id"),
    ],
)
def test_misdirected_or_stale_token_rejected(
    anonymous_client: TestClient,
    admin: FixtureUser,
    ring_key: tuple[str, Ed25519PrivateKey],
    changes: dict[str, Any],
) -> None:
    kid, key = ring_key
    header = {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}

    _assert_unauthenticated(anonymous_client, _signed(header, _claims(admin, **changes), key))


def test_token_for_other_audience_rejected(
    anonymous_client: TestClient, admin: FixtureUser, settings: Settings
) -> None:
    other = AccessTokenService(
        TokenPolicy(issuer=TOKEN_ISSUER, audience="another-api"),
        load_signing_key_ring(settings.keys_dir),
    )
    token = other.issue_access_token(
        subject=str(admin.id), role="admin", session_id=str(admin.session_id)
    ).token.reveal()

    _assert_unauthenticated(anonymous_client, token)


def test_expired_access_token_rejected(
    app: FastAPI, anonymous_client: TestClient, admin: FixtureUser
) -> None:
    clock = freeze_clock(app)
    token = app.state.identity.tokens.issue_access_token(
        subject=str(admin.id), role="admin", session_id=str(admin.session_id)
    )
    clock.advance(timedelta(minutes=15, seconds=31))

    _assert_unauthenticated(anonymous_client, token.token.reveal())


def test_access_token_within_clock_skew_accepted(
    app: FastAPI, anonymous_client: TestClient, admin: FixtureUser
) -> None:
    clock = freeze_clock(app)
    token = app.state.identity.tokens.issue_access_token(
        subject=str(admin.id), role="admin", session_id=str(admin.session_id)
    )
    clock.advance(timedelta(minutes=15, seconds=29))

    response = anonymous_client.get("/api/tools", headers=bearer(token.token.reveal()))

    assert response.status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(issue_refresh_token().token.reveal(), id="refresh token"),
        pytest.param(issue_email_link_token().token.reveal(), id="email link token"),
        pytest.param("llero_pat_" + "A" * 49, id="api token with bad checksum"),
        pytest.param("a.b.c", id="three garbage segments"),
        pytest.param("x" * 5000, id="oversized"),
    ],
)
def test_other_token_kinds_rejected_as_access_token(
    anonymous_client: TestClient, token: str
) -> None:
    _assert_unauthenticated(anonymous_client, token)


def test_refresh_token_from_signin_rejected_as_access_token(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    from tests.identity.helpers import password_hash, sign_in  # noqa: PLC0415

    user = make_user(role=Role.DEVELOPER, mfa=False, password_hash=password_hash())
    refresh_token = sign_in(anonymous_client, user.email).json()["refresh_token"]

    _assert_unauthenticated(anonymous_client, refresh_token)


@pytest.mark.parametrize(
    "authorization",
    ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer ", "Token abc", "Bearer a b", "bearer"],
)
def test_malformed_authorization_rejected(anonymous_client: TestClient, authorization: str) -> None:
    response = anonymous_client.get("/api/tools", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"


def test_bearer_scheme_case_insensitive(anonymous_client: TestClient, admin: FixtureUser) -> None:
    response = anonymous_client.get(
        "/api/tools", headers={"Authorization": f"bEaReR {admin.access_token}"}
    )

    assert response.status_code == 200


def test_two_authorization_headers_rejected(
    anonymous_client: TestClient, admin: FixtureUser
) -> None:
    headers = [("authorization", f"Bearer {admin.access_token}")] * 2

    response = anonymous_client.get("/api/tools", headers=headers)

    assert response.status_code == 401


def test_no_credential_rejected(anonymous_client: TestClient) -> None:
    response = anonymous_client.get("/api/tools")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_rejection_reason_only_in_log(
    anonymous_client: TestClient, admin: FixtureUser, ring_key: tuple[str, Ed25519PrivateKey]
) -> None:
    kid, key = ring_key
    token = _signed({"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}, _claims(admin, aud="x"), key)

    with structlog.testing.capture_logs() as events:
        response = anonymous_client.get("/api/tools", headers=bearer(token))

    rejections = [event for event in events if event["event"] == "auth:rejected"]
    assert [event["reason"] for event in rejections] == ["access_token_wrong_audience"]
    assert "audience" not in response.text
    assert token not in repr(events)


def test_disabled_user_token_refused_at_once(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    user = make_user(role=Role.DEVELOPER)
    assert anonymous_client.get("/api/tools", headers=user.headers).status_code == 200

    disabled = client.patch(f"/api/users/{user.id}", json={"status": "disabled"})

    assert disabled.status_code == 200
    _assert_unauthenticated(anonymous_client, user.access_token)


def test_reenabled_user_old_token_stays_dead(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    user = make_user(role=Role.DEVELOPER)
    client.patch(f"/api/users/{user.id}", json={"status": "disabled"})

    client.patch(f"/api/users/{user.id}", json={"status": "active"})

    _assert_unauthenticated(anonymous_client, user.access_token)


def test_revoking_user_sessions_ends_access_tokens(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    user = make_user(role=Role.VIEWER)

    response = client.post(f"/api/users/{user.id}/sessions/revoke")

    assert response.status_code == 200
    _assert_unauthenticated(anonymous_client, user.access_token)


def test_demoted_user_loses_rights_at_once(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    user = make_user(role=Role.DEVELOPER)
    body = {"name": "made_before_demotion"}
    assert (
        anonymous_client.post("/api/categories", json=body, headers=user.headers).status_code == 403
    )
    created = anonymous_client.post(
        "/api/tools", json={"name": "before_demotion"}, headers=user.headers
    )
    assert created.status_code == 201

    client.patch(f"/api/users/{user.id}", json={"role": "viewer"})
    response = anonymous_client.post(
        "/api/tools", json={"name": "after_demotion"}, headers=user.headers
    )

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_forbidden_answer_is_generic(anonymous_client: TestClient, make_user: MakeUser) -> None:
    viewer = make_user(role=Role.VIEWER)

    response = anonymous_client.delete("/api/tools/1", headers=viewer.headers)

    assert response.status_code == 403
    body = response.json()
    body.pop("request_id")
    assert body == {"error": "forbidden", "message": "you do not have permission to do this"}


def test_admin_without_mfa_must_enroll_first(
    anonymous_client: TestClient, make_user: MakeUser
) -> None:
    admin = make_user(role=Role.ADMIN, mfa=False)

    tools = anonymous_client.get("/api/tools", headers=admin.headers)
    me = anonymous_client.get("/api/users/me", headers=admin.headers)
    start = anonymous_client.post("/api/auth/mfa/totp", headers=admin.headers)

    assert tools.status_code == 403
    assert tools.json()["error"] == "mfa_enrollment_required"
    assert me.status_code == 200
    assert start.status_code == 200


def test_developer_without_mfa_not_gated_by_default(
    anonymous_client: TestClient, make_user: MakeUser
) -> None:
    developer = make_user(role=Role.DEVELOPER, mfa=False)

    assert anonymous_client.get("/api/tools", headers=developer.headers).status_code == 200


def test_mfa_for_everyone_gates_developer(settings: Settings, database: Database) -> None:
    from llero.web.app import create_app  # noqa: PLC0415
    from tests.conftest import create_test_user  # noqa: PLC0415

    strict = settings.model_copy(update={"mfa_required_for_everyone": True})
    app = create_app(strict, database)
    developer = create_test_user(app, role=Role.DEVELOPER, mfa=False)

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/tools", headers=developer.headers)

    assert response.status_code == 403
    assert response.json()["error"] == "mfa_enrollment_required"
