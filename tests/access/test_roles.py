"""The role table: who may do what, what an API token may carry, and the generated page that
documents both."""

from pathlib import Path

import pytest

from llero.access.docs import DESCRIPTIONS, render_permissions_markdown
from llero.access.permissions import BEFORE_MFA_ENROLLMENT, PUBLIC_PERMISSIONS, Permission
from llero.access.roles import (
    NOT_DELEGABLE,
    ROLE_PERMISSIONS,
    Role,
    delegable_permissions,
    permissions_of,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "security" / "permissions.md"

USER_MANAGEMENT = {
    Permission.USER_CREATE,
    Permission.USER_READ,
    Permission.USER_REVOKE_SESSIONS,
    Permission.USER_UPDATE,
}


def test_permissions_doc_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render_permissions_markdown(), (
        "docs/security/permissions.md is stale; run "
        ".venv/bin/python scripts/generate_permissions_doc.py"
    )


def test_every_permission_described() -> None:
    assert set(DESCRIPTIONS) == set(Permission)


def test_admin_holds_every_non_public_permission() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission) - PUBLIC_PERMISSIONS


def test_roles_nest_viewer_developer_admin() -> None:
    assert ROLE_PERMISSIONS[Role.VIEWER] < ROLE_PERMISSIONS[Role.DEVELOPER]
    assert ROLE_PERMISSIONS[Role.DEVELOPER] < ROLE_PERMISSIONS[Role.ADMIN]


@pytest.mark.parametrize("role", list(Role))
def test_no_role_lists_public_permission(role: Role) -> None:
    assert not ROLE_PERMISSIONS[role] & PUBLIC_PERMISSIONS


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER])
def test_only_admin_manages_users(role: Role) -> None:
    assert not ROLE_PERMISSIONS[role] & USER_MANAGEMENT


def test_viewer_only_reads_tools_and_agents() -> None:
    viewer = ROLE_PERMISSIONS[Role.VIEWER]

    assert Permission.TOOL_READ in viewer
    assert Permission.AGENT_READ in viewer
    for permission in viewer:
        resource, action = permission.value.split(":")
        if resource in {"tool", "agent", "category"}:
            assert action in {"read", "export"}, permission


def test_developer_builds_tools_and_agents() -> None:
    developer = ROLE_PERMISSIONS[Role.DEVELOPER]

    assert {
        Permission.TOOL_CREATE,
        Permission.TOOL_UPDATE,
        Permission.TOOL_DELETE,
        Permission.AGENT_CREATE,
        Permission.AGENT_UPDATE,
        Permission.AGENT_DELETE,
    } <= developer
    assert Permission.AGENT_UPDATE_STATUS not in developer
    assert Permission.CATEGORY_CREATE not in developer


@pytest.mark.parametrize("role", list(Role))
def test_every_role_may_enroll_mfa_and_manage_own_sessions(role: Role) -> None:
    assert ROLE_PERMISSIONS[role] >= BEFORE_MFA_ENROLLMENT


@pytest.mark.parametrize("role", ["", "root", "ADMIN", "admin "])
def test_unknown_role_has_no_permissions(role: str) -> None:
    assert permissions_of(role) == frozenset()


@pytest.mark.parametrize("role", list(Role))
def test_api_token_never_carries_token_creation_or_mfa(role: Role) -> None:
    delegable = delegable_permissions(role)

    assert not delegable & NOT_DELEGABLE
    assert delegable == ROLE_PERMISSIONS[role] - NOT_DELEGABLE
