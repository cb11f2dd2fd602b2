"""Users: a profile where only the display name changes, and admin changes to role and status
that never lock everyone out."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.audit.context import Origin
from llero.errors import Refused
from llero.identity import service
from llero.identity.models import UserStatus
from llero.storage.db import Database
from tests.conftest import FixtureUser, MakeUser
from tests.identity.helpers import user_row

CLI = Origin.system("cli")


def test_profile_shows_own_account(client: TestClient, admin: FixtureUser) -> None:
    response = client.get("/api/users/me")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == admin.id
    assert body["email"] == "admin@example.com"
    assert body["role"] == "admin"
    assert body["mfa_enabled"] is True
    assert "password_hash" not in body
    assert "totp_seed" not in body


def test_profile_display_name_updated(anonymous_client: TestClient, make_user: MakeUser) -> None:
    viewer = make_user(role=Role.VIEWER)

    response = anonymous_client.patch(
        "/api/users/me", json={"display_name": "  Grace Hopper "}, headers=viewer.headers
    )

    assert response.status_code == 200
    assert response.json()["display_name"] == "Grace Hopper"


def test_lookalike_email_rejected(client: TestClient, make_user: MakeUser) -> None:
    make_user(role=Role.VIEWER, email="access@example.com")
    # "access" spelt wholly in Cyrillic letters, which normalisation alone lets through.
    lookalike = "\u0430\u0441\u0441\u0435\u0455\u0455@example.com"

    response = client.post("/api/users", json={"email": lookalike, "role": "viewer"})

    assert response.status_code == 409
    assert response.json()["details"] == [
        {
            "field": "email",
            "problem": "email address looks like the address of another user; use another "
            "address",
        }
    ]
    assert client.get("/api/users").json()["total"] == 2


def test_non_latin_email_beside_latin_accepted(client: TestClient, make_user: MakeUser) -> None:
    make_user(role=Role.VIEWER, email="ivan@example.com")

    response = client.post(
        "/api/users",
        json={"email": "\u0418\u0432\u0430\u043d@example.com", "role": "viewer"},
    )

    assert response.status_code == 201, response.text
    assert client.get("/api/users").json()["total"] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"display_name": "Mallory", "role": "admin"}, "body.role"),
        ({"role": "admin"}, "body.role"),
        ({"display_name": "Mallory", "status": "active"}, "body.status"),
        ({"display_name": "Mallory", "email": "root@example.com"}, "body.email"),
    ],
)
def test_profile_role_change_rejected(
    anonymous_client: TestClient,
    make_user: MakeUser,
    database: Database,
    body: dict[str, str],
    field: str,
) -> None:
    viewer = make_user(role=Role.VIEWER)

    response = anonymous_client.patch("/api/users/me", json=body, headers=viewer.headers)

    assert response.status_code == 422
    assert field in [detail["field"] for detail in response.json()["details"]]
    assert user_row(database, viewer.id).role == "viewer"


@pytest.mark.parametrize("name", ["bell\x07", "x" * 129, "line\nbreak"])
def test_profile_display_name_checked(
    anonymous_client: TestClient, make_user: MakeUser, name: str
) -> None:
    viewer = make_user(role=Role.VIEWER)

    response = anonymous_client.patch(
        "/api/users/me", json={"display_name": name}, headers=viewer.headers
    )

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] in {"display_name", "body.display_name"}


def test_admin_creates_pending_user_with_code(client: TestClient) -> None:
    response = client.post(
        "/api/users",
        json={"email": "New.Dev@Example.com", "display_name": "New Dev", "role": "developer"},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["user"]["status"] == "pending"
    assert body["user"]["role"] == "developer"
    assert body["enrollment_code"].startswith("llero_el_")
    listed = client.get("/api/users").json()
    assert listed["total"] == 2
    assert "enrollment_code" not in str(listed)


@pytest.mark.parametrize("email", ["admin@example.com", "ADMIN@example.com", "admin@EXAMPLE.com"])
def test_duplicate_email_rejected(client: TestClient, email: str) -> None:
    response = client.post("/api/users", json={"email": email, "role": "viewer"})

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address", "role": "viewer"}, "email"),
        ({"email": "a@example.com", "role": "root"}, "body.role"),
        ({"email": "a@example.com"}, "body.role"),
        ({"email": "a@example.com", "role": "viewer", "status": "active"}, "body.status"),
    ],
)
def test_invalid_user_rejected(client: TestClient, body: dict[str, str], field: str) -> None:
    response = client.post("/api/users", json=body)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


def test_admin_changes_role(client: TestClient, make_user: MakeUser) -> None:
    viewer = make_user(role=Role.VIEWER)

    response = client.patch(f"/api/users/{viewer.id}", json={"role": "developer"})

    assert response.status_code == 200
    assert response.json()["role"] == "developer"


def test_own_role_change_refused(
    client: TestClient, admin: FixtureUser, make_user: MakeUser
) -> None:
    make_user(role=Role.ADMIN)

    response = client.patch(f"/api/users/{admin.id}", json={"role": "viewer"})

    assert response.status_code == 409
    assert response.json()["message"] == "you cannot change your own role; ask another admin"


def test_own_status_change_refused(client: TestClient, admin: FixtureUser) -> None:
    response = client.patch(f"/api/users/{admin.id}", json={"status": "disabled"})

    assert response.status_code == 409


def test_other_admin_may_be_demoted(client: TestClient, make_user: MakeUser) -> None:
    other = make_user(role=Role.ADMIN)

    response = client.patch(f"/api/users/{other.id}", json={"role": "developer"})

    assert response.status_code == 200


@pytest.mark.parametrize("change", [{"role": Role.VIEWER}, {"status": UserStatus.DISABLED}])
def test_last_active_admin_kept(
    app: FastAPI, database: Database, make_user: MakeUser, change: dict[str, object]
) -> None:
    # Over HTTP every actor is itself an active admin, so only the CLI (a system actor) can reach
    # the last one; the rule lives in the service for both.
    admin = make_user(role=Role.ADMIN)
    make_user(role=Role.ADMIN, status=UserStatus.PENDING)
    make_user(role=Role.ADMIN, status=UserStatus.DISABLED)

    with pytest.raises(Refused) as caught, database.transaction() as session:
        service.update_user(session, app.state.identity, CLI, user_id=admin.id, **change)

    assert caught.value.message == (
        "the last active admin cannot be demoted or disabled; make another admin first"
    )
    assert user_row(database, admin.id).role == "admin"
    assert user_row(database, admin.id).status == "active"


def test_last_admin_kept_after_other_demoted(
    app: FastAPI, client: TestClient, admin: FixtureUser, make_user: MakeUser, database: Database
) -> None:
    other = make_user(role=Role.ADMIN)
    assert client.patch(f"/api/users/{other.id}", json={"status": "disabled"}).status_code == 200

    with pytest.raises(Refused), database.transaction() as session:
        service.update_user(session, app.state.identity, CLI, user_id=admin.id, role=Role.DEVELOPER)


def test_pending_user_not_activated_by_admin(client: TestClient, make_user: MakeUser) -> None:
    pending = make_user(role=Role.VIEWER, status=UserStatus.PENDING)

    response = client.patch(f"/api/users/{pending.id}", json={"status": "active"})

    assert response.status_code == 409
    assert (
        response.json()["message"] == "a pending user becomes active by enrolling with their code"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"status": "pending"}, "body.status"),
        ({"role": "owner"}, "body.role"),
        ({"role": None, "status": None}, "body"),
        ({"email": "x@example.com"}, "body.email"),
    ],
)
def test_invalid_user_change_rejected(
    client: TestClient, make_user: MakeUser, body: dict[str, object], field: str
) -> None:
    viewer = make_user(role=Role.VIEWER)

    response = client.patch(f"/api/users/{viewer.id}", json=body)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


def test_unknown_user_not_found(client: TestClient) -> None:
    assert client.get("/api/users/999999").status_code == 404
    assert client.patch("/api/users/999999", json={"role": "viewer"}).status_code == 404
    assert client.post("/api/users/999999/sessions/revoke").status_code == 404


def test_disabling_revokes_tokens_and_sessions(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    developer = make_user(role=Role.DEVELOPER)

    response = client.patch(f"/api/users/{developer.id}", json={"status": "disabled"})

    assert response.status_code == 200
    assert response.json()["status"] == "disabled"
    assert user_row(database, developer.id).not_before is not None
    assert anonymous_client.get("/api/users/me", headers=developer.headers).status_code == 401
