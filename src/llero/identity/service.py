"""Accounts: creating users, enrollment, sign-in with a second factor, profiles and admin changes.

Functions that take a ``Session`` run inside a transaction that the caller owns and commit
nothing. Sign-in, enrollment and the second sign-in step take the ``Database`` instead: password
hashing must not hold a database connection, and a failed second factor must commit its count of
failed attempts before the error reaches the client.

Password hashing and verification run in the password module's own thread pool, and database
work in worker threads, so neither blocks the event loop. The two short transactions of a
password sign-in are the exception: they go through ``run_transaction``, which runs them on the
event loop on SQLite and save two hand-offs to a thread and back. With 8 sign-ins in flight,
the p99 of an authenticated read was 1.93 to 2.20 times the idle one with these transactions in
threads, and 1.69 to 2.03 times with them on the loop (three runs each).
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import structlog
from sqlalchemy import Integer, String, Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from llero.access.roles import Role
from llero.audit.context import Actor, Origin, RequestContext, Target
from llero.audit.events import ActorKind, AuditEvent
from llero.audit.service import record_as
from llero.crypto import Secret, hash_token, random_token
from llero.errors import Conflict, InvalidInput, NotFound, Refused, Violation
from llero.identity.api_tokens import revoke_all_api_tokens_audited
from llero.identity.auditing import record_login_failed, record_login_succeeded
from llero.identity.context import (
    ENROLLMENT_CODE_LIFETIME,
    MFA_CHALLENGE_LIFETIME,
    IdentityContext,
)
from llero.identity.emails import EmailLookalikeTaken, EmailRejected, normalize_email
from llero.identity.errors import AuthenticationFailed, TooManyAttempts
from llero.identity.mfa import (
    TotpEnrollment,
    enroll_totp,
    generate_recovery_codes,
    hash_recovery_code,
    verify_totp,
)
from llero.identity.models import (
    DISPLAY_NAME_MAX,
    EMAIL_MAX,
    OneTimePurpose,
    OneTimeToken,
    RecoveryCode,
    RevocationReason,
    ThrottleScope,
    User,
    UserStatus,
)
from llero.identity.opaque import issue_email_link_token, parse_email_link_token
from llero.identity.passwords import (
    hash_password_async,
    needs_rehash,
    verify_password_async,
    verify_password_without_account_async,
)
from llero.identity.policy import require_valid_password
from llero.identity.queries import (
    changed_rows,
    email_key_of,
    email_keys_of,
    lookalike_user_id,
    user_by_email,
)
from llero.identity.sessions import ClientInfo, IssuedTokens, revoke_all_sessions, start_session
from llero.identity.throttle import Subject, Throttled, count_attempt, forgive_attempt, subjects_of
from llero.identity.tokens import InvalidToken
from llero.storage.db import Database
from llero.storage.prepared import PreparedStatement
from llero.storage.threads import run_transaction
from llero.vault.errors import VaultSealed
from llero.vault.fields import field_keys_of

log = structlog.get_logger("llero.identity")

# The statements of every password step are compiled once, because they hold the event loop on
# SQLite, and on PostgreSQL a worker thread that shares the interpreter lock with it.
_users = cast(Table, User.__table__)
_CREDENTIALS = PreparedStatement(
    select(_users.c.id, _users.c.password_hash, _users.c.status).where(
        _users.c.email_key == bindparam("email_key", type_=String())
    )
)
# Finishes a password step: it matches only while the account is still active with the hash
# that was verified, and stores the upgraded hash, if any.
_CLAIM_VERIFIED = PreparedStatement(
    update(_users)
    .where(
        _users.c.id == bindparam("user_id", type_=Integer()),
        _users.c.status == UserStatus.ACTIVE,
        _users.c.password_hash == bindparam("verified_hash", type_=String()),
    )
    .returning(_users.c.id),
    ["password_hash"],
)
_SET_LAST_LOGIN = PreparedStatement(
    update(_users).where(_users.c.id == bindparam("user_id", type_=Integer())), ["last_login_at"]
)

# A challenge dies after this many wrong codes, so guessing a 6-digit TOTP code needs a new
# password check every few guesses.
MFA_CHALLENGE_MAX_FAILURES = 5
SECOND_FACTOR_FAILED = "the code is incorrect or the sign-in has expired; sign in again"
# The factors named in sign-in audit records.
PASSWORD_FACTOR = "password"  # noqa: S105 - a factor name, not a password
TOTP_FACTOR = "totp"
RECOVERY_CODE_FACTOR = "recovery_code"
ENROLLMENT_FAILED = "the enrollment code is invalid, used or expired; ask an admin for a new one"


@dataclass(frozen=True)
class IssuedCode:
    """A one-time code for its user: ``code`` is shown once, only its hash is stored."""

    code: Secret[str]
    expires_at: datetime


@dataclass(frozen=True)
class MfaChallenge:
    """The result of a correct password when the account has a second factor enrolled."""

    challenge: Secret[str]
    expires_at: datetime


@dataclass(frozen=True)
class _PendingUser:
    id: int
    email: str
    display_name: str


@dataclass(frozen=True)
class _Credentials:
    user_id: int
    password_hash: str | None
    status: str


# --- Users -------------------------------------------------------------------------------------


def create_user(
    session: Session, origin: Origin, *, email: str, display_name: str, role: Role, now: datetime
) -> User:
    """Create a pending user; raise InvalidInput for a bad field and Conflict for a taken email.

    An address that looks like another user's raises EmailLookalikeTaken, a Conflict.
    Raises VaultSealed when no KEK is loaded, because the address is stored sealed.
    """
    keys = email_keys_of(session, email)
    name = _checked_display_name(display_name)
    if session.scalar(select(User.id).where(User.email_key == keys.email_key)) is not None:
        raise Conflict("a user with this email address already exists")
    lookalike_id = lookalike_user_id(session, keys)
    if lookalike_id is not None:
        log.info("user:lookalike_email_rejected", lookalike_of=lookalike_id)
        raise EmailLookalikeTaken()

    user = User(
        email_key=keys.email_key,
        email_skeleton_key=keys.skeleton_key,
        email_upper_skeleton_key=keys.upper_skeleton_key,
        display_name=name,
        role=Role(role),
        status=UserStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("a user with this email address already exists") from None
    # The envelope is sealed to the new row's id, which the flush has just assigned.
    user.email = email
    record_as(
        session,
        origin,
        AuditEvent.USER_CREATED,
        _user_target(user),
        {"role": user.role, "status": user.status},
    )
    log.info("user:created", user_id=user.id, role=user.role)
    return user


def issue_enrollment_code(
    session: Session, origin: Origin, user: User, now: datetime
) -> IssuedCode:
    """Issue a code that sets the first password of ``user``; earlier unused codes stop working."""
    changed_rows(
        session,
        update(OneTimeToken)
        .where(
            OneTimeToken.user_id == user.id,
            OneTimeToken.purpose == OneTimePurpose.ENROLL,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=now),
    )
    issued = issue_email_link_token()
    expires_at = now + ENROLLMENT_CODE_LIFETIME
    session.add(
        OneTimeToken(
            user_id=user.id,
            purpose=OneTimePurpose.ENROLL,
            token_hash=issued.token_hash,
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    record_as(
        session,
        origin,
        AuditEvent.USER_ENROLLMENT_CODE_ISSUED,
        _user_target(user),
        {"expires_at": expires_at.isoformat()},
    )
    # TODO: invitations and email verification send this code by mail once SMTP exists; until
    # then the admin or the CLI hands it over.
    log.info("user:enrollment_code_issued", user_id=user.id)
    return IssuedCode(issued.token, expires_at)


def create_admin(
    session: Session, origin: Origin, *, email: str, display_name: str, now: datetime
) -> tuple[User, IssuedCode]:
    """Create a pending admin with an enrollment code, or issue a new code to one still pending.

    Raises Conflict when the email belongs to any other account.
    """
    existing = user_by_email(session, email)
    if existing is None:
        existing = create_user(
            session, origin, email=email, display_name=display_name, role=Role.ADMIN, now=now
        )
    elif existing.role != Role.ADMIN or existing.status != UserStatus.PENDING:
        raise Conflict("a user with this email address already exists")
    return existing, issue_enrollment_code(session, origin, existing, now)


def admin_exists(session: Session) -> bool:
    """Return whether an admin account exists that is active or waiting for enrollment."""
    query = select(User.id).where(
        User.role == Role.ADMIN, User.status.in_([UserStatus.ACTIVE, UserStatus.PENDING])
    )
    return session.scalar(query.limit(1)) is not None


def active_admin_emails(session: Session) -> list[str]:
    """Return the addresses of the active admins, oldest account first.

    The addresses are sealed, so this raises VaultSealed while no KEK is loaded and
    FieldKeysMissing when the session has no field keys.
    """
    query = (
        select(User)
        .where(User.role == Role.ADMIN, User.status == UserStatus.ACTIVE)
        .order_by(User.id)
    )
    return [admin.email for admin in session.scalars(query)]


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def find_user_by_email(session: Session, email: str) -> User:
    """Return the user with this email address; raise NotFound when there is none."""
    user = user_by_email(session, email)
    if user is None:
        raise NotFound("no user has this email address")
    return user


def list_users(session: Session, *, limit: int, offset: int) -> tuple[Sequence[User], int]:
    """Return one page of users ordered by id, and the number of all users."""
    users = session.scalars(select(User).order_by(User.id).limit(limit).offset(offset)).all()
    total = session.scalar(select(func.count()).select_from(User)) or 0
    return users, total


def update_profile(
    session: Session, origin: Origin, user_id: int, *, display_name: str, now: datetime
) -> User:
    """Change the user's own display name, the only field a user may change about themselves."""
    user = get_user(session, user_id)
    user.display_name = _checked_display_name(display_name)
    user.updated_at = now
    # The name is the user's own free text, so the record names the field, not the value.
    record_as(
        session,
        origin,
        AuditEvent.USER_PROFILE_UPDATED,
        _user_target(user),
        {"fields": ["display_name"]},
    )
    return user


def update_user(
    session: Session,
    context: IdentityContext,
    origin: Origin,
    *,
    user_id: int,
    role: Role | None = None,
    status: UserStatus | None = None,
) -> User:
    """Change a user's role or status as an admin or the CLI (a system ``origin``).

    Nobody changes their own role or status, the last active admin is never demoted or disabled,
    and a pending user becomes active only by enrolling. Disabling ends the user's sessions,
    access tokens and API tokens at once. A new role is recorded as role:revoked of the old one
    and role:granted of the new one.
    """
    actor_id = None
    if origin.actor.kind is ActorKind.USER and origin.actor.id is not None:
        actor_id = int(origin.actor.id)
    if status is UserStatus.PENDING:
        raise InvalidInput(
            "status can be set to active or disabled",
            details=[Violation("status", "must be active or disabled")],
        )
    user = _locked_user(session, user_id)
    _check_not_self(actor_id, user, role, status)
    if status is UserStatus.ACTIVE and user.status == UserStatus.PENDING:
        raise Refused("a pending user becomes active by enrolling with their code")
    _check_keeps_an_admin(session, user, role, status)

    now = context.now()
    if role is not None and role != user.role:
        log.info("user:role_changed", user_id=user.id, actor_id=actor_id, role=role)
        target = _user_target(user)
        record_as(session, origin, AuditEvent.ROLE_REVOKED, target, {"role": user.role})
        record_as(session, origin, AuditEvent.ROLE_GRANTED, target, {"role": role})
        user.role = role
    if status is not None and status != user.status:
        _change_status(session, context, origin, user, status)
    user.updated_at = now
    return user


# --- Enrollment --------------------------------------------------------------------------------


async def enroll(
    database: Database,
    context: IdentityContext,
    *,
    code: str,
    password: str,
    request: RequestContext,
) -> int:
    """Set the first password of a pending user with their enrollment code; return the user id.

    Raises AuthenticationFailed for an unknown, used or expired code, and PasswordRejected when
    the password breaks the policy. The code is used up only when the password is stored.
    """
    try:
        code_hash = parse_email_link_token(code)
    except InvalidToken as error:
        raise AuthenticationFailed(f"enrollment_code_{error.reason}", ENROLLMENT_FAILED) from None

    pending = await asyncio.to_thread(_pending_enrollment, database, context, code_hash)
    if pending is None:
        raise AuthenticationFailed("enrollment_code_not_usable", ENROLLMENT_FAILED)
    require_valid_password(
        password,
        email=pending.email,
        context_words=pending.display_name.split(),
        minimum_length=context.password_min_length,
        mfa_required=context.mfa_required_for_everyone,
    )
    password_hash = await hash_password_async(password)
    await asyncio.to_thread(
        _activate, database, context, code_hash, pending.id, password_hash, request
    )
    return pending.id


def _pending_enrollment(
    database: Database, context: IdentityContext, code_hash: str
) -> _PendingUser | None:
    with database.reader() as session:
        record = _usable_code(session, code_hash, OneTimePurpose.ENROLL, context.now())
        if record is None or record.user.status != UserStatus.PENDING:
            return None
        return _PendingUser(record.user.id, record.user.email, record.user.display_name)


def _activate(  # noqa: PLR0917 - called through asyncio.to_thread, which passes positions
    database: Database,
    context: IdentityContext,
    code_hash: str,
    user_id: int,
    password_hash: str,
    request: RequestContext,
) -> None:
    now = context.now()
    with database.transaction() as session:
        claimed = _claim_code(session, code_hash, OneTimePurpose.ENROLL, now, user_id=user_id)
        user = session.get(User, user_id)
        if not claimed or user is None or user.status != UserStatus.PENDING:
            raise AuthenticationFailed("enrollment_code_not_usable", ENROLLMENT_FAILED)
        user.password_hash = password_hash
        user.status = UserStatus.ACTIVE
        user.updated_at = now
        origin = Origin(Actor.user(user_id), request)
        target = _user_target(user)
        record_as(
            session,
            origin,
            AuditEvent.USER_PASSWORD_CHANGED,
            target,
            {"method": "enrollment_code"},
        )
        record_as(
            session,
            origin,
            AuditEvent.USER_STATUS_CHANGED,
            target,
            {"from": UserStatus.PENDING, "to": UserStatus.ACTIVE},
        )
    log.info("user:enrolled", user_id=user_id)


# --- Sign-in -----------------------------------------------------------------------------------


async def sign_in(
    database: Database,
    context: IdentityContext,
    *,
    email: str,
    password: str,
    client: ClientInfo,
    request: RequestContext,
) -> IssuedTokens | MfaChallenge:
    """Check email and password; return tokens, or a challenge when a second factor is enrolled.

    Raises TooManyAttempts while the account or the client address is throttled, before the
    password is checked. Otherwise raises AuthenticationFailed with the same message for an
    unknown email, a wrong password and an account that is not active. Each of those costs one
    argon2id verification, so the time taken does not tell them apart either. Every outcome is
    recorded as an audit event. Raises VaultSealed when no KEK is loaded.
    """
    attempt = _Attempt(account_name(email), request)
    credentials, throttled = await run_transaction(
        database, lambda session: _begin_password_step(session, context, attempt)
    )
    if throttled is not None:
        raise _throttled(throttled, credentials)
    if credentials is None or credentials.password_hash is None:
        await verify_password_without_account_async(password)
        reason = "unknown_account" if credentials is None else "no_password"
        raise await _sign_in_failed(database, attempt, credentials, reason)
    if not await verify_password_async(password, credentials.password_hash):
        raise await _sign_in_failed(database, attempt, credentials, "wrong_password")
    if credentials.status != UserStatus.ACTIVE:
        raise await _sign_in_failed(database, attempt, credentials, "user_not_active")

    new_hash = None
    if needs_rehash(credentials.password_hash):
        new_hash = await hash_password_async(password)

    def finish(session: Session) -> IssuedTokens | MfaChallenge:
        return _finish_password_step(
            session,
            context,
            attempt,
            credentials=credentials,
            new_hash=new_hash,
            client=client,
        )

    return await run_transaction(database, finish)


def complete_mfa_sign_in(
    database: Database,
    context: IdentityContext,
    *,
    challenge: str,
    code: str | None,
    recovery_code: str | None,
    client: ClientInfo,
    request: RequestContext,
) -> IssuedTokens:
    """Finish a sign-in with a TOTP code or a recovery code; raise AuthenticationFailed if wrong.

    Each code is accepted once: a TOTP code's time step and a recovery code are recorded in the
    same transaction that starts the session. A wrong code is counted against the challenge and
    against the account's and the address's sign-in throttle, which raises TooManyAttempts.
    """
    with database.transaction() as session:
        outcome = _second_factor(
            session,
            context,
            hash_token(challenge),
            code=code,
            recovery_code=recovery_code,
            client=client,
            request=request,
        )
    if isinstance(outcome, Throttled):
        log.info("user:login_throttled", scope=outcome.scope, step="second_factor")
        raise TooManyAttempts(outcome.retry_after)
    if isinstance(outcome, str):
        log.info("user:login_failed", reason=outcome, step="second_factor")
        raise AuthenticationFailed(outcome, SECOND_FACTOR_FAILED)
    return outcome


def account_name(email: str) -> str:
    """Return the name that throttles and audits attempts on ``email``, account or not."""
    try:
        return normalize_email(email)
    except EmailRejected:
        # A malformed address cannot belong to an account, but attempts with it still count.
        return email.strip().casefold()[:EMAIL_MAX]


@dataclass(frozen=True)
class _Attempt:
    """One sign-in attempt: the account it names and the request it came with."""

    account: str
    request: RequestContext

    @property
    def subjects(self) -> list[Subject]:
        return subjects_of(self.account, self.request.client_address)


def _begin_password_step(
    session: Session, context: IdentityContext, attempt: _Attempt
) -> tuple[_Credentials | None, Throttled | None]:
    """Read the account's credentials and count the attempt, in the caller's transaction."""
    credentials = _credentials_of(session, attempt.account)
    throttled = count_attempt(session, context.throttle, attempt.subjects, context.now())
    if throttled is not None:
        record_login_failed(
            session,
            attempt.request,
            user_id=None if credentials is None else credentials.user_id,
            account=attempt.account,
            reason="locked",
            factor=PASSWORD_FACTOR,
            throttled=throttled,
        )
    return credentials, throttled


def _credentials_of(session: Session, account: str) -> _Credentials | None:
    """Return the credentials of the account named ``account``; raise VaultSealed without a KEK.

    A sealed vault fails every sign-in before the password check: the new session's client
    details could not be sealed, nor the account's address read, so checking the password would
    only cost time.
    """
    if field_keys_of(session).keyring.sealed:
        raise VaultSealed()
    try:
        email_key = email_key_of(session, account)
    except InvalidInput:
        # A malformed address cannot belong to an account, so it is rejected like an unknown one.
        return None
    rows = _CREDENTIALS.execute(session.connection(), {"email_key": email_key})
    if not rows:
        return None
    ((user_id, password_hash, status),) = rows
    return _Credentials(user_id, password_hash, status)


def _finish_password_step(
    session: Session,
    context: IdentityContext,
    attempt: _Attempt,
    *,
    credentials: _Credentials,
    new_hash: str | None,
    client: ClientInfo,
) -> IssuedTokens | MfaChallenge:
    # The claim matches only while the account is still active with the hash that was verified.
    claimed = _CLAIM_VERIFIED.execute(
        session.connection(),
        {
            "user_id": credentials.user_id,
            "verified_hash": credentials.password_hash,
            "password_hash": new_hash or credentials.password_hash,
        },
    )
    if not claimed:
        raise _changed_during_sign_in(credentials.user_id)
    user = get_user(session, credentials.user_id)
    if new_hash is not None:
        log.info("user:password_rehashed", user_id=user.id)
    now = context.now()
    if user.mfa_enabled:
        # The right password clears the address's count. The account's stays counted until the
        # second factor is right too, so guessing codes runs into the account's lock.
        address = [item for item in attempt.subjects if item.scope != ThrottleScope.ACCOUNT]
        forgive_attempt(session, address, now)
        return _issue_challenge(session, context, user)
    forgive_attempt(session, attempt.subjects, now)
    return _signed_in(
        session,
        context,
        user,
        client=client,
        request=attempt.request,
        factors=[PASSWORD_FACTOR],
    )


def _issue_challenge(session: Session, context: IdentityContext, user: User) -> MfaChallenge:
    now = context.now()
    challenge = random_token()
    expires_at = now + MFA_CHALLENGE_LIFETIME
    session.add(
        OneTimeToken(
            user_id=user.id,
            purpose=OneTimePurpose.MFA_CHALLENGE,
            token_hash=hash_token(challenge),
            created_at=now,
            expires_at=expires_at,
        )
    )
    log.info("user:mfa_challenged", user_id=user.id)
    return MfaChallenge(Secret(challenge), expires_at)


def _second_factor(
    session: Session,
    context: IdentityContext,
    challenge_hash: str,
    *,
    code: str | None,
    recovery_code: str | None,
    client: ClientInfo,
    request: RequestContext,
) -> IssuedTokens | Throttled | str:
    now = context.now()
    factor = TOTP_FACTOR if code is not None else RECOVERY_CODE_FACTOR
    if not _claim_code(session, challenge_hash, OneTimePurpose.MFA_CHALLENGE, now):
        # A challenge is 256 random bits, so a wrong one is not a guess worth throttling.
        return "challenge_not_usable"
    challenge = session.scalars(
        select(OneTimeToken).where(OneTimeToken.token_hash == challenge_hash)
    ).one()
    user = challenge.user
    attempt = _Attempt(account_name(user.email), request)

    def failed(reason: str, throttled: Throttled | None = None) -> str:
        record_login_failed(
            session,
            request,
            user_id=user.id,
            account=attempt.account,
            reason=reason,
            factor=factor,
            throttled=throttled,
        )
        return reason

    if user.status != UserStatus.ACTIVE or not user.mfa_enabled:
        return failed("user_not_active")
    throttled = count_attempt(session, context.throttle, attempt.subjects, now)
    if throttled is not None:
        # The challenge stays usable: a lock is not a wrong code.
        challenge.used_at = None
        failed("locked", throttled)
        return throttled

    if code is not None:
        accepted = _accept_totp(session, user, code, now)
    else:
        accepted = _accept_recovery_code(session, user, recovery_code or "", now)
    if not accepted:
        # The claim is undone so the challenge can be tried again, up to the failure limit.
        challenge.used_at = None
        challenge.failed_attempts += 1
        return failed("wrong_second_factor")
    forgive_attempt(session, attempt.subjects, now)
    return _signed_in(
        session, context, user, client=client, request=request, factors=[PASSWORD_FACTOR, factor]
    )


def _accept_totp(session: Session, user: User, code: str, now: datetime) -> bool:
    seed = user.totp_seed
    step = None if seed is None else verify_totp(Secret(seed), code, user.totp_last_step, now)
    if step is None:
        return False
    # A compare-and-set, so of two sign-ins racing with one code only one records its step.
    recorded = changed_rows(
        session,
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step),
    )
    session.refresh(user)
    return bool(recorded)


def _accept_recovery_code(session: Session, user: User, code: str, now: datetime) -> bool:
    try:
        code_hash = hash_recovery_code(code)
    except ValueError:
        return False
    used = changed_rows(
        session,
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == code_hash,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now),
    )
    if used:
        log.warning("user:recovery_code_used", user_id=user.id)
    return bool(used)


def _signed_in(
    session: Session,
    context: IdentityContext,
    user: User,
    *,
    client: ClientInfo,
    request: RequestContext,
    factors: list[str],
) -> IssuedTokens:
    now = context.now()
    _SET_LAST_LOGIN.execute(session.connection(), {"user_id": user.id, "last_login_at": now})
    # The loaded object shows the new time too, without a second write when the session flushes.
    set_committed_value(user, "last_login_at", now)
    issued = start_session(session, context, user, client)
    record_login_succeeded(
        session, request, user_id=user.id, session_id=issued.session_id, factors=factors
    )
    log.info("user:login", user_id=user.id)
    return issued


async def _sign_in_failed(
    database: Database, attempt: _Attempt, credentials: _Credentials | None, reason: str
) -> AuthenticationFailed:
    """Record a failed password step and return the error to raise."""
    user_id = None if credentials is None else credentials.user_id

    def write() -> None:
        with database.transaction() as session:
            record_login_failed(
                session,
                attempt.request,
                user_id=user_id,
                account=attempt.account,
                reason=reason,
                factor=PASSWORD_FACTOR,
            )

    await asyncio.to_thread(write)
    log.info("user:login_failed", reason=reason, user_id=user_id)
    return AuthenticationFailed(reason)


def _changed_during_sign_in(user_id: int) -> AuthenticationFailed:
    # The password was right but the account was disabled or its password changed meanwhile;
    # the transaction rolls back, so there is nothing to audit beyond the log.
    log.info("user:login_failed", reason="account_changed_during_sign_in", user_id=user_id)
    return AuthenticationFailed("account_changed_during_sign_in")


def _throttled(throttled: Throttled, credentials: _Credentials | None) -> TooManyAttempts:
    user_id = None if credentials is None else credentials.user_id
    log.info("user:login_throttled", scope=throttled.scope, user_id=user_id, step="password")
    return TooManyAttempts(throttled.retry_after)


# --- Second factor enrollment ------------------------------------------------------------------


def start_totp_enrollment(session: Session, user_id: int) -> TotpEnrollment:
    """Create a TOTP seed for the user to add to an authenticator app; it counts once confirmed."""
    user = get_user(session, user_id)
    if user.mfa_enabled:
        # TODO: replacing an enrolled authenticator needs a fresh password or second factor
        # check first, so it is not offered yet.
        raise Refused("TOTP is already enrolled for this account")
    enrollment = enroll_totp(user.email)
    user.totp_pending_seed = enrollment.seed.reveal()
    log.info("user:mfa_enrollment_started", user_id=user.id)
    return enrollment


def confirm_totp_enrollment(
    session: Session, context: IdentityContext, origin: Origin, user_id: int, code: str
) -> list[Secret[str]]:
    """Enable TOTP with the first code from the app; return ten new recovery codes, once."""
    user = get_user(session, user_id)
    if user.mfa_enabled:
        raise Refused("TOTP is already enrolled for this account")
    if user.totp_pending_seed is None:
        raise Refused("start TOTP enrollment first: POST /api/auth/mfa/totp")

    now = context.now()
    step = verify_totp(Secret(user.totp_pending_seed), code, None, now)
    if step is None:
        raise InvalidInput(
            "code is not the current code of the authenticator app",
            details=[Violation("code", "is not the current code of the authenticator app")],
        )
    user.totp_seed = user.totp_pending_seed
    user.totp_pending_seed = None
    # The confirming code's step is recorded, so that code cannot also sign in.
    user.totp_last_step = step
    user.mfa_enabled_at = now
    user.updated_at = now
    codes = _replace_recovery_codes(session, user, now)
    record_as(
        session,
        origin,
        AuditEvent.USER_MFA_ENABLED,
        _user_target(user),
        {"factor": TOTP_FACTOR, "recovery_codes_issued": len(codes)},
    )
    log.info("user:mfa_enabled", user_id=user.id)
    return codes


def _replace_recovery_codes(session: Session, user: User, now: datetime) -> list[Secret[str]]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = generate_recovery_codes()
    session.add_all(
        RecoveryCode(user_id=user.id, code_hash=hash_recovery_code(code), created_at=now)
        for code in codes
    )
    return codes


# --- Helpers -----------------------------------------------------------------------------------


def _checked_display_name(display_name: str) -> str:
    name = display_name.strip()
    if len(name) > DISPLAY_NAME_MAX or not name.isprintable():
        problem = f"must be at most {DISPLAY_NAME_MAX} printable characters"
        raise InvalidInput(f"display_name {problem}", details=[Violation("display_name", problem)])
    return name


def _usable_code(
    session: Session, code_hash: str, purpose: OneTimePurpose, now: datetime
) -> OneTimeToken | None:
    return session.scalar(
        select(OneTimeToken).where(
            OneTimeToken.token_hash == code_hash,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > now,
            OneTimeToken.failed_attempts < MFA_CHALLENGE_MAX_FAILURES,
        )
    )


def _claim_code(
    session: Session,
    code_hash: str,
    purpose: OneTimePurpose,
    now: datetime,
    *,
    user_id: int | None = None,
) -> bool:
    """Mark a usable code used; return False when no usable code has ``code_hash``."""
    conditions = [
        OneTimeToken.token_hash == code_hash,
        OneTimeToken.purpose == purpose,
        OneTimeToken.used_at.is_(None),
        OneTimeToken.expires_at > now,
        OneTimeToken.failed_attempts < MFA_CHALLENGE_MAX_FAILURES,
    ]
    if user_id is not None:
        conditions.append(OneTimeToken.user_id == user_id)
    claimed = changed_rows(
        session,
        update(OneTimeToken).where(*conditions).values(used_at=now),
    )
    return bool(claimed)


def _locked_user(session: Session, user_id: int) -> User:
    """Return the user after locking its row and every active admin's row, in id order.

    The admin rows matter for the last-admin check: two admins demoting each other at the same
    time then wait for one another instead of both seeing the other still active. One lock order
    for everyone keeps them from deadlocking. SQLite ignores FOR UPDATE and lets one writer in.
    """
    session.scalars(
        select(User.id)
        .where(
            or_(
                User.id == user_id,
                and_(User.role == Role.ADMIN, User.status == UserStatus.ACTIVE),
            )
        )
        .order_by(User.id)
        .with_for_update()
    ).all()
    return get_user(session, user_id)


def _check_not_self(
    actor_id: int | None, user: User, role: Role | None, status: UserStatus | None
) -> None:
    if actor_id != user.id:
        return
    if role is not None and role != user.role:
        raise Refused("you cannot change your own role; ask another admin")
    if status is not None and status != user.status:
        raise Refused("you cannot change your own status; ask another admin")


def _check_keeps_an_admin(
    session: Session, user: User, role: Role | None, status: UserStatus | None
) -> None:
    """Raise Refused when the change would leave no active admin."""
    if user.role != Role.ADMIN or user.status != UserStatus.ACTIVE:
        return
    demoted = role is not None and role != Role.ADMIN
    disabled = status is UserStatus.DISABLED
    if not (demoted or disabled):
        return
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == Role.ADMIN, User.status == UserStatus.ACTIVE, User.id != user.id)
    )
    if not others:
        raise Refused(
            "the last active admin cannot be demoted or disabled; make another admin first"
        )


def _change_status(
    session: Session, context: IdentityContext, origin: Origin, user: User, status: UserStatus
) -> None:
    target = _user_target(user)
    detail = {"from": user.status, "to": status}
    user.status = status
    record_as(session, origin, AuditEvent.USER_STATUS_CHANGED, target, detail)
    if status is UserStatus.DISABLED:
        revoke_all_sessions(session, context, origin, user, RevocationReason.USER_DISABLED)
        revoke_all_api_tokens_audited(
            session, origin, user.id, RevocationReason.USER_DISABLED, context.now()
        )
    log.info("user:status_changed", user_id=user.id, actor=origin.actor.id, status=status)


def _user_target(user: User) -> Target:
    return Target.of("user", user.id)
