"""Roles and the one table of what each role may do.

A user has exactly one role. Public permissions need no identity and are in no role. Admins hold
every other permission, including any added later, so a new permission is denied to developers
and viewers until it is placed here on purpose. A permission admits a caller to a route; which
tools and agents the route then shows or changes is decided per object by
llero.access.ownership. docs/security/permissions.md is generated from
this module by scripts/generate_permissions_doc.py, and a test fails when it is stale.
"""

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from llero.access.permissions import PUBLIC_PERMISSIONS, Permission


class Role(StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


# The permissions of every signed-in user over their own account, sessions and API tokens.
_SELF_SERVICE = frozenset(
    {
        Permission.API_SCHEMA_READ,
        Permission.API_TOKEN_CREATE,
        Permission.API_TOKEN_READ,
        Permission.API_TOKEN_REVOKE,
        Permission.AUTH_MFA_ENROLL,
        Permission.AUTH_SESSION_READ,
        Permission.AUTH_SESSION_REVOKE,
        Permission.PROFILE_READ,
        Permission.PROFILE_UPDATE,
    }
)

# Everyone who may see agents may see which providers and models exist and what they cost. The
# provider routes show base URLs and secret ids only to holders of provider:update.
_VIEWER = _SELF_SERVICE | {
    Permission.AGENT_READ,
    Permission.CATEGORY_READ,
    Permission.CHAT_SESSION_READ,
    Permission.PROVIDER_READ,
    Permission.TOOL_EXPORT,
    Permission.TOOL_READ,
}

# Developers build tools and agents. The agent status route stays with admins, because it can
# lift a quarantine, and categories are shared by everyone, so admins curate them. Providers,
# budgets and the egress allowlist decide where keys go and what may be spent, so they stay with
# admins too. The usage routes show a developer their own usage only. The secret
# routes act only on the developer's own secrets and agents (llero.academy.service); viewers see
# no secrets at all.
_DEVELOPER = _VIEWER | {
    Permission.AGENT_CREATE,
    Permission.AGENT_DELETE,
    Permission.AGENT_SHARE,
    Permission.AGENT_UPDATE,
    Permission.CHAT_SESSION_CREATE,
    Permission.CHAT_SESSION_DELETE,
    Permission.CHAT_SESSION_RUN,
    Permission.SECRET_CREATE,
    Permission.SECRET_DELETE,
    Permission.SECRET_GRANT,
    Permission.SECRET_READ,
    Permission.SECRET_REVOKE,
    Permission.SECRET_ROTATE,
    Permission.TOOL_CREATE,
    Permission.TOOL_DELETE,
    Permission.TOOL_IMPORT,
    Permission.TOOL_SHARE,
    Permission.TOOL_TEST,
    Permission.TOOL_UPDATE,
    Permission.USAGE_EXPORT,
    Permission.USAGE_READ,
}

_ADMIN = frozenset(Permission) - PUBLIC_PERMISSIONS

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.ADMIN: _ADMIN,
        Role.DEVELOPER: frozenset(_DEVELOPER),
        Role.VIEWER: frozenset(_VIEWER),
    }
)

# Permissions an API token can never carry: a leaked token must not mint further tokens that
# outlive it, nor replace its owner's second factor, nor lift the containment of an incident.
NOT_DELEGABLE = frozenset(
    {
        Permission.AGENT_RELEASE,
        Permission.API_TOKEN_CREATE,
        Permission.AUTH_MFA_ENROLL,
        Permission.LOCKDOWN_UPDATE,
    }
)


def permissions_of(role: str) -> frozenset[Permission]:
    """Return the permissions of ``role``; an unknown role has none."""
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


def delegable_permissions(role: str) -> frozenset[Permission]:
    """Return the permissions that an API token of a user with ``role`` may be scoped to."""
    return permissions_of(role) - NOT_DELEGABLE
