"""HTTP routes of the mail flows: password reset, open sign-up with verification, invitations.

Tokens from mailed links arrive in JSON bodies, never in a URL. A reset request and a sign-up
return 202 with the same body at once, whether or not the address has an account. The lookup
and the mail happen in a background task after the response is sent.
"""

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, BackgroundTasks, Request

from llero.access.permissions import Permission, requires
from llero.audit.context import Actor, Origin
from llero.identity import email_flows
from llero.identity.context import IdentityContext
from llero.identity.emails import normalize_email
from llero.identity.routes import IdentityDep, IdPath
from llero.identity.schemas import (
    InvitationCreate,
    InvitationSent,
    MailAccepted,
    PasswordResetRequest,
    PasswordSet,
    SignUpRequest,
    TokenPasswordRequest,
    UserOut,
)
from llero.identity.service import _checked_display_name
from llero.web.clients import audit_context, origin_of
from llero.web.deps import SettingsDep, get_database

router = APIRouter()

RESET_ACCEPTED = (
    "if an active account has this address, a link to reset its password is on its way; "
    "it works once, within 30 minutes"
)
SIGNUP_ACCEPTED = (
    "a mail is on its way to this address; open its link within 30 minutes to choose your "
    "password and activate the account"
)


def _anonymous_origin(request: Request, flow: str) -> Origin:
    return Origin(Actor.system(flow), audit_context(request))


# --- Password reset ---------------------------------------------------------------------------


@router.post(
    "/api/auth/password-reset",
    dependencies=[requires(Permission.AUTH_PASSWORD_RESET)],
    status_code=202,
    response_model=MailAccepted,
    tags=["auth"],
)
def request_password_reset(
    request: Request,
    settings: SettingsDep,
    context: IdentityDep,
    body: PasswordResetRequest,
    background: BackgroundTasks,
) -> MailAccepted:
    """Mail a reset link if the address has an active account; the response is the same if not."""
    email_flows.require_mail(settings, "password reset")
    normalize_email(body.email)
    background.add_task(
        email_flows.request_password_reset_later,
        get_database(request),
        context,
        settings,
        body.email,
        _anonymous_origin(request, "password_reset"),
    )
    return MailAccepted(message=RESET_ACCEPTED)


@router.post(
    "/api/auth/password-reset/confirm",
    dependencies=[requires(Permission.AUTH_PASSWORD_RESET)],
    response_model=PasswordSet,
    tags=["auth"],
)
async def confirm_password_reset(
    request: Request, context: IdentityDep, body: TokenPasswordRequest
) -> PasswordSet:
    """Set a new password with the token from a reset mail; every session of the user ends."""
    return await _set_password(request, context, body, email_flows.reset_password, "password_reset")


# --- Open sign-up ------------------------------------------------------------------------------


@router.post(
    "/api/auth/signup",
    dependencies=[requires(Permission.AUTH_SIGNUP)],
    status_code=202,
    response_model=MailAccepted,
    tags=["auth"],
)
def sign_up(
    request: Request,
    settings: SettingsDep,
    context: IdentityDep,
    body: SignUpRequest,
    background: BackgroundTasks,
) -> MailAccepted:
    """Sign up when LLERO_SIGNUP_OPEN is on: mail a verification link to the address."""
    email_flows.check_signup_open(settings)
    normalize_email(body.email)
    display_name = _checked_display_name(body.display_name)
    background.add_task(
        email_flows.sign_up_later,
        get_database(request),
        context,
        settings,
        email=body.email,
        display_name=display_name,
        origin=_anonymous_origin(request, "signup"),
    )
    return MailAccepted(message=SIGNUP_ACCEPTED)


@router.post(
    "/api/auth/signup/verify",
    dependencies=[requires(Permission.AUTH_VERIFY_EMAIL)],
    response_model=PasswordSet,
    tags=["auth"],
)
async def verify_email(
    request: Request, context: IdentityDep, body: TokenPasswordRequest
) -> PasswordSet:
    """Confirm the address with the token from the verification mail and set the password."""
    return await _set_password(request, context, body, email_flows.verify_email, "signup")


# --- Invitations -------------------------------------------------------------------------------


@router.post(
    "/api/auth/invitation/accept",
    dependencies=[requires(Permission.AUTH_ENROLL)],
    response_model=PasswordSet,
    tags=["auth"],
)
async def accept_invitation(
    request: Request, context: IdentityDep, body: TokenPasswordRequest
) -> PasswordSet:
    """Set the first password with the token from an invitation mail; then sign in."""
    return await _set_password(request, context, body, email_flows.accept_invitation, "invitation")


@router.post(
    "/api/users/invitations",
    dependencies=[requires(Permission.USER_INVITE)],
    status_code=201,
    response_model=InvitationSent,
    tags=["users"],
)
def invite_user(
    request: Request,
    settings: SettingsDep,
    context: IdentityDep,
    body: InvitationCreate,
    background: BackgroundTasks,
) -> InvitationSent:
    """Create a pending user with a role and mail them a link to choose their password."""
    with get_database(request).transaction() as session:
        invitation = email_flows.invite_user(
            session,
            context,
            settings,
            origin_of(request),
            email=body.email,
            display_name=body.display_name,
            role=body.role,
        )
        sent = _invitation_sent(invitation)
    background.add_task(email_flows.deliver, settings, invitation.mail)
    return sent


@router.post(
    "/api/users/{user_id}/invitation",
    dependencies=[requires(Permission.USER_INVITE)],
    response_model=InvitationSent,
    tags=["users"],
)
def reinvite_user(
    request: Request,
    settings: SettingsDep,
    context: IdentityDep,
    user_id: IdPath,
    background: BackgroundTasks,
) -> InvitationSent:
    """Mail a pending user a new invitation link; the earlier link stops working."""
    with get_database(request).transaction() as session:
        invitation = email_flows.reinvite_user(
            session, context, settings, origin_of(request), user_id
        )
        sent = _invitation_sent(invitation)
    background.add_task(email_flows.deliver, settings, invitation.mail)
    return sent


def _invitation_sent(invitation: email_flows.Invitation) -> InvitationSent:
    return InvitationSent(
        user=UserOut.model_validate(invitation.user), invitation_expires_at=invitation.expires_at
    )


async def _set_password(
    request: Request,
    context: IdentityContext,
    body: TokenPasswordRequest,
    flow: Callable[..., Awaitable[int]],
    purpose: str,
) -> PasswordSet:
    """Set a password through ``flow`` with the token of a mail; return the user's id."""
    user_id = await flow(
        get_database(request),
        context,
        token=body.token,
        password=body.password,
        origin=_anonymous_origin(request, purpose),
    )
    return PasswordSet(user_id=user_id)
