"""Every route of the app, called by every kind of caller, answers as the role table says: 401 for
anyone unauthenticated on a non-public route, 403 (never a 2xx) for a role without the route's
permission, and neither for a role with it.

Path ids name objects that do not exist and bodies are empty, so a permitted call ends in 404 or
422 and changes nothing that a later call depends on.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.access.permissions import BEFORE_MFA_ENROLLMENT, PUBLIC_PERMISSIONS, Permission
from llero.access.roles import ROLE_PERMISSIONS, Role
from llero.identity.models import UserStatus
from tests.conftest import MakeUser
from tests.web.test_route_permissions import _leaf_routes, _permissions_in

MISSING_ID = "999999"
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    permission: Permission

    @property
    def url(self) -> str:
        parts = [MISSING_ID if part.startswith("{") else part for part in self.path.split("/")]
        return "/".join(parts)

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.permission})"


def _calls(app: FastAPI) -> Iterator[Call]:
    for path, context in _leaf_routes(app.routes):
        (permission,) = _permissions_in(context.dependant)
        for method in sorted(context.methods or []):
            if method != "HEAD":
                yield Call(method, path, permission)


def _send(client: TestClient, call: Call, headers: dict[str, str]) -> int:
    body = {} if call.method in BODY_METHODS else None
    return client.request(call.method, call.url, headers=headers, json=body).status_code


@pytest.fixture
def calls(app: FastAPI) -> list[Call]:
    found = list(_calls(app))
    # The walk must see the identity, mail flow, forge, barracks, academy and vault routes, or
    # the checks prove nothing.
    assert {
        "/api/auth/signin",
        "/api/auth/password-reset",
        "/api/auth/password-reset/confirm",
        "/api/auth/signup",
        "/api/auth/signup/verify",
        "/api/auth/invitation/accept",
        "/api/users/invitations",
        "/api/users/{user_id}/invitation",
        "/api/tools",
        "/api/agents",
        "/api/users",
        "/api/audit/events",
        "/api/audit/export",
        "/api/providers/{provider_id}/secret",
        "/api/budgets/{budget_id}",
        "/api/usage/export",
        "/api/egress/entries/{entry_id}",
        "/api/secrets",
        "/api/secrets/{secret_id}/grants/{grant_id}",
        "/api/vault/unseal",
    } <= {call.path for call in found}
    return found


def test_anonymous_gets_401_on_every_protected_route(
    anonymous_client: TestClient, calls: list[Call]
) -> None:
    wrong = []
    for call in calls:
        status = _send(anonymous_client, call, {})
        expected_denied = call.permission not in PUBLIC_PERMISSIONS
        if expected_denied and status != 401:
            wrong.append(f"{call}: {status}, expected 401")
        if not expected_denied and status in {401, 403}:
            wrong.append(f"{call}: {status} on a public route")

    assert wrong == []


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_what_the_table_grants(
    anonymous_client: TestClient, make_user: MakeUser, calls: list[Call], role: Role
) -> None:
    user = make_user(role=role, mfa=True)
    granted = ROLE_PERMISSIONS[role] | PUBLIC_PERMISSIONS

    wrong = []
    for call in calls:
        status = _send(anonymous_client, call, user.headers)
        if call.permission in granted and status in {401, 403}:
            wrong.append(f"{call}: {status}, but {role} holds the permission")
        if call.permission not in granted and status != 403:
            wrong.append(f"{call}: {status}, expected 403 for {role}")

    assert wrong == []


def test_disabled_user_gets_401_everywhere(
    anonymous_client: TestClient, make_user: MakeUser, calls: list[Call]
) -> None:
    user = make_user(role=Role.ADMIN, status=UserStatus.DISABLED)

    wrong = [
        f"{call}: {status}"
        for call in calls
        if call.permission not in PUBLIC_PERMISSIONS
        and (status := _send(anonymous_client, call, user.headers)) != 401
    ]

    assert wrong == []


def test_admin_without_mfa_only_enrolls(
    anonymous_client: TestClient, make_user: MakeUser, calls: list[Call]
) -> None:
    admin = make_user(role=Role.ADMIN, mfa=False)

    wrong = []
    for call in calls:
        response = anonymous_client.request(
            call.method,
            call.url,
            headers=admin.headers,
            json={} if call.method in BODY_METHODS else None,
        )
        allowed = call.permission in BEFORE_MFA_ENROLLMENT | PUBLIC_PERMISSIONS
        if allowed and response.status_code in {401, 403}:
            wrong.append(f"{call}: {response.status_code}, but enrollment needs it")
        if not allowed and (
            response.status_code != 403 or _error_code(response) != "mfa_enrollment_required"
        ):
            wrong.append(f"{call}: {response.status_code}, expected mfa_enrollment_required")

    assert wrong == []


@pytest.mark.parametrize("role", list(Role))
def test_api_token_scoped_to_one_permission(
    anonymous_client: TestClient, make_user: MakeUser, calls: list[Call], role: Role
) -> None:
    user = make_user(role=role)
    created = anonymous_client.post(
        "/api/tokens", json={"name": "matrix", "scopes": ["tool:read"]}, headers=user.headers
    )
    token_headers = {"Authorization": f"Bearer {created.json()['token']}"}

    wrong = []
    for call in calls:
        status = _send(anonymous_client, call, token_headers)
        if call.permission in PUBLIC_PERMISSIONS:
            continue
        if call.permission is Permission.TOOL_READ and status in {401, 403}:
            wrong.append(f"{call}: {status} with the tool:read scope")
        if call.permission is not Permission.TOOL_READ and status != 403:
            wrong.append(f"{call}: {status}, expected 403 outside the token's scope")

    assert wrong == []


def test_developer_reads_providers_and_own_usage_only() -> None:
    developer = ROLE_PERMISSIONS[Role.DEVELOPER]
    viewer = ROLE_PERMISSIONS[Role.VIEWER]

    assert Permission.PROVIDER_READ in developer
    assert Permission.PROVIDER_READ in viewer
    assert {Permission.USAGE_READ, Permission.USAGE_EXPORT} <= developer
    assert not {Permission.USAGE_READ, Permission.USAGE_EXPORT} & viewer
    admin_only = {
        Permission.PROVIDER_CREATE,
        Permission.PROVIDER_UPDATE,
        Permission.PROVIDER_DELETE,
        Permission.BUDGET_CREATE,
        Permission.BUDGET_READ,
        Permission.BUDGET_UPDATE,
        Permission.BUDGET_DELETE,
        Permission.EGRESS_READ,
        Permission.EGRESS_UPDATE,
    }
    assert not admin_only & developer
    assert admin_only <= ROLE_PERMISSIONS[Role.ADMIN]


def _error_code(response: httpx.Response) -> str:
    """Return the error code of Llero's body, or of the OpenAI-shaped body under /v1/."""
    error = response.json()["error"]
    return str(error["code"] if isinstance(error, dict) else error)
