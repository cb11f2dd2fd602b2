"""Mail flows against a real SMTP server on 127.0.0.1: password reset, open sign-up with email
verification, and invitations. Links are single-use, expire, carry the token only in the URL
fragment, and the token never appears in logs or the audit trail."""

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llero.access.roles import Role
from llero.audit.events import AuditEvent
from llero.audit.service import export_jsonl
from llero.config.settings import Settings
from llero.identity.models import User, UserStatus
from llero.storage.db import Database
from llero.web.app import create_app
from tests.conftest import FixtureUser, MakeUser, with_mail
from tests.identity.helpers import (
    PASSWORD,
    bearer,
    freeze_clock,
    password_hash,
    sign_in,
    user_row,
)
from tests.smtp_server import MailServer, ReceivedMail

NEW_PASSWORD = "violet tundra copper meadow signal"
PUBLIC_URL = "https://llero.example.com"
LINK = re.compile(r"(https://\S+)#token=(llero_el_[0-9A-Za-z]+)")
CYRILLIC_SMALL_A = "\u0430"


@pytest.fixture
def app(settings: Settings, database: Database, mail_server: MailServer) -> FastAPI:
    """The app with mail sent to ``mail_server`` and open sign-up."""
    return create_app(
        with_mail(settings, mail_server, public_url=PUBLIC_URL, signup_open=True), database
    )


@pytest.fixture
def member(make_user: MakeUser) -> FixtureUser:
    """An active developer with a password and a second factor."""
    return make_user(
        role=Role.DEVELOPER, mfa=True, password_hash=password_hash(), email="dev@example.com"
    )


def _link_token(mail: ReceivedMail, path: str) -> str:
    match = LINK.search(mail.text)
    assert match is not None, mail.text
    assert match.group(1) == PUBLIC_URL + path
    return match.group(2)


def _request_reset(client: TestClient, email: str) -> httpx.Response:
    return client.post("/api/auth/password-reset", json={"email": email})


def _confirm_reset(client: TestClient, token: str, password: str = NEW_PASSWORD) -> httpx.Response:
    return client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": password}
    )


def _audit_records(database: Database) -> list[dict[str, Any]]:
    with database.reader() as session:
        return [json.loads(line) for line in export_jsonl(session)]


# The events the mail flows write; sign-in, user creation and sessions have their own tests.
MAIL_EVENTS = {
    AuditEvent.USER_EMAIL_VERIFIED,
    AuditEvent.USER_INVITATION_ACCEPTED,
    AuditEvent.USER_INVITED,
    AuditEvent.USER_PASSWORD_RESET,
    AuditEvent.USER_PASSWORD_RESET_REQUESTED,
    AuditEvent.USER_SIGNED_UP,
}


def _audit_events(database: Database, target_id: int) -> list[str]:
    return [
        record["event"]
        for record in _audit_records(database)
        if record["target"] == {"kind": "user", "id": str(target_id)}
        and record["event"] in MAIL_EVENTS
    ]


def _audit_export(database: Database) -> str:
    with database.reader() as session:
        return "".join(export_jsonl(session))


def _user_count(database: Database) -> int:
    with database.reader() as session:
        return session.scalar(select(func.count()).select_from(User)) or 0


# --- Password reset ----------------------------------------------------------------------------


def test_reset_mails_link_with_token_in_fragment(
    anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    response = _request_reset(anonymous_client, "Dev@Example.com")

    assert response.status_code == 202
    [mail] = mail_server.wait_for(1)
    assert mail.recipients == ["dev@example.com"]
    token = _link_token(mail, "/reset")
    assert token.startswith("llero_el_")
    assert "?" not in mail.text


def test_reset_answer_same_for_unknown_email(
    anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    known = _request_reset(anonymous_client, member.email)
    unknown = _request_reset(anonymous_client, "nobody@example.com")

    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert set(known.headers) == set(unknown.headers)
    assert [mail.recipients for mail in mail_server.wait_for(1)] == [[member.email]]


def test_reset_sets_password_and_ends_sessions(
    app: FastAPI, anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    clock = freeze_clock(app)
    _request_reset(anonymous_client, member.email)
    token = _link_token(mail_server.wait_for(1)[0], "/reset")
    clock.advance(timedelta(seconds=2))

    response = _confirm_reset(anonymous_client, token)

    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": member.id, "status": "active"}
    # The access token issued before the reset stops working at once.
    assert anonymous_client.get("/api/users/me", headers=member.headers).status_code == 401
    assert sign_in(anonymous_client, member.email, PASSWORD).status_code == 401


def test_reset_revokes_api_tokens(
    app: FastAPI, anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    created = anonymous_client.post(
        "/api/tokens", json={"name": "ci", "scopes": ["tool:read"]}, headers=member.headers
    )
    assert created.status_code == 201, created.text
    api_token = bearer(created.json()["token"])
    assert anonymous_client.get("/api/tools", headers=api_token).status_code == 200
    _request_reset(anonymous_client, member.email)
    token = _link_token(mail_server.wait_for(1)[0], "/reset")

    assert _confirm_reset(anonymous_client, token).status_code == 200

    assert anonymous_client.get("/api/tools", headers=api_token).status_code == 401
    records = _audit_records(app.state.database)
    [revoked] = [record for record in records if record["event"] == AuditEvent.API_TOKEN_REVOKED]
    assert revoked["target"] == {"kind": "user", "id": str(member.id)}
    assert revoked["detail"] == {"reason": "password_reset", "revoked": 1}
    [reset] = [record for record in records if record["event"] == AuditEvent.USER_PASSWORD_RESET]
    assert reset["detail"] == {"sessions_revoked": 1}


def test_reset_never_skips_second_factor(
    app: FastAPI, anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    _request_reset(anonymous_client, member.email)
    token = _link_token(mail_server.wait_for(1)[0], "/reset")
    assert _confirm_reset(anonymous_client, token).status_code == 200

    response = sign_in(anonymous_client, member.email, NEW_PASSWORD)

    assert response.status_code == 200
    assert response.json()["status"] == "mfa_required"
    assert "access_token" not in response.json()


def test_reset_link_used_twice_rejected(
    anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    _request_reset(anonymous_client, member.email)
    token = _link_token(mail_server.wait_for(1)[0], "/reset")
    assert _confirm_reset(anonymous_client, token).status_code == 200

    replay = _confirm_reset(anonymous_client, token, "a different long passphrase here")

    assert replay.status_code == 401
    assert replay.json()["message"] == "the link is invalid, used or expired; request a new one"
    assert sign_in(anonymous_client, member.email, NEW_PASSWORD).status_code == 200


def test_reset_link_expires_after_30_minutes(
    app: FastAPI, anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    clock = freeze_clock(app)
    _request_reset(anonymous_client, member.email)
    token = _link_token(mail_server.wait_for(1)[0], "/reset")

    clock.advance(timedelta(minutes=30, seconds=1))
    response = _confirm_reset(anonymous_client, token)

    assert response.status_code == 401
    assert user_row(app.state.database, member.id).password_hash == password_hash()


def test_new_reset_link_ends_the_previous_one(
    app: FastAPI, anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    clock = freeze_clock(app)
    _request_reset(anonymous_client, member.email)
    clock.advance(timedelta(minutes=2))
    _request_reset(anonymous_client, member.email)
    first, second = (_link_token(mail, "/reset") for mail in mail_server.wait_for(2))

    assert _confirm_reset(anonymous_client, first).status_code == 401
    assert _confirm_reset(anonymous_client, second).status_code == 200


def test_reset_requests_limited_to_one_mail_a_minute(
    anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    for _ in range(3):
        assert _request_reset(anonymous_client, member.email).status_code == 202

    assert len(mail_server.wait_for(2, timeout=1.0)) == 1


@pytest.mark.parametrize("status", [UserStatus.DISABLED, UserStatus.PENDING])
def test_reset_not_sent_to_inactive_account(
    anonymous_client: TestClient, make_user: MakeUser, mail_server: MailServer, status: UserStatus
) -> None:
    user = make_user(role=Role.VIEWER, status=status, password_hash=password_hash())

    assert _request_reset(anonymous_client, user.email).status_code == 202
    assert mail_server.wait_for(1, timeout=0.5) == []


def test_reset_password_checked_against_policy(
    anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    _request_reset(anonymous_client, member.email)
    token = _link_token(mail_server.wait_for(1)[0], "/reset")

    short = _confirm_reset(anonymous_client, token, "short")

    assert short.status_code == 422
    # A rejected password leaves the link usable.
    assert _confirm_reset(anonymous_client, token).status_code == 200


@pytest.mark.parametrize(
    "token",
    ["", "llero_el_short", "llero_rt_" + "A" * 49, "x" * 129],
    ids=["empty", "short", "refresh-prefix", "too-long"],
)
def test_reset_with_malformed_token_rejected(anonymous_client: TestClient, token: str) -> None:
    response = _confirm_reset(anonymous_client, token)

    assert response.status_code in {401, 422}
    assert token not in response.text or token == ""


def test_reset_without_mail_server_unavailable(
    settings: Settings, database: Database, member: FixtureUser
) -> None:
    without_mail = create_app(settings, database)
    with TestClient(without_mail, raise_server_exceptions=False) as client:
        response = _request_reset(client, member.email)

    assert response.status_code == 503
    assert response.json()["error"] == "mail_unavailable"
    assert "password reset sends mail" in response.json()["message"]
    assert "LLERO_SMTP_HOST" in response.json()["message"]


def test_reset_token_stays_out_of_logs_and_audit(
    anonymous_client: TestClient,
    member: FixtureUser,
    mail_server: MailServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database: Database = anonymous_client.app.state.database  # type: ignore[attr-defined]
    _request_reset(anonymous_client, member.email)
    token = _link_token(mail_server.wait_for(1)[0], "/reset")
    _confirm_reset(anonymous_client, token)
    _confirm_reset(anonymous_client, token)

    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "password_reset" in logged
    assert token not in logged
    assert NEW_PASSWORD not in logged
    assert token not in _audit_export(database)
    assert _audit_events(database, member.id) == [
        AuditEvent.USER_PASSWORD_RESET_REQUESTED,
        AuditEvent.USER_PASSWORD_RESET,
    ]


# --- Open sign-up ------------------------------------------------------------------------------


def _sign_up(client: TestClient, email: str) -> httpx.Response:
    return client.post("/api/auth/signup", json={"email": email, "display_name": "New Person"})


def _verify(client: TestClient, token: str) -> httpx.Response:
    return client.post("/api/auth/signup/verify", json={"token": token, "password": NEW_PASSWORD})


def test_signup_verification_activates_viewer(
    app: FastAPI, anonymous_client: TestClient, mail_server: MailServer
) -> None:
    response = _sign_up(anonymous_client, "new@example.com")

    assert response.status_code == 202
    [mail] = mail_server.wait_for(1)
    assert mail.recipients == ["new@example.com"]
    token = _link_token(mail, "/verify-email")

    verified = _verify(anonymous_client, token)

    assert verified.status_code == 200, verified.text
    user = user_row(app.state.database, verified.json()["user_id"])
    assert user.status == UserStatus.ACTIVE
    assert user.role == Role.VIEWER
    assert sign_in(anonymous_client, "new@example.com", NEW_PASSWORD).status_code == 200
    assert _verify(anonymous_client, token).status_code == 401
    assert _audit_events(app.state.database, user.id) == [
        AuditEvent.USER_SIGNED_UP,
        AuditEvent.USER_EMAIL_VERIFIED,
    ]


def test_unverified_signup_cannot_sign_in(
    app: FastAPI, anonymous_client: TestClient, mail_server: MailServer
) -> None:
    _sign_up(anonymous_client, "new@example.com")
    mail_server.wait_for(1)

    assert sign_in(anonymous_client, "new@example.com", NEW_PASSWORD).status_code == 401


def test_signup_case_variants_make_one_account(
    app: FastAPI, anonymous_client: TestClient, mail_server: MailServer
) -> None:
    first = _sign_up(anonymous_client, "Admin@Example.com")
    second = _sign_up(anonymous_client, "admin@example.com")

    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert _user_count(app.state.database) == 1
    # The second sign-up comes within a minute of the first, so it sends no second link.
    assert len(mail_server.wait_for(2, timeout=1.0)) == 1


def test_signup_for_existing_account_mails_notice(
    app: FastAPI, anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    response = _sign_up(anonymous_client, "DEV@example.com")

    assert response.status_code == 202
    assert _user_count(app.state.database) == 1
    [mail] = mail_server.wait_for(1)
    assert mail.recipients == [member.email]
    assert "already has an account" in mail.text
    assert "#token=" not in mail.text
    assert user_row(app.state.database, member.id).password_hash == password_hash()


def test_signup_cyrillic_lookalike_rejected(
    app: FastAPI, anonymous_client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    response = _sign_up(anonymous_client, f"d\u0435v@ex{CYRILLIC_SMALL_A}mple.com")

    assert response.status_code == 422
    assert response.json()["details"] == [
        {
            "field": "email",
            "problem": "local part of the email address mixes letters of different scripts "
            "(such as Latin and Cyrillic), which can make it look like another address",
        }
    ]
    assert _user_count(app.state.database) == 1
    assert mail_server.wait_for(1, timeout=0.5) == []


@pytest.mark.parametrize(
    "lookalike",
    [
        # "access" spelt wholly in Cyrillic letters.
        "\u0430\u0441\u0441\u0435\u0455\u0455@example.com",
        # A variation selector, which renders as nothing.
        "access\ufe0f@example.com",
        # Cyrillic capitals that read as "ACCESS".
        "\u0410\u0421\u0421\u0415\u0405\u0405@example.com",
    ],
    ids=["cyrillic-lower-case", "variation-selector", "cyrillic-capitals"],
)
def test_signup_whole_script_lookalike_makes_no_account(
    app: FastAPI, anonymous_client: TestClient, mail_server: MailServer, lookalike: str
) -> None:
    first = _sign_up(anonymous_client, "Access@Example.com")
    [verification] = mail_server.wait_for(1)

    second = _sign_up(anonymous_client, lookalike)

    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert _user_count(app.state.database) == 1
    # The look-alike's owner gets no mail, and the first address gets no second one.
    assert mail_server.wait_for(2, timeout=1.0) == [verification]


def test_signup_lookalikes_of_admin_make_one_account(
    app: FastAPI, anonymous_client: TestClient, mail_server: MailServer
) -> None:
    responses = [
        _sign_up(anonymous_client, address)
        for address in (
            "Admin@Example.com",
            "admin@example.com",
            # The Cyrillic capital U+0410 before the Latin "DMIN", which mixes scripts.
            "\u0410DMIN@example.com",
            # Cyrillic has no look-alike of every letter of "admin", but an invisible variation
            # selector passes normalisation and has the skeleton of "admin".
            "admin\ufe0f@example.com",
        )
    ]

    assert [response.status_code for response in responses] == [202, 202, 422, 202]
    assert responses[2].json()["details"][0]["field"] == "email"
    assert _user_count(app.state.database) == 1
    assert [mail.recipients for mail in mail_server.wait_for(2, timeout=1.0)] == [
        ["Admin@Example.com"]
    ]


def test_signup_non_latin_name_accepted(
    app: FastAPI, anonymous_client: TestClient, mail_server: MailServer
) -> None:
    _sign_up(anonymous_client, "ivan@example.com")
    mail_server.wait_for(1)
    # Ivan in Cyrillic letters: a real name, not a look-alike of "ivan".
    cyrillic = "\u0418\u0432\u0430\u043d@example.com"

    response = _sign_up(anonymous_client, cyrillic)

    assert response.status_code == 202
    assert _user_count(app.state.database) == 2
    mails = mail_server.wait_for(2)
    assert [mail.recipients for mail in mails] == [["ivan@example.com"], [cyrillic]]
    token = _link_token(mails[1], "/verify-email")
    assert _verify(anonymous_client, token).status_code == 200
    assert sign_in(anonymous_client, cyrillic, NEW_PASSWORD).status_code == 200


def test_signup_lost_mail_can_be_sent_again(
    app: FastAPI, anonymous_client: TestClient, mail_server: MailServer
) -> None:
    clock = freeze_clock(app)
    _sign_up(anonymous_client, "new@example.com")
    clock.advance(timedelta(minutes=31))
    _sign_up(anonymous_client, "new@example.com")
    first, second = (_link_token(mail, "/verify-email") for mail in mail_server.wait_for(2))

    assert _verify(anonymous_client, first).status_code == 401
    assert _verify(anonymous_client, second).status_code == 200


def test_signup_closed_by_default(
    settings: Settings, database: Database, mail_server: MailServer
) -> None:
    closed = create_app(with_mail(settings, mail_server), database)
    with TestClient(closed, raise_server_exceptions=False) as client:
        response = _sign_up(client, "new@example.com")

    assert response.status_code == 409
    assert response.json()["message"] == (
        "sign-up is closed on this server; ask an admin for an invitation"
    )
    assert _user_count(database) == 0


# --- Invitations -------------------------------------------------------------------------------


def _invite(client: TestClient, email: str, role: str = "developer") -> httpx.Response:
    return client.post(
        "/api/users/invitations", json={"email": email, "role": role, "display_name": "Invitee"}
    )


def _accept(client: TestClient, token: str) -> httpx.Response:
    return client.post(
        "/api/auth/invitation/accept", json={"token": token, "password": NEW_PASSWORD}
    )


def test_invitation_activates_with_role(
    app: FastAPI,
    client: TestClient,
    anonymous_client: TestClient,
    admin: FixtureUser,
    mail_server: MailServer,
) -> None:
    response = _invite(client, "invitee@example.com")

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user"]["status"] == "pending"
    assert body["user"]["role"] == "developer"
    assert "token" not in response.text
    [mail] = mail_server.wait_for(1)
    assert mail.recipients == ["invitee@example.com"]
    token = _link_token(mail, "/invitation")

    accepted = _accept(anonymous_client, token)

    assert accepted.status_code == 200, accepted.text
    assert user_row(app.state.database, body["user"]["id"]).status == UserStatus.ACTIVE
    assert sign_in(anonymous_client, "invitee@example.com", NEW_PASSWORD).status_code == 200
    assert _accept(anonymous_client, token).status_code == 401
    assert _audit_events(app.state.database, body["user"]["id"]) == [
        AuditEvent.USER_INVITED,
        AuditEvent.USER_INVITATION_ACCEPTED,
    ]
    assert token not in _audit_export(app.state.database)


def test_invitation_audit_names_admin(
    app: FastAPI, client: TestClient, admin: FixtureUser, mail_server: MailServer
) -> None:
    _invite(client, "invitee@example.com")

    [record] = [r for r in _audit_records(app.state.database) if r["event"] == "user:invited"]

    assert record["actor"] == {"kind": "user", "id": str(admin.id)}
    assert record["detail"] == {"role": "developer"}


def test_invitation_for_existing_email_conflicts(
    client: TestClient, member: FixtureUser, mail_server: MailServer
) -> None:
    response = _invite(client, "Dev@Example.com")

    assert response.status_code == 409
    assert mail_server.wait_for(1, timeout=0.5) == []


def test_new_invitation_ends_the_previous_link(
    client: TestClient, anonymous_client: TestClient, mail_server: MailServer
) -> None:
    user_id = _invite(client, "invitee@example.com").json()["user"]["id"]

    again = client.post(f"/api/users/{user_id}/invitation")

    assert again.status_code == 200
    first, second = (_link_token(mail, "/invitation") for mail in mail_server.wait_for(2))
    assert _accept(anonymous_client, first).status_code == 401
    assert _accept(anonymous_client, second).status_code == 200
    assert client.post(f"/api/users/{user_id}/invitation").status_code == 409


def test_invitation_link_is_not_a_reset_link(
    client: TestClient, anonymous_client: TestClient, mail_server: MailServer
) -> None:
    _invite(client, "invitee@example.com")
    token = _link_token(mail_server.wait_for(1)[0], "/invitation")

    assert _confirm_reset(anonymous_client, token).status_code == 401
    assert _verify(anonymous_client, token).status_code == 401
    assert _accept(anonymous_client, token).status_code == 200


def test_invitation_without_mail_server_unavailable(
    settings: Settings, database: Database, make_user: MakeUser
) -> None:
    without_mail = create_app(settings, database)
    admin = make_user(role=Role.ADMIN, email="boss@example.com")
    with TestClient(without_mail, raise_server_exceptions=False, headers=admin.headers) as client:
        response = _invite(client, "invitee@example.com")

    assert response.status_code == 503
    assert _user_count(database) == 1


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_invitation_needs_admin(
    anonymous_client: TestClient, make_user: MakeUser, mail_server: MailServer, role: Role
) -> None:
    user = make_user(role=role)

    response = anonymous_client.post(
        "/api/users/invitations",
        headers=bearer(user.access_token),
        json={"email": "x@example.com", "role": "admin"},
    )

    assert response.status_code == 403
    assert mail_server.wait_for(1, timeout=0.5) == []
