"""Stored users, sign-in sessions and the tokens and codes that authenticate them.

Tokens, codes and passwords are stored only as hashes. The TOTP seeds, which must be read back to
check a code, the email address and the client of a sign-in session are sealed fields
(llero.vault.fields): each is an envelope that opens only at its own row and field. A sign-in
session is one refresh-token family: every rotation adds a token to the same session, and
revoking the session ends every token in it.
"""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, relationship

from llero.storage.base import AtRest, Base, DataClass, UTCDateTime, classified, utc_now
from llero.vault.fields import SealedText, sealed_column

# RFC 5321 limits an address to 254 octets. The typed form may be longer before normalisation
# folds it, so up to 320 characters are accepted.
EMAIL_MAX = 320
# users.email_key stores a blind index of 64 hex digits in the column that stored the normalised
# address before. Narrowing it would make SQLite copy the users table, and dropping the old copy
# would cascade to every row that references a user.
EMAIL_KEY_MAX = 254
DISPLAY_NAME_MAX = 128
USER_AGENT_MAX = 256
# An IPv6 address with a zone index is at most 45 + 1 + 16 characters.
CLIENT_ADDRESS_MAX = 64
TOKEN_NAME_MAX = 64
# hash_token returns SHA-256 as 64 hex digits.
HASH_HEX_LENGTH = 64
# A PHC argon2id string at Llero's parameters is about 100 characters; bcrypt is 60.
PASSWORD_HASH_MAX = 256


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    # Created by an admin or the CLI; becomes active when its owner sets a password.
    PENDING = "pending"


class RevocationReason(StrEnum):
    EXPIRED = "expired"
    # `llero incident revoke-all` or its admin call ended every session at once.
    INCIDENT = "incident"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a reason code, not a password
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 - a reason code, not a token
    REVOKED_BY_ADMIN = "revoked_by_admin"
    REVOKED_BY_USER = "revoked_by_user"
    SIGNED_OUT = "signed_out"
    USER_DISABLED = "user_disabled"


class OneTimePurpose(StrEnum):
    ENROLL = "enroll"
    INVITE = "invite"
    # The second step of a sign-in that needs a TOTP or recovery code.
    MFA_CHALLENGE = "mfa_challenge"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose name, not a password
    VERIFY_EMAIL = "verify_email"


class ThrottleScope(StrEnum):
    ACCOUNT = "account"
    CLIENT_ADDRESS = "client_address"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    # The address as the user typed it, for display and for mail; see ``email``.
    email_envelope: Mapped[bytes | None] = sealed_column(DataClass.CONFIDENTIAL)
    # The blind index of identity.emails.normalize_email of the address, so that sign-in finds
    # the account and one mailbox has at most one account (see identity.queries.email_key_of).
    email_key: Mapped[str] = classified(
        DataClass.CONFIDENTIAL, String(EMAIL_KEY_MAX), unique=True, at_rest=AtRest.HASH
    )
    # Blind indexes of the lower- and upper-case skeletons of the address
    # (identity.emails.email_skeletons), so that no second user takes an address that reads the
    # same. None only where migration 0014 found an older user whose skeleton was taken already.
    email_skeleton_key: Mapped[str | None] = classified(
        DataClass.CONFIDENTIAL,
        String(HASH_HEX_LENGTH),
        nullable=True,
        unique=True,
        index=True,
        at_rest=AtRest.HASH,
    )
    email_upper_skeleton_key: Mapped[str | None] = classified(
        DataClass.CONFIDENTIAL,
        String(HASH_HEX_LENGTH),
        nullable=True,
        unique=True,
        index=True,
        at_rest=AtRest.HASH,
    )
    display_name: Mapped[str] = classified(DataClass.INTERNAL, String(DISPLAY_NAME_MAX), default="")
    # An access.roles.Role value.
    role: Mapped[str] = classified(DataClass.INTERNAL, String(16))
    status: Mapped[str] = classified(DataClass.INTERNAL, String(16), default=UserStatus.PENDING)
    # None until the user sets a password through an enrollment code.
    password_hash: Mapped[str | None] = classified(
        DataClass.SECRET, String(PASSWORD_HASH_MAX), nullable=True, at_rest=AtRest.HASH
    )
    totp_seed_envelope: Mapped[bytes | None] = sealed_column(DataClass.SECRET)
    # A seed shown to the user but not yet confirmed with a first code.
    totp_pending_seed_envelope: Mapped[bytes | None] = sealed_column(DataClass.SECRET)
    # The TOTP time step of the last accepted code; a code of this step or earlier is refused.
    totp_last_step: Mapped[int | None] = classified(DataClass.INTERNAL, Integer, nullable=True)
    mfa_enabled_at: Mapped[datetime | None] = classified(
        DataClass.INTERNAL, UTCDateTime, nullable=True
    )
    # Access tokens issued before this time are rejected, so a disabled user loses access at once.
    not_before: Mapped[datetime | None] = classified(DataClass.INTERNAL, UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    last_login_at: Mapped[datetime | None] = classified(
        DataClass.INTERNAL, UTCDateTime, nullable=True
    )

    # Set right after the row is first flushed, because the envelope is sealed to the row's id.
    email = SealedText[str]("email_envelope")
    totp_seed = SealedText[str | None]("totp_seed_envelope")
    totp_pending_seed = SealedText[str | None]("totp_pending_seed_envelope")

    @property
    def mfa_enabled(self) -> bool:
        return self.totp_seed_envelope is not None


class AuthSession(Base):
    """One sign-in on one device: a refresh-token family with its idle and absolute limits."""

    __tablename__ = "auth_sessions"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    user_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Together they tell a user's devices apart, and they track a person, so both are sealed.
    user_agent_envelope: Mapped[bytes | None] = sealed_column(DataClass.CONFIDENTIAL)
    client_address_envelope: Mapped[bytes | None] = sealed_column(DataClass.CONFIDENTIAL)
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    last_used_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    idle_expires_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime)
    absolute_expires_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime)
    revoked_at: Mapped[datetime | None] = classified(DataClass.INTERNAL, UTCDateTime, nullable=True)
    revoked_reason: Mapped[str | None] = classified(DataClass.INTERNAL, String(32), nullable=True)

    user: Mapped[User] = relationship(lazy="joined")

    user_agent = SealedText[str]("user_agent_envelope")
    client_address = SealedText[str]("client_address_envelope")


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    session_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = classified(
        DataClass.SECRET, String(HASH_HEX_LENGTH), unique=True, at_rest=AtRest.HASH
    )
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    # Set when the token is exchanged; presenting it again revokes its whole session.
    used_at: Mapped[datetime | None] = classified(DataClass.INTERNAL, UTCDateTime, nullable=True)

    auth_session: Mapped[AuthSession] = relationship(lazy="joined")


class ApiToken(Base):
    """A personal API token (llero_pat_...): its owner's permissions, narrowed to ``scopes``."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    user_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = classified(DataClass.INTERNAL, String(TOKEN_NAME_MAX))
    token_hash: Mapped[str] = classified(
        DataClass.SECRET, String(HASH_HEX_LENGTH), unique=True, at_rest=AtRest.HASH
    )
    # The first characters of the token, so its owner can tell tokens apart; they carry about
    # 24 of the token's 256 random bits.
    prefix: Mapped[str] = classified(DataClass.INTERNAL, String(16))
    # Permission values, each one the owner's role held when the token was made.
    scopes: Mapped[list[str]] = classified(DataClass.INTERNAL, JSON, default=list)
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    expires_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime)
    last_used_at: Mapped[datetime | None] = classified(
        DataClass.INTERNAL, UTCDateTime, nullable=True
    )
    revoked_at: Mapped[datetime | None] = classified(DataClass.INTERNAL, UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(lazy="joined")


class OneTimeToken(Base):
    """A single-use code for one purpose: enrollment, an MFA challenge, and later mail links."""

    __tablename__ = "one_time_tokens"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    user_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = classified(DataClass.INTERNAL, String(32))
    token_hash: Mapped[str] = classified(
        DataClass.SECRET, String(HASH_HEX_LENGTH), unique=True, at_rest=AtRest.HASH
    )
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    expires_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime)
    used_at: Mapped[datetime | None] = classified(DataClass.INTERNAL, UTCDateTime, nullable=True)
    # Wrong codes presented against an MFA challenge; the challenge dies at a fixed limit.
    failed_attempts: Mapped[int] = classified(DataClass.INTERNAL, Integer, default=0)

    user: Mapped[User] = relationship(lazy="joined")


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    user_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = classified(
        DataClass.SECRET, String(HASH_HEX_LENGTH), at_rest=AtRest.HASH
    )
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    used_at: Mapped[datetime | None] = classified(DataClass.INTERNAL, UTCDateTime, nullable=True)


class LoginThrottle(Base):
    """Failed sign-ins counted per account or per client address, for lockout and back-off.

    ``subject_hash`` is a keyed hash of the email key or the address, so the table lists
    neither; identity.throttle writes the rows.
    """

    __tablename__ = "login_throttles"
    __table_args__ = (
        UniqueConstraint("scope", "subject_hash", name="uq_login_throttles_scope_subject"),
    )

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    scope: Mapped[str] = classified(DataClass.INTERNAL, String(16))
    subject_hash: Mapped[str] = classified(DataClass.INTERNAL, String(HASH_HEX_LENGTH))
    failure_count: Mapped[int] = classified(DataClass.INTERNAL, Integer, default=0)
    # Indexed for identity.throttle.purge_expired, which deletes rows whose window has ended.
    window_started_at: Mapped[datetime] = classified(
        DataClass.INTERNAL, UTCDateTime, default=utc_now, index=True
    )
    locked_until: Mapped[datetime | None] = classified(
        DataClass.INTERNAL, UTCDateTime, nullable=True
    )


__all__ = [
    "ApiToken",
    "AuthSession",
    "LoginThrottle",
    "OneTimePurpose",
    "OneTimeToken",
    "RecoveryCode",
    "RefreshToken",
    "RevocationReason",
    "ThrottleScope",
    "User",
    "UserStatus",
]
