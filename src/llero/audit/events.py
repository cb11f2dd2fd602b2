"""The names of audit events, typed ``subject:action``.

An event name is stored as text and covered by the record hash, so a name must never change once
it has been written: add a new member instead of renaming one. Members are kept sorted by value,
and a test fails when they are not.
"""

from enum import StrEnum


class AuditEvent(StrEnum):
    AGENT_CREATED = "agent:created"
    AGENT_DELETED = "agent:deleted"
    AGENT_QUARANTINED = "agent:quarantined"
    AGENT_RELEASED = "agent:released"
    AGENT_SHARED = "agent:shared"
    AGENT_STATUS_CHANGED = "agent:status_changed"
    AGENT_UNSHARED = "agent:unshared"
    AGENT_UPDATED = "agent:updated"
    API_TOKEN_CREATED = "api_token:created"  # noqa: S105 - an event name, not a token
    API_TOKEN_REVOKED = "api_token:revoked"  # noqa: S105 - an event name, not a token
    AUDIT_EXPORTED = "audit:exported"
    AUDIT_PURGED = "audit:purged"
    BACKUP_CREATED = "backup:created"
    BACKUP_RESTORED = "backup:restored"
    BUDGET_CREATED = "budget:created"
    BUDGET_DELETED = "budget:deleted"
    BUDGET_EXCEEDED = "budget:exceeded"
    BUDGET_UPDATED = "budget:updated"
    CATEGORY_CREATED = "category:created"
    CATEGORY_DELETED = "category:deleted"
    CATEGORY_UPDATED = "category:updated"
    CHAT_SESSION_CREATED = "chat_session:created"
    CHAT_SESSION_DELETED = "chat_session:deleted"
    GRANT_CREATED = "grant:created"
    GRANT_REVOKED = "grant:revoked"
    INCIDENT_REVOKE_ALL = "incident:revoke_all"
    KEK_ADDED = "kek:added"
    KEK_RETIRED = "kek:retired"
    KEK_ROTATION_FINISHED = "kek:rotation_finished"
    KEK_ROTATION_STARTED = "kek:rotation_started"
    KEK_STATUS_VIEWED = "kek:status_viewed"
    PROVIDER_CREATED = "provider:created"
    PROVIDER_DELETED = "provider:deleted"
    PROVIDER_SECRET_ATTACHED = "provider:secret_attached"  # noqa: S105 - an event name
    PROVIDER_SECRET_DETACHED = "provider:secret_detached"  # noqa: S105 - an event name
    PROVIDER_UPDATED = "provider:updated"
    RATE_LIMIT_EXCEEDED = "rate_limit:exceeded"
    ROLE_GRANTED = "role:granted"
    ROLE_REVOKED = "role:revoked"
    SECRET_CREATED = "secret:created"  # noqa: S105 - an event name, not a secret
    SECRET_DELETED = "secret:deleted"  # noqa: S105 - an event name, not a secret
    SECRET_ROTATED = "secret:rotated"  # noqa: S105 - an event name, not a secret
    SECRET_USED = "secret:used"  # noqa: S105 - an event name, not a secret
    SECRET_VERSION_DESTROYED = "secret:version_destroyed"  # noqa: S105 - an event name
    SESSION_REVOKED = "session:revoked"
    SETTINGS_CHANGED = "settings:changed"
    SIGNING_KEY_ROTATED = "signing_key:rotated"
    TOKEN_FAMILY_REVOKED = "token:family_revoked"  # noqa: S105 - an event name, not a token
    TOOL_CREATED = "tool:created"
    TOOL_DELETED = "tool:deleted"
    TOOL_EXPORTED = "tool:exported"
    TOOL_IMPORTED = "tool:imported"
    TOOL_SHARED = "tool:shared"
    TOOL_UNSHARED = "tool:unshared"
    TOOL_UPDATED = "tool:updated"
    USER_CREATED = "user:created"
    USER_DELETED = "user:deleted"
    USER_EMAIL_VERIFIED = "user:email_verified"
    USER_ENROLLMENT_CODE_ISSUED = "user:enrollment_code_issued"
    USER_INVITATION_ACCEPTED = "user:invitation_accepted"
    USER_INVITED = "user:invited"
    USER_LOGIN_FAILED = "user:login_failed"
    USER_LOGIN_SUCCEEDED = "user:login_succeeded"
    USER_LOGOUT = "user:logout"
    USER_MFA_DISABLED = "user:mfa_disabled"
    USER_MFA_ENABLED = "user:mfa_enabled"
    USER_PASSWORD_CHANGED = "user:password_changed"  # noqa: S105 - an event name
    USER_PASSWORD_RESET = "user:password_reset"  # noqa: S105 - an event name
    USER_PASSWORD_RESET_REQUESTED = "user:password_reset_requested"  # noqa: S105 - an event name
    USER_PROFILE_UPDATED = "user:profile_updated"
    USER_SIGNED_UP = "user:signed_up"
    USER_STATUS_CHANGED = "user:status_changed"
    VAULT_BACKEND_FAILED = "vault:backend_failed"
    VAULT_UNSEAL_FAILED = "vault:unseal_failed"
    VAULT_UNSEALED = "vault:unsealed"


class ActorKind(StrEnum):
    """Who caused an event: a signed-in user, an agent acting on its own, or Llero itself."""

    AGENT = "agent"
    SYSTEM = "system"
    USER = "user"
