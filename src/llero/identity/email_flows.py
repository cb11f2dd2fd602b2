"""Account flows that work through mail: password reset, invitations and open sign-up.

Each flow mails a link whose fragment carries a one-time token (``/reset#token=...``). Browsers
never send a fragment, so the token stays out of server logs and Referer headers, and the page
posts it back in a JSON body.
Tokens are stored only as hashes, are used once, and expire: reset and verification links after
30 minutes, invitations after two days.

The response to a reset request and to a sign-up does not depend on whether the address has
an account. Routes validate the input and return the same body either way. The work that looks
the address up (the ``*_later`` functions) runs after the response is sent.

NOTE: a reset request and a sign-up are limited to one mail per account a minute, but not yet
per client address; sign-in throttling is the place for that.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from llero.access.roles import Role
from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.errors import LleroError, Refused
from llero.identity.api_tokens import revoke_all_api_tokens_audited
from llero.identity.context import IdentityContext
from llero.identity.emails import EmailLookalikeTaken
from llero.identity.errors import AuthenticationFailed
from llero.identity.models import OneTimePurpose, OneTimeToken, RevocationReason, User, UserStatus
from llero.identity.opaque import issue_email_link_token, parse_email_link_token
from llero.identity.passwords import hash_password_async
from llero.identity.policy import require_valid_password
from llero.identity.queries import changed_rows
from llero.identity.service import (
    _claim_code,
    _usable_code,
    create_user,
    find_user_by_email,
    get_user,
)
from llero.identity.sessions import revoke_all_sessions
from llero.identity.tokens import InvalidToken
from llero.mail import MailUnavailable, send_mail
from llero.storage.db import Database

log = structlog.get_logger("llero.identity")

MAIL_LINK_LIFETIME = timedelta(minutes=30)
# An invitation waits for someone who may not read mail the same day; an admin can send a new
# one, which ends the old.
INVITATION_LIFETIME = timedelta(days=2)
# At most one reset or verification mail per account in this time, so a script cannot flood a
# mailbox through the public routes.
RESEND_INTERVAL = timedelta(minutes=1)
SIGNUP_ROLE = Role.VIEWER

RESET_PATH = "/reset"
VERIFY_PATH = "/verify-email"
INVITATION_PATH = "/invitation"

LINK_FAILED = "the link is invalid, used or expired; request a new one"


@dataclass(frozen=True)
class OutgoingMail:
    """A message to send once its transaction has committed; ``text`` may contain a token."""

    to: str
    subject: str
    text: Secret[str]


@dataclass(frozen=True)
class Invitation:
    """A new invitation: the pending user, and the mail to send once the transaction commits."""

    user: User
    mail: OutgoingMail
    expires_at: datetime


@dataclass(frozen=True)
class _LinkHolder:
    user_id: int
    email: str
    display_name: str


@dataclass(frozen=True)
class _Activation:
    """The purpose of a mailed token and the audit event recorded when it sets a password."""

    purpose: OneTimePurpose
    event: AuditEvent
    # The status the user must have for the token to work.
    status: UserStatus


RESET = _Activation(
    OneTimePurpose.RESET_PASSWORD, AuditEvent.USER_PASSWORD_RESET, UserStatus.ACTIVE
)
VERIFY = _Activation(
    OneTimePurpose.VERIFY_EMAIL, AuditEvent.USER_EMAIL_VERIFIED, UserStatus.PENDING
)
ACCEPT = _Activation(OneTimePurpose.INVITE, AuditEvent.USER_INVITATION_ACCEPTED, UserStatus.PENDING)


def require_mail(settings: Settings, feature: str) -> None:
    """Raise MailUnavailable, naming ``feature``, when no mail server is configured."""
    if not settings.mail_enabled:
        raise MailUnavailable(feature)


# --- Password reset ---------------------------------------------------------------------------


def request_password_reset_later(
    database: Database, context: IdentityContext, settings: Settings, email: str, origin: Origin
) -> None:
    """Mail a reset link if ``email`` names an active account; run after the response is sent."""
    _run_quietly(
        "password_reset",
        lambda: _request_password_reset(database, context, settings, email, origin),
    )


def _request_password_reset(
    database: Database, context: IdentityContext, settings: Settings, email: str, origin: Origin
) -> None:
    now = context.now()
    with database.transaction() as session:
        user = _find_user(session, email)
        if user is None or user.status != UserStatus.ACTIVE:
            log.info("password_reset:not_sent", reason="no_active_account")
            return
        if _recently_mailed(session, user.id, OneTimePurpose.RESET_PASSWORD, now):
            log.info("password_reset:not_sent", reason="recently_sent", user_id=user.id)
            return
        token = _issue_link_token(
            session, user, OneTimePurpose.RESET_PASSWORD, now, MAIL_LINK_LIFETIME
        )
        record_as(session, origin, AuditEvent.USER_PASSWORD_RESET_REQUESTED, _user_target(user))
        mail = OutgoingMail(
            user.email,
            "Reset your Llero password",
            Secret(
                "Someone asked to reset the password of your Llero account. To choose a new "
                "password, open this link within 30 minutes:\n\n"
                f"{_link(settings, RESET_PATH, token)}\n\n"
                "A new password signs you out everywhere and revokes your personal API tokens. "
                "If you did not ask for this, ignore this mail: your password stays as it is. "
                "Signing in still needs your second factor if you have one.\n"
            ),
        )
    deliver(settings, mail)


async def reset_password(
    database: Database, context: IdentityContext, *, token: str, password: str, origin: Origin
) -> int:
    """Set a new password with a reset token; return the user id.

    Ends every session, access token and personal API token of the user. The second factor
    stays enrolled, so the next sign-in still requires it. Raises AuthenticationFailed for an
    unknown, used or expired token and PasswordRejected when the password breaks the policy.
    """
    return await _set_password_with_token(
        database, context, RESET, token=token, password=password, origin=origin
    )


# --- Open sign-up ------------------------------------------------------------------------------


def check_signup_open(settings: Settings) -> None:
    """Raise Refused when self-service sign-up is off, MailUnavailable when mail is off."""
    if not settings.signup_open:
        raise Refused("sign-up is closed on this server; ask an admin for an invitation")
    require_mail(settings, "sign-up")


def sign_up_later(
    database: Database,
    context: IdentityContext,
    settings: Settings,
    *,
    email: str,
    display_name: str,
    origin: Origin,
) -> None:
    """Create a pending account and mail its verification link; run after the response is sent.

    When the address already has an account, its owner gets a notice instead, so the response
    never reveals to a stranger which addresses have accounts.
    """
    _run_quietly(
        "signup",
        lambda: _sign_up(
            database, context, settings, email=email, display_name=display_name, origin=origin
        ),
    )


def _sign_up(
    database: Database,
    context: IdentityContext,
    settings: Settings,
    *,
    email: str,
    display_name: str,
    origin: Origin,
) -> None:
    now = context.now()
    with database.transaction() as session:
        user = _find_user(session, email)
        if user is None:
            try:
                user = create_user(
                    session,
                    origin,
                    email=email,
                    display_name=display_name,
                    role=SIGNUP_ROLE,
                    now=now,
                )
            except EmailLookalikeTaken:
                # No mail goes out: the look-alike's owner would learn that the imitated
                # address has an account, and the imitated owner did not ask for anything.
                log.info("signup:not_created", reason="lookalike_email")
                return
            record_as(session, origin, AuditEvent.USER_SIGNED_UP, _user_target(user))
        elif not _awaits_verification(session, user):
            # NOTE: these notices are not limited per account, because no token row records
            # them. Only a limit per client address, which does not exist yet, would cover them.
            log.info("signup:existing_account", user_id=user.id)
            mail = _existing_account_mail(settings, user.email)
            user = None
        elif _recently_mailed(session, user.id, OneTimePurpose.VERIFY_EMAIL, now):
            log.info("signup:not_sent", reason="recently_sent", user_id=user.id)
            return
        if user is not None:
            token = _issue_link_token(
                session, user, OneTimePurpose.VERIFY_EMAIL, now, MAIL_LINK_LIFETIME
            )
            mail = _verification_mail(settings, user.email, token)
    deliver(settings, mail)


async def verify_email(
    database: Database, context: IdentityContext, *, token: str, password: str, origin: Origin
) -> int:
    """Activate a signed-up account with its verification token and a first password."""
    return await _set_password_with_token(
        database, context, VERIFY, token=token, password=password, origin=origin
    )


def _awaits_verification(session: Session, user: User) -> bool:
    """Return whether ``user`` signed up and never verified: pending, with a verification sent.

    Signing up again with such an address sends a new link, so a lost mail does not block the
    address for good. The password is chosen only when the link is opened, so a stranger who
    signed up with the address first gains nothing over the owner of the mailbox.
    """
    if user.status != UserStatus.PENDING:
        return False
    mailed = session.scalar(
        select(OneTimeToken.id)
        .where(
            OneTimeToken.user_id == user.id,
            OneTimeToken.purpose == OneTimePurpose.VERIFY_EMAIL,
        )
        .limit(1)
    )
    return mailed is not None


# --- Invitations -------------------------------------------------------------------------------


def invite_user(
    session: Session,
    context: IdentityContext,
    settings: Settings,
    origin: Origin,
    *,
    email: str,
    display_name: str,
    role: Role,
) -> Invitation:
    """Create a pending user with ``role`` and the invitation to mail once this commits.

    Raises MailUnavailable when mail is off, before anything is written, InvalidInput for a bad
    field and Conflict for an address that already has an account.
    """
    require_mail(settings, "inviting a user")
    now = context.now()
    user = create_user(session, origin, email=email, display_name=display_name, role=role, now=now)
    record_as(session, origin, AuditEvent.USER_INVITED, _user_target(user), {"role": str(role)})
    return _invitation(session, settings, user, now)


def reinvite_user(
    session: Session, context: IdentityContext, settings: Settings, origin: Origin, user_id: int
) -> Invitation:
    """Issue a new invitation to a pending user; the earlier one stops working."""
    require_mail(settings, "inviting a user")
    user = get_user(session, user_id)
    if user.status != UserStatus.PENDING:
        raise Refused("only a pending user can be invited again; this user has signed in before")
    record_as(session, origin, AuditEvent.USER_INVITED, _user_target(user), {"role": user.role})
    return _invitation(session, settings, user, context.now())


async def accept_invitation(
    database: Database, context: IdentityContext, *, token: str, password: str, origin: Origin
) -> int:
    """Activate an invited account with the invitation token and a first password."""
    return await _set_password_with_token(
        database, context, ACCEPT, token=token, password=password, origin=origin
    )


def _invitation(session: Session, settings: Settings, user: User, now: datetime) -> Invitation:
    token = _issue_link_token(session, user, OneTimePurpose.INVITE, now, INVITATION_LIFETIME)
    mail = OutgoingMail(
        user.email,
        "You are invited to Llero",
        Secret(
            f"An admin has invited you to Llero as {user.role}. To choose your password and "
            "activate your account, open this link within two days:\n\n"
            f"{_link(settings, INVITATION_PATH, token)}\n"
        ),
    )
    return Invitation(user, mail, now + INVITATION_LIFETIME)


# --- Mail --------------------------------------------------------------------------------------


def deliver(settings: Settings, mail: OutgoingMail) -> None:
    """Send ``mail``; log a failure instead of raising, because the response has been sent."""
    try:
        send_mail(settings, mail.to, mail.subject, mail.text.reveal())
    except LleroError as error:
        log.warning("mail:not_delivered", subject=mail.subject, error=error.code)


def _verification_mail(settings: Settings, to: str, token: Secret[str]) -> OutgoingMail:
    return OutgoingMail(
        to,
        "Confirm your email address for Llero",
        Secret(
            "Someone signed up for Llero with this address. To confirm it and choose your "
            "password, open this link within 30 minutes:\n\n"
            f"{_link(settings, VERIFY_PATH, token)}\n\n"
            "If it was not you, ignore this mail and no account is activated.\n"
        ),
    )


def _existing_account_mail(settings: Settings, to: str) -> OutgoingMail:
    return OutgoingMail(
        to,
        "Sign-up attempt for your Llero account",
        Secret(
            "Someone tried to sign up for Llero with this address, which already has an "
            "account. If it was you, sign in, or reset your password at "
            f"{settings.public_url}{RESET_PATH}. Otherwise ignore this mail.\n"
        ),
    )


def _link(settings: Settings, path: str, token: Secret[str]) -> str:
    # The token goes in the fragment, which browsers never send to a server.
    return f"{settings.public_url}{path}#token={token.reveal()}"


# --- Tokens ------------------------------------------------------------------------------------


def _issue_link_token(
    session: Session, user: User, purpose: OneTimePurpose, now: datetime, lifetime: timedelta
) -> Secret[str]:
    """Store the hash of a new ``purpose`` token for ``user``; earlier unused ones stop working."""
    _end_unused_tokens(session, user.id, purpose, now)
    issued = issue_email_link_token()
    session.add(
        OneTimeToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=issued.token_hash,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    log.info("user:mail_token_issued", user_id=user.id, purpose=purpose)
    return issued.token


def _recently_mailed(
    session: Session, user_id: int, purpose: OneTimePurpose, now: datetime
) -> bool:
    found = session.scalar(
        select(OneTimeToken.id)
        .where(
            OneTimeToken.user_id == user_id,
            OneTimeToken.purpose == purpose,
            OneTimeToken.created_at > now - RESEND_INTERVAL,
        )
        .limit(1)
    )
    return found is not None


async def _set_password_with_token(
    database: Database,
    context: IdentityContext,
    activation: _Activation,
    *,
    token: str,
    password: str,
    origin: Origin,
) -> int:
    try:
        token_hash = parse_email_link_token(token)
    except InvalidToken as error:
        raise AuthenticationFailed(
            f"{activation.purpose}_token_{error.reason}", LINK_FAILED
        ) from None

    holder = await asyncio.to_thread(_link_holder, database, context, activation, token_hash)
    if holder is None:
        raise AuthenticationFailed(f"{activation.purpose}_token_not_usable", LINK_FAILED)
    require_valid_password(
        password,
        email=holder.email,
        context_words=holder.display_name.split(),
        minimum_length=context.password_min_length,
        mfa_required=context.mfa_required_for_everyone,
    )
    password_hash = await hash_password_async(password)
    await asyncio.to_thread(
        _store_password,
        database,
        context,
        activation,
        token_hash=token_hash,
        user_id=holder.user_id,
        password_hash=password_hash,
        origin=origin,
    )
    return holder.user_id


def _link_holder(
    database: Database, context: IdentityContext, activation: _Activation, token_hash: str
) -> _LinkHolder | None:
    with database.reader() as session:
        record = _usable_code(session, token_hash, activation.purpose, context.now())
        if record is None or record.user.status != activation.status:
            return None
        return _LinkHolder(record.user.id, record.user.email, record.user.display_name)


def _store_password(
    database: Database,
    context: IdentityContext,
    activation: _Activation,
    *,
    token_hash: str,
    user_id: int,
    password_hash: str,
    origin: Origin,
) -> None:
    now = context.now()
    with database.transaction() as session:
        # The compare-and-set comes first, so of two requests with one token only one succeeds.
        claimed = _claim_code(session, token_hash, activation.purpose, now, user_id=user_id)
        user = session.get(User, user_id)
        if not claimed or user is None or user.status != activation.status:
            raise AuthenticationFailed(f"{activation.purpose}_token_not_usable", LINK_FAILED)

        user.password_hash = password_hash
        user.status = UserStatus.ACTIVE
        user.updated_at = now
        detail: dict[str, object] = {}
        if activation is RESET:
            # An attacker who knew the old password may hold sessions, so they all end, and the
            # access tokens with them.
            detail["sessions_revoked"] = revoke_all_sessions(
                session, context, origin, user, RevocationReason.PASSWORD_RESET
            )
            # The same attacker could have made personal API tokens, which outlive sessions by
            # up to a year, so they end too, recorded as their own api_token:revoked event.
            # Scripts that used them need new tokens.
            revoke_all_api_tokens_audited(
                session, origin, user_id, RevocationReason.PASSWORD_RESET, now
            )
            _end_unused_tokens(session, user_id, activation.purpose, now)
        record_as(session, origin, activation.event, _user_target(user), detail or None)
    log.info(activation.event.value, user_id=user_id)


def _end_unused_tokens(
    session: Session, user_id: int, purpose: OneTimePurpose, now: datetime
) -> None:
    changed_rows(
        session,
        update(OneTimeToken)
        .where(
            OneTimeToken.user_id == user_id,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=now),
    )


# --- Helpers -----------------------------------------------------------------------------------


def _find_user(session: Session, email: str) -> User | None:
    try:
        return find_user_by_email(session, email)
    except LleroError:
        # A malformed address cannot have an account; the route has validated it already.
        return None


def _user_target(user: User) -> Target:
    return Target.of("user", user.id)


def _run_quietly(flow: str, work: Callable[[], None]) -> None:
    """Run background ``work``; log its failure, because no client is waiting for it."""
    try:
        work()
    except Exception as error:  # noqa: BLE001 - the response is sent; the log is the only place
        # Only the type: a database error's text quotes the statement's values, such as emails.
        log.error("mail_flow:failed", flow=flow, error=type(error).__name__)  # noqa: TRY400
