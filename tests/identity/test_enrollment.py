"""Enrollment: a one-time code sets the first password, an admin then enrolls TOTP before doing
anything else, and the code that confirms TOTP cannot sign in again."""

from datetime import timedelta

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.audit.context import Origin
from llero.identity import service
from llero.storage.db import Database
from tests.conftest import MakeUser
from tests.identity.helpers import PASSWORD, bearer, freeze_clock, sign_in, user_row


def _create_user(client: TestClient, email: str, role: str, name: str = "") -> httpx.Response:
    response = client.post("/api/users", json={"email": email, "role": role, "display_name": name})
    assert response.status_code == 201, response.text
    return response


def _enroll(client: TestClient, code: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/auth/enroll", json={"code": code, "password": password})


def test_enrollment_code_sets_password(client: TestClient, anonymous_client: TestClient) -> None:
    created = _create_user(client, "dev@example.com", "developer").json()

    enrolled = _enroll(anonymous_client, created["enrollment_code"])

    assert enrolled.status_code == 200
    assert enrolled.json() == {"user_id": created["user"]["id"], "status": "active"}
    signed_in = sign_in(anonymous_client, "dev@example.com")
    assert signed_in.status_code == 200
    assert signed_in.json()["mfa_enrollment_required"] is False


def test_pending_user_cannot_sign_in(client: TestClient, anonymous_client: TestClient) -> None:
    _create_user(client, "dev@example.com", "developer")

    assert sign_in(anonymous_client, "dev@example.com").status_code == 401


def test_enrollment_code_used_once(client: TestClient, anonymous_client: TestClient) -> None:
    code = _create_user(client, "dev@example.com", "developer").json()["enrollment_code"]
    _enroll(anonymous_client, code)

    again = _enroll(anonymous_client, code, "another long passphrase for me")

    assert again.status_code == 401
    assert again.json()["error"] == "invalid_credentials"
    assert sign_in(anonymous_client, "dev@example.com").status_code == 200


def test_enrollment_code_expires_after_15_minutes(
    app: FastAPI, client: TestClient, anonymous_client: TestClient
) -> None:
    clock = freeze_clock(app)
    code = _create_user(client, "dev@example.com", "developer").json()["enrollment_code"]
    clock.advance(timedelta(minutes=15))

    assert _enroll(anonymous_client, code).status_code == 401


@pytest.mark.parametrize(
    "code",
    ["llero_el_" + "A" * 49, "llero_rt_" + "A" * 49, "not-a-code", "llero_el_" + "0" * 49],
)
def test_bad_enrollment_code_rejected(anonymous_client: TestClient, code: str) -> None:
    response = _enroll(anonymous_client, code)

    assert response.status_code == 401
    assert response.json()["message"] == (
        "the enrollment code is invalid, used or expired; ask an admin for a new one"
    )


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short phrase", "shorter than 15 characters"),
        ("1qaz2wsx3edc4rfv", "list of common and breached passwords"),
        ("grace.hopper is my secret", "local part of the account's email address"),
        ("my name is Hopperfield yes", "the word 'hopperfield'"),
        ("llero llero llero llero", "the word 'llero'"),
    ],
)
def test_weak_password_rejected_and_code_kept(
    client: TestClient, anonymous_client: TestClient, password: str, rule: str
) -> None:
    code = _create_user(
        client, "grace.hopper@example.com", "developer", "Grace Hopperfield"
    ).json()["enrollment_code"]

    response = _enroll(anonymous_client, code, password)

    assert response.status_code == 422
    assert rule in response.json()["message"]
    assert response.json()["details"][0]["field"] == "password"
    assert _enroll(anonymous_client, code).status_code == 200


def test_new_code_replaces_old(app: FastAPI, client: TestClient, database: Database) -> None:
    created = _create_user(client, "dev@example.com", "developer").json()
    with database.transaction() as session:
        user = service.get_user(session, created["user"]["id"])
        service.issue_enrollment_code(
            session, Origin.system("test"), user, app.state.identity.now()
        )

    assert _enroll(client, created["enrollment_code"]).status_code == 401


def test_admin_must_enroll_totp_before_anything(
    client: TestClient, anonymous_client: TestClient
) -> None:
    code = _create_user(client, "boss@example.com", "admin").json()["enrollment_code"]
    _enroll(anonymous_client, code)
    signed_in = sign_in(anonymous_client, "boss@example.com").json()
    headers = bearer(signed_in["access_token"])

    assert signed_in["mfa_enrollment_required"] is True
    for method, path in [("GET", "/api/tools"), ("GET", "/api/users"), ("POST", "/api/tokens")]:
        response = anonymous_client.request(method, path, headers=headers, json={})
        assert response.status_code == 403, path
        assert response.json()["error"] == "mfa_enrollment_required"
    assert anonymous_client.get("/api/users/me", headers=headers).status_code == 200
    assert anonymous_client.get("/api/auth/sessions", headers=headers).status_code == 200


def test_totp_enrollment_lifts_gate(
    app: FastAPI, anonymous_client: TestClient, database: Database, client: TestClient
) -> None:
    clock = freeze_clock(app)
    code = _create_user(client, "boss@example.com", "admin").json()["enrollment_code"]
    _enroll(anonymous_client, code)
    signed_in = sign_in(anonymous_client, "boss@example.com").json()
    headers = bearer(signed_in["access_token"])

    started = anonymous_client.post("/api/auth/mfa/totp", headers=headers)
    body = started.json()
    totp = pyotp.parse_uri(body["provisioning_uri"])
    confirmed = anonymous_client.post(
        "/api/auth/mfa/totp/confirm", headers=headers, json={"code": totp.at(clock())}
    )

    assert started.status_code == 200
    assert body["provisioning_uri"].startswith("otpauth://totp/Llero:boss%40example.com?")
    assert body["manual_key"].replace(" ", "") == totp.secret
    assert body["qr_svg"].startswith("<svg")
    assert confirmed.status_code == 200
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert anonymous_client.get("/api/tools", headers=headers).status_code == 200
    user_id = anonymous_client.get("/api/users/me", headers=headers).json()["id"]
    stored = user_row(database, user_id)
    assert stored.totp_seed == totp.secret
    assert stored.totp_pending_seed is None


def test_confirming_totp_code_cannot_sign_in(
    app: FastAPI, anonymous_client: TestClient, client: TestClient
) -> None:
    clock = freeze_clock(app)
    code = _create_user(client, "boss@example.com", "admin").json()["enrollment_code"]
    _enroll(anonymous_client, code)
    headers = bearer(sign_in(anonymous_client, "boss@example.com").json()["access_token"])
    uri = anonymous_client.post("/api/auth/mfa/totp", headers=headers).json()["provisioning_uri"]
    totp_code = pyotp.parse_uri(uri).at(clock())
    anonymous_client.post("/api/auth/mfa/totp/confirm", headers=headers, json={"code": totp_code})
    clock.advance(timedelta(seconds=10))

    challenge = sign_in(anonymous_client, "boss@example.com").json()["challenge"]
    response = anonymous_client.post(
        "/api/auth/signin/mfa", json={"challenge": challenge, "code": totp_code}
    )

    assert response.status_code == 401


@pytest.mark.parametrize("code", ["000000", "12345", "abcdef", "1234567"])
def test_wrong_confirmation_code_rejected(
    anonymous_client: TestClient, make_user: MakeUser, code: str
) -> None:
    user = make_user(role=Role.DEVELOPER, mfa=False)
    anonymous_client.post("/api/auth/mfa/totp", headers=user.headers)

    response = anonymous_client.post(
        "/api/auth/mfa/totp/confirm", headers=user.headers, json={"code": code}
    )

    assert response.status_code == 422
    assert response.json()["details"] == [
        {"field": "code", "problem": "is not the current code of the authenticator app"}
    ]


def test_confirm_without_start_refused(anonymous_client: TestClient, make_user: MakeUser) -> None:
    user = make_user(role=Role.DEVELOPER, mfa=False)

    response = anonymous_client.post(
        "/api/auth/mfa/totp/confirm", headers=user.headers, json={"code": "123456"}
    )

    assert response.status_code == 409


def test_enrolled_totp_not_replaced(client: TestClient) -> None:
    response = client.post("/api/auth/mfa/totp")

    assert response.status_code == 409
    assert response.json()["message"] == "TOTP is already enrolled for this account"
