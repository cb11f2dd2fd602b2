"""Request and response bodies of the sign-in, session, user and API token routes.

Secrets in responses (tokens, codes, seeds) appear only in the one response that creates them.
"""

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from llero.access.permissions import Permission
from llero.access.roles import Role
from llero.identity.api_tokens import DEFAULT_LIFETIME_DAYS, MAX_LIFETIME_DAYS
from llero.identity.mfa import RECOVERY_CODE_COUNT
from llero.identity.models import DISPLAY_NAME_MAX, EMAIL_MAX, TOKEN_NAME_MAX
from llero.web.schemas import RequestModel, ResponseModel

# The policy allows 256 characters after NFKC normalisation, which can shrink some input, so the
# body allows more and the policy decides.
PASSWORD_INPUT_MAX = 1024
# Every token and code Llero issues is shorter; a longer value cannot be one of them.
TOKEN_INPUT_MAX = 128
TOTP_CODE_MAX = 16
# A recovery code is 26 characters; dashes and spaces that readers type add a few.
RECOVERY_CODE_INPUT_MAX = 64
SCOPES_MAX = len(Permission)

Email = Annotated[str, Field(min_length=1, max_length=EMAIL_MAX)]
Password = Annotated[str, Field(min_length=1, max_length=PASSWORD_INPUT_MAX)]
OpaqueInput = Annotated[str, Field(min_length=1, max_length=TOKEN_INPUT_MAX)]
DisplayName = Annotated[str, Field(max_length=DISPLAY_NAME_MAX)]
# JSON carries enum members as strings, which strict mode rejects when FastAPI validates the
# parsed body, so enum fields are lax (as TypeField in llero.forge.spec is).
RoleField = Annotated[Role, Field(strict=False)]
Scope = Annotated[Permission, Field(strict=False)]


class SignInRequest(RequestModel):
    email: Email
    password: Password
    # True for the browser: the access token is also set as an HttpOnly cookie.
    session_cookie: bool = False


class SignInMfaRequest(RequestModel):
    challenge: OpaqueInput
    code: Annotated[str, Field(max_length=TOTP_CODE_MAX)] | None = None
    recovery_code: Annotated[str, Field(max_length=RECOVERY_CODE_INPUT_MAX)] | None = None
    session_cookie: bool = False

    @model_validator(mode="after")
    def _one_factor(self) -> Self:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("give exactly one of code and recovery_code")
        return self


class RefreshRequest(RequestModel):
    refresh_token: OpaqueInput
    session_cookie: bool = False


class SignOutRequest(RequestModel):
    refresh_token: OpaqueInput


class EnrollRequest(RequestModel):
    code: OpaqueInput
    password: Password


class PasswordResetRequest(RequestModel):
    email: Email


class TokenPasswordRequest(RequestModel):
    """A token from a mailed link (reset, verification, invitation) and the password to set."""

    token: OpaqueInput
    password: Password


class SignUpRequest(RequestModel):
    email: Email
    display_name: DisplayName = ""


class InvitationCreate(RequestModel):
    email: Email
    display_name: DisplayName = ""
    role: RoleField


class TotpConfirmRequest(RequestModel):
    code: Annotated[str, Field(min_length=1, max_length=TOTP_CODE_MAX)]


class ProfileUpdate(RequestModel):
    """The fields a user may change about themselves: only the display name."""

    display_name: DisplayName


class UserCreate(RequestModel):
    email: Email
    display_name: DisplayName = ""
    role: RoleField


class UserUpdate(RequestModel):
    role: RoleField | None = None
    status: Literal["active", "disabled"] | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if self.role is None and self.status is None:
            raise ValueError("give role, status or both")
        return self


class ApiTokenCreate(RequestModel):
    name: Annotated[str, Field(min_length=1, max_length=TOKEN_NAME_MAX)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=SCOPES_MAX)]
    expires_in_days: Annotated[int, Field(ge=1, le=MAX_LIFETIME_DAYS)] = DEFAULT_LIFETIME_DAYS


class SignedIn(ResponseModel):
    status: Literal["signed_in"] = "signed_in"
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the RFC 6750 token type
    access_token: str
    expires_at: datetime
    expires_in: int
    refresh_token: str
    session_id: int
    # When the refresh token stops working if unused, and when the session ends regardless.
    refresh_expires_at: datetime
    session_expires_at: datetime
    # True while the account must enroll a second factor before anything else.
    mfa_enrollment_required: bool
    # Set with session_cookie: repeat it in the X-CSRF-Token header of unsafe requests.
    csrf_token: str | None = None


class MfaRequired(ResponseModel):
    status: Literal["mfa_required"] = "mfa_required"
    challenge: str
    challenge_expires_at: datetime
    methods: tuple[str, ...] = ("totp", "recovery_code")


class Enrolled(ResponseModel):
    user_id: int
    status: Literal["active"] = "active"


class UserOut(ResponseModel):
    id: int
    email: str
    display_name: str
    role: str
    status: str
    mfa_enabled: bool
    created_at: datetime
    last_login_at: datetime | None


class MailAccepted(ResponseModel):
    """The same answer whether or not the address has an account."""

    status: Literal["accepted"] = "accepted"
    message: str


class PasswordSet(ResponseModel):
    user_id: int
    status: Literal["active"] = "active"


class UserPage(ResponseModel):
    items: list[UserOut]
    total: int
    limit: int
    offset: int


class UserCreated(ResponseModel):
    user: UserOut
    # Shown once: the user sets a password with it at POST /api/auth/enroll.
    enrollment_code: str
    enrollment_code_expires_at: datetime


class InvitationSent(ResponseModel):
    user: UserOut
    # The link is mailed, never returned, so only the invitee can set the password.
    invitation_expires_at: datetime


class SessionOut(ResponseModel):
    id: int
    user_agent: str
    client_address: str
    created_at: datetime
    last_used_at: datetime
    idle_expires_at: datetime
    absolute_expires_at: datetime


class SessionList(ResponseModel):
    items: list[SessionOut]


class SessionsRevoked(ResponseModel):
    revoked: int


class ApiTokenOut(ResponseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenList(ResponseModel):
    items: list[ApiTokenOut]


class ApiTokenCreated(ApiTokenOut):
    # Shown once; only its hash is stored.
    token: str


class TotpEnrollmentOut(ResponseModel):
    provisioning_uri: str
    manual_key: str
    qr_svg: str


class RecoveryCodes(ResponseModel):
    # Shown once; each code signs in once in place of a TOTP code.
    recovery_codes: Annotated[list[str], Field(max_length=RECOVERY_CODE_COUNT)]
