"""Render docs/security/permissions.md from the permission registry and the role table.

scripts/generate_permissions_doc.py writes the file, and tests/access/test_roles.py fails when the
file in the repository differs from what this module renders.
"""

from llero.access.permissions import BEFORE_MFA_ENROLLMENT, PUBLIC_PERMISSIONS, Permission
from llero.access.roles import NOT_DELEGABLE, ROLE_PERMISSIONS, Role

DESCRIPTIONS: dict[Permission, str] = {
    Permission.AGENT_CREATE: "Create agents, owned by their creator.",
    Permission.AGENT_DELETE: "Delete one's own agents (admins: any agent).",
    Permission.AGENT_QUARANTINE: "Quarantine an agent: it cannot run and its grants are suspended.",
    Permission.AGENT_READ: "List and read one's own agents and those shared with one.",
    Permission.AGENT_RELEASE: "Release an agent from quarantine.",
    Permission.AGENT_SHARE: "Share one's own agents with a user or everyone, and unshare them.",
    Permission.AGENT_UPDATE: "Change one's own agents and their toolkits (admins: any agent).",
    Permission.AGENT_UPDATE_STATUS: "Activate or disable agents.",
    Permission.API_SCHEMA_READ: "Read the OpenAPI document.",
    Permission.API_TOKEN_CREATE: "Create personal API tokens for oneself.",
    Permission.API_TOKEN_READ: "List one's own personal API tokens.",
    Permission.API_TOKEN_REVOKE: "Revoke one's own personal API tokens.",
    Permission.AUDIT_EXPORT: "Export audit records as JSON lines; each export is audited.",
    Permission.AUDIT_PURGE: "Remove audit records older than the retention period.",
    Permission.AUDIT_READ: "Search and read audit records.",
    Permission.AUDIT_VERIFY: "Check the audit chain for edited, deleted or inserted records.",
    Permission.AUTH_ENROLL: (
        "Set the first password with a one-time enrollment code or invitation link."
    ),
    Permission.AUTH_MFA_ENROLL: "Enroll a TOTP second factor and receive recovery codes.",
    Permission.AUTH_PASSWORD_RESET: (
        "Request a password reset link by mail, and set a new password with it."
    ),
    Permission.AUTH_REFRESH: "Exchange a refresh token for new tokens.",
    Permission.AUTH_SIGNIN: "Sign in with email and password, then a second factor if needed.",
    Permission.AUTH_SIGNOUT: "End the session of a refresh token.",
    Permission.AUTH_SIGNUP: "Sign up when open sign-up is on; a verification link is mailed.",
    Permission.AUTH_VERIFY_EMAIL: "Confirm a sign-up with its mailed link and set the password.",
    Permission.AUTH_SESSION_READ: "List one's own sign-in sessions.",
    Permission.AUTH_SESSION_REVOKE: "End one of one's own sign-in sessions.",
    Permission.BUDGET_CREATE: "Set spending budgets per user, per agent or overall.",
    Permission.BUDGET_DELETE: "Remove spending budgets.",
    Permission.BUDGET_READ: "List spending budgets with what has been spent against them.",
    Permission.BUDGET_UPDATE: "Change the amount of spending budgets.",
    Permission.CATEGORY_CREATE: "Create tool categories.",
    Permission.CATEGORY_DELETE: "Delete tool categories.",
    Permission.CATEGORY_READ: "List and read tool categories.",
    Permission.CATEGORY_UPDATE: "Change tool categories.",
    Permission.CHAT_SESSION_CREATE: "Open a session with an agent.",
    Permission.CHAT_SESSION_DELETE: "Delete one's own sessions.",
    Permission.CHAT_SESSION_READ: "List and read one's own sessions.",
    Permission.CHAT_SESSION_RUN: "Send messages and tool results in one's own sessions.",
    Permission.EGRESS_READ: "Read the egress allowlist: settings and admin-added entries.",
    Permission.EGRESS_UPDATE: "Add and remove hosts and endpoints on the egress allowlist.",
    Permission.HEALTH_READ: "Liveness and readiness checks.",
    Permission.INCIDENT_REVOKE_ALL: "Revoke every session, API token and access token at once.",
    Permission.JWKS_READ: "Read the public keys that verify access tokens.",
    Permission.LOCKDOWN_READ: "Read whether the system is in lockdown.",
    Permission.LOCKDOWN_UPDATE: "Switch the lockdown (read-only for non-admins) on or off.",
    Permission.PROFILE_READ: "Read one's own account.",
    Permission.PROFILE_UPDATE: "Change one's own display name.",
    Permission.PROVIDER_CREATE: "Configure LLM providers: base URL, key and model prices.",
    Permission.PROVIDER_DELETE: "Delete providers that no agent uses.",
    Permission.PROVIDER_READ: "List providers with their models and prices.",
    Permission.PROVIDER_UPDATE: (
        "Change providers and attach or detach their keys; see base URLs and secret ids."
    ),
    Permission.SECRET_CREATE: "Store secrets; the caller owns them.",
    Permission.SECRET_DELETE: "Delete secrets and destroy old versions (own, or any as admin).",
    Permission.SECRET_GRANT: "Grant secrets to agents for a purpose (own to own, or any as admin).",
    Permission.SECRET_READ: "List and read secret metadata and grants; never a value.",
    Permission.SECRET_REVOKE: "Revoke grants of secrets (own, or any as admin).",
    Permission.SECRET_ROTATE: "Replace the value of secrets (own, or any as admin).",
    Permission.SIGNING_KEY_ROTATE: "Make a new access token signing key current.",
    Permission.TOOL_CREATE: "Create tools, owned by their creator, and clone visible tools.",
    Permission.TOOL_DELETE: "Delete one's own tools (admins: any tool).",
    Permission.TOOL_EXPORT: "Export visible tools in provider formats.",
    Permission.TOOL_IMPORT: "Import tools from provider formats, owned by the importer.",
    Permission.TOOL_READ: "List and read one's own tools, those shared with one, and versions.",
    Permission.TOOL_SHARE: "Share one's own tools with a user or everyone, and unshare them.",
    Permission.TOOL_TEST: "Check arguments against the schema of a visible tool.",
    Permission.TOOL_UPDATE: "Change, restore and set the status of one's own tools.",
    Permission.USAGE_EXPORT: "Export usage reports as CSV (one's own; admins: everyone's).",
    Permission.USAGE_READ: "Read usage reports (one's own; admins: everyone's).",
    Permission.USER_CREATE: "Create users, who receive a one-time enrollment code.",
    Permission.USER_INVITE: "Invite users by mail with a role, and send an invitation again.",
    Permission.USER_READ: "List and read all users.",
    Permission.USER_REVOKE_SESSIONS: "End every session of a user at once.",
    Permission.USER_UPDATE: "Change a user's role or status.",
    Permission.VAULT_UNSEAL: "Unseal a vault that started without its master key, with that key.",
}

ROLE_ORDER = (Role.VIEWER, Role.DEVELOPER, Role.ADMIN)

HEADER = """\
# Permissions

Generated from `src/llero/access/roles.py` and `src/llero/access/permissions.py` by
`.venv/bin/python scripts/generate_permissions_doc.py`; do not edit by hand.

Every route names exactly one permission. A public permission needs no sign-in. Any other needs
a signed-in user whose role grants it; with a personal API token, the token's scopes must grant
it too. Tools and agents are also checked object by object: admins see and change all of
them, other users see their own and those shared with them or with everyone, and change only
their own. See [ownership.md](ownership.md). The secret permissions act on the caller's own
secrets only (admins: all), and a developer grants them only to agents they own.
"""


def _mark(granted: bool) -> str:
    return "yes" if granted else "no"


def _public_rows() -> list[str]:
    rows = ["| Permission | What it allows |", "|---|---|"]
    for permission in sorted(PUBLIC_PERMISSIONS):
        rows.append(f"| `{permission}` | {DESCRIPTIONS[permission]} |")
    return rows


def _role_rows() -> list[str]:
    names = " | ".join(role.value for role in ROLE_ORDER)
    rows = [
        f"| Permission | What it allows | {names} | API token scope |",
        "|---|---|" + "---|" * len(ROLE_ORDER) + "---|",
    ]
    for permission in Permission:
        if permission in PUBLIC_PERMISSIONS:
            continue
        marks = " | ".join(_mark(permission in ROLE_PERMISSIONS[role]) for role in ROLE_ORDER)
        scope = _mark(permission not in NOT_DELEGABLE)
        rows.append(f"| `{permission}` | {DESCRIPTIONS[permission]} | {marks} | {scope} |")
    return rows


def render_permissions_markdown() -> str:
    """Return the whole permissions page as Markdown."""
    before_mfa = ", ".join(f"`{permission}`" for permission in sorted(BEFORE_MFA_ENROLLMENT))
    sections = [
        HEADER,
        "## Public",
        "",
        *_public_rows(),
        "",
        "## By role",
        "",
        *_role_rows(),
        "",
        "## Before a mandatory second factor is enrolled",
        "",
        "While `LLERO_MFA_REQUIRED_FOR_ADMINS` is true (the default), an admin who has not",
        "enrolled TOTP holds only the permissions below; with `LLERO_MFA_REQUIRED_FOR_EVERYONE`",
        "every user does. Any other permission of the role gets 403 `mfa_enrollment_required`",
        "until the first TOTP code is confirmed.",
        "",
        before_mfa,
        "",
    ]
    return "\n".join(sections)
