"""The one registry of permissions, named ``resource:action`` and kept sorted.

Every route declares exactly one permission through ``requires``; a test walks the router and fails
on a route that declares none or more than one. Until accounts exist every caller is the local
operator, so the dependency records the permission on the request without denying anything.
"""

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from fastapi import Depends, Request

PERMISSION_ATTRIBUTE = "__llero_permission__"


class Permission(StrEnum):
    AGENT_CREATE = "agent:create"
    AGENT_DELETE = "agent:delete"
    AGENT_READ = "agent:read"
    AGENT_UPDATE = "agent:update"
    AGENT_UPDATE_STATUS = "agent:update_status"
    API_SCHEMA_READ = "api_schema:read"
    API_TOKEN_CREATE = "api_token:create"  # noqa: S105 - a permission name, not a token
    API_TOKEN_READ = "api_token:read"  # noqa: S105 - a permission name, not a token
    API_TOKEN_REVOKE = "api_token:revoke"  # noqa: S105 - a permission name, not a token
    AUTH_ENROLL = "auth:enroll"
    AUTH_MFA_ENROLL = "auth:mfa_enroll"
    AUTH_REFRESH = "auth:refresh"
    AUTH_SIGNIN = "auth:signin"
    AUTH_SIGNOUT = "auth:signout"
    AUTH_SESSION_READ = "auth_session:read"
    AUTH_SESSION_REVOKE = "auth_session:revoke"
    CATEGORY_CREATE = "category:create"
    CATEGORY_DELETE = "category:delete"
    CATEGORY_READ = "category:read"
    CATEGORY_UPDATE = "category:update"
    HEALTH_READ = "health:read"
    JWKS_READ = "jwks:read"
    PROFILE_READ = "profile:read"
    PROFILE_UPDATE = "profile:update"
    TOOL_CREATE = "tool:create"
    TOOL_DELETE = "tool:delete"
    TOOL_EXPORT = "tool:export"
    TOOL_IMPORT = "tool:import"
    TOOL_READ = "tool:read"
    TOOL_TEST = "tool:test"
    TOOL_UPDATE = "tool:update"
    USER_CREATE = "user:create"
    USER_READ = "user:read"
    USER_REVOKE_SESSIONS = "user:revoke_sessions"
    USER_UPDATE = "user:update"


# Permissions that need no identity: liveness, the public keys, and the routes that establish an
# identity in the first place (each of those authenticates with the credential in its body).
PUBLIC_PERMISSIONS = frozenset(
    {
        Permission.AUTH_ENROLL,
        Permission.AUTH_REFRESH,
        Permission.AUTH_SIGNIN,
        Permission.AUTH_SIGNOUT,
        Permission.HEALTH_READ,
        Permission.JWKS_READ,
    }
)

# What a user may still do while a mandatory second factor is not enrolled: enroll it, see who
# they are, and manage their own sessions. Everything else waits for the second factor.
BEFORE_MFA_ENROLLMENT = frozenset(
    {
        Permission.AUTH_MFA_ENROLL,
        Permission.AUTH_SESSION_READ,
        Permission.AUTH_SESSION_REVOKE,
        Permission.PROFILE_READ,
    }
)


def requires(permission: Permission) -> Any:
    """Return a route dependency that names ``permission`` for the route it is attached to."""

    def check_permission(request: Request) -> None:
        request.state.permission = permission

    setattr(check_permission, PERMISSION_ATTRIBUTE, permission)
    return Depends(check_permission)


def permission_of(call: Callable[..., Any]) -> Permission | None:
    value = getattr(call, PERMISSION_ATTRIBUTE, None)
    return value if isinstance(value, Permission) else None
