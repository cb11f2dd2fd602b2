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
    CATEGORY_CREATE = "category:create"
    CATEGORY_DELETE = "category:delete"
    CATEGORY_READ = "category:read"
    CATEGORY_UPDATE = "category:update"
    HEALTH_READ = "health:read"
    TOOL_CREATE = "tool:create"
    TOOL_DELETE = "tool:delete"
    TOOL_EXPORT = "tool:export"
    TOOL_IMPORT = "tool:import"
    TOOL_READ = "tool:read"
    TOOL_TEST = "tool:test"
    TOOL_UPDATE = "tool:update"


# Permissions that an anonymous caller holds once sign-in exists: liveness checks only.
PUBLIC_PERMISSIONS = frozenset({Permission.HEALTH_READ})


def requires(permission: Permission) -> Any:
    """Return a route dependency that names ``permission`` for the route it is attached to."""

    def check_permission(request: Request) -> None:
        request.state.permission = permission

    setattr(check_permission, PERMISSION_ATTRIBUTE, permission)
    return Depends(check_permission)


def permission_of(call: Callable[..., Any]) -> Permission | None:
    value = getattr(call, PERMISSION_ATTRIBUTE, None)
    return value if isinstance(value, Permission) else None
