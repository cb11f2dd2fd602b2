"""The one registry of permissions, named ``resource:action`` and kept sorted, and the one check.

Every route declares exactly one permission through ``requires``; a test walks the router and fails
on a route that declares none or more than one. ``requires`` is also where every request is
authenticated and authorised: a public permission needs no identity, any other needs a principal
whose permissions contain it. Who the caller is comes from the authenticator that
``create_app`` puts on ``app.state.authenticator``, and what a role may do from access.roles.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import structlog
from fastapi import Depends, Request

from llero.errors import LleroError

PERMISSION_ATTRIBUTE = "__llero_permission__"
# Methods that change nothing, and so stay open to everyone during a lockdown.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

log = structlog.get_logger("llero.access")


class Permission(StrEnum):
    AGENT_CREATE = "agent:create"
    AGENT_DELETE = "agent:delete"
    AGENT_QUARANTINE = "agent:quarantine"
    AGENT_READ = "agent:read"
    AGENT_RELEASE = "agent:release"
    AGENT_SHARE = "agent:share"
    AGENT_UPDATE = "agent:update"
    AGENT_UPDATE_STATUS = "agent:update_status"
    API_SCHEMA_READ = "api_schema:read"
    API_TOKEN_CREATE = "api_token:create"  # noqa: S105 - a permission name, not a token
    API_TOKEN_READ = "api_token:read"  # noqa: S105 - a permission name, not a token
    API_TOKEN_REVOKE = "api_token:revoke"  # noqa: S105 - a permission name, not a token
    AUDIT_EXPORT = "audit:export"
    AUDIT_PURGE = "audit:purge"
    AUDIT_READ = "audit:read"
    AUDIT_VERIFY = "audit:verify"
    AUTH_ENROLL = "auth:enroll"
    AUTH_MFA_ENROLL = "auth:mfa_enroll"
    AUTH_PASSWORD_RESET = "auth:password_reset"  # noqa: S105 - a permission name, not a password
    AUTH_REFRESH = "auth:refresh"
    AUTH_SIGNIN = "auth:signin"
    AUTH_SIGNOUT = "auth:signout"
    AUTH_SIGNUP = "auth:signup"
    AUTH_VERIFY_EMAIL = "auth:verify_email"
    AUTH_SESSION_READ = "auth_session:read"
    AUTH_SESSION_REVOKE = "auth_session:revoke"
    BUDGET_CREATE = "budget:create"
    BUDGET_DELETE = "budget:delete"
    BUDGET_READ = "budget:read"
    BUDGET_UPDATE = "budget:update"
    CATEGORY_CREATE = "category:create"
    CATEGORY_DELETE = "category:delete"
    CATEGORY_READ = "category:read"
    CATEGORY_UPDATE = "category:update"
    CHAT_SESSION_CREATE = "chat_session:create"
    CHAT_SESSION_DELETE = "chat_session:delete"
    CHAT_SESSION_READ = "chat_session:read"
    CHAT_SESSION_RUN = "chat_session:run"
    EGRESS_READ = "egress:read"
    EGRESS_UPDATE = "egress:update"
    HEALTH_READ = "health:read"
    INCIDENT_REVOKE_ALL = "incident:revoke_all"
    JWKS_READ = "jwks:read"
    LOCKDOWN_READ = "lockdown:read"
    LOCKDOWN_UPDATE = "lockdown:update"
    PROFILE_READ = "profile:read"
    PROFILE_UPDATE = "profile:update"
    PROVIDER_CREATE = "provider:create"
    PROVIDER_DELETE = "provider:delete"
    PROVIDER_READ = "provider:read"
    PROVIDER_UPDATE = "provider:update"
    SECRET_CREATE = "secret:create"  # noqa: S105 - a permission name, not a secret
    SECRET_DELETE = "secret:delete"  # noqa: S105 - a permission name, not a secret
    SECRET_GRANT = "secret:grant"  # noqa: S105 - a permission name, not a secret
    SECRET_READ = "secret:read"  # noqa: S105 - a permission name, not a secret
    SECRET_REVOKE = "secret:revoke"  # noqa: S105 - a permission name, not a secret
    SECRET_ROTATE = "secret:rotate"  # noqa: S105 - a permission name, not a secret
    SIGNING_KEY_ROTATE = "signing_key:rotate"
    TOOL_CREATE = "tool:create"
    TOOL_DELETE = "tool:delete"
    TOOL_EXPORT = "tool:export"
    TOOL_IMPORT = "tool:import"
    TOOL_READ = "tool:read"
    TOOL_SHARE = "tool:share"
    TOOL_TEST = "tool:test"
    TOOL_UPDATE = "tool:update"
    USAGE_EXPORT = "usage:export"
    USAGE_READ = "usage:read"
    USER_CREATE = "user:create"
    USER_INVITE = "user:invite"
    USER_READ = "user:read"
    USER_REVOKE_SESSIONS = "user:revoke_sessions"
    USER_UPDATE = "user:update"
    VAULT_UNSEAL = "vault:unseal"


# Permissions that need no identity: liveness, the public keys, the routes that establish an
# identity in the first place (each of those authenticates with the credential in its body), and
# the requests for a reset or a sign-up, which only send mail to the address given.
# Unsealing the vault is public too: the master key in the body authorises it, and a sealed
# server cannot decrypt what sign-in needs, so nobody could sign in first.
PUBLIC_PERMISSIONS = frozenset(
    {
        Permission.AUTH_ENROLL,
        Permission.AUTH_PASSWORD_RESET,
        Permission.AUTH_REFRESH,
        Permission.AUTH_SIGNIN,
        Permission.AUTH_SIGNOUT,
        Permission.AUTH_SIGNUP,
        Permission.AUTH_VERIFY_EMAIL,
        Permission.HEALTH_READ,
        Permission.JWKS_READ,
        Permission.VAULT_UNSEAL,
    }
)

# The permissions left to a user who must enroll a second factor and has not: enrolling it,
# reading their own account, and managing their own sessions. Everything else waits for it.
BEFORE_MFA_ENROLLMENT = frozenset(
    {
        Permission.AUTH_MFA_ENROLL,
        Permission.AUTH_SESSION_READ,
        Permission.AUTH_SESSION_REVOKE,
        Permission.PROFILE_READ,
    }
)


class TokenKind(StrEnum):
    """The credential a request was authenticated with."""

    ACCESS_TOKEN = "access_token"  # noqa: S105 - a credential kind, not a token
    API_TOKEN = "api_token"  # noqa: S105 - a credential kind, not a token
    SESSION_COOKIE = "session_cookie"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request.

    ``permissions`` are those of the user's current role, narrowed to the token's scopes for an
    API token. ``mfa_enrollment_required`` is set while the user must enroll a second factor,
    and then only BEFORE_MFA_ENROLLMENT is granted.
    """

    user_id: int
    role: str
    permissions: frozenset[Permission]
    token_kind: TokenKind
    mfa_enrollment_required: bool = False
    # The system is in lockdown and the caller is not an admin, so only safe methods pass.
    read_only: bool = False


class NotAuthenticated(LleroError):
    """No credential was presented, or the one presented is invalid; the reason is for the log."""

    code = "unauthenticated"

    def __init__(self, reason: str) -> None:
        super().__init__("authentication is required")
        self.reason = reason


class PermissionDenied(LleroError):
    """The caller is authenticated but its role or token scopes lack the permission."""

    code = "forbidden"

    def __init__(self, message: str = "you do not have permission to do this") -> None:
        super().__init__(message)


class MfaEnrollmentRequired(PermissionDenied):
    """The caller must enroll a second factor before anything but BEFORE_MFA_ENROLLMENT."""

    code = "mfa_enrollment_required"

    def __init__(self) -> None:
        super().__init__("enroll a second factor first: POST /api/auth/mfa/totp")


class LockedDown(LleroError):
    """The system is in lockdown: until an admin lifts it, only admins may change anything."""

    code = "locked_down"

    def __init__(self) -> None:
        super().__init__(
            "Llero is in lockdown: only admins can make changes until an admin lifts it; "
            "reading still works"
        )


class Authenticator(Protocol):
    """Turns the credential of a request into a principal, or raises NotAuthenticated."""

    async def principal_of(self, request: Request) -> Principal: ...


class RequestLimiter(Protocol):
    """Counts requests before and after authentication and raises RateLimited past a limit.

    ``create_app`` puts one on ``app.state.rate_limiter`` unless rate limits are switched off.
    """

    async def before_authentication(self, request: Request, permission: Permission) -> None: ...

    async def after_authentication(
        self, request: Request, permission: Permission, principal: Principal
    ) -> None: ...


def authorize(principal: Principal, permission: Permission) -> None:
    """Raise PermissionDenied unless ``principal`` may use ``permission`` now."""
    if permission not in principal.permissions:
        log.info(
            "auth:denied",
            reason="permission_not_granted",
            user_id=principal.user_id,
            role=principal.role,
            token_kind=principal.token_kind,
            permission=permission,
        )
        raise PermissionDenied
    if principal.mfa_enrollment_required and permission not in BEFORE_MFA_ENROLLMENT:
        log.info(
            "auth:denied",
            reason="mfa_enrollment_required",
            user_id=principal.user_id,
            permission=permission,
        )
        raise MfaEnrollmentRequired


def requires(permission: Permission) -> Any:
    """Return a route dependency that names ``permission`` and enforces it for the route."""

    async def check_permission(request: Request) -> None:
        request.state.permission = permission
        limiter: RequestLimiter | None = getattr(request.app.state, "rate_limiter", None)
        if limiter is not None:
            await limiter.before_authentication(request, permission)
        if permission in PUBLIC_PERMISSIONS:
            return
        authenticator: Authenticator = request.app.state.authenticator
        principal = await authenticator.principal_of(request)
        # Counted before authorisation, so probing for permissions is limited too.
        if limiter is not None:
            await limiter.after_authentication(request, permission, principal)
        authorize(principal, permission)
        if principal.read_only and request.method not in SAFE_METHODS:
            log.info("auth:denied", reason="lockdown", user_id=principal.user_id)
            raise LockedDown
        request.state.principal = principal

    setattr(check_permission, PERMISSION_ATTRIBUTE, permission)
    return Depends(check_permission)


def permission_of(call: Callable[..., Any]) -> Permission | None:
    value = getattr(call, PERMISSION_ATTRIBUTE, None)
    return value if isinstance(value, Permission) else None


def principal_of(request: Request) -> Principal:
    """Return the principal that ``requires`` set; only for routes with a non-public permission."""
    principal: Principal = request.state.principal
    return principal
