"""Sign-in configuration, built once per app from the settings: token keys, limits, clock."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from llero.access.roles import Role
from llero.config.settings import Settings
from llero.identity.signing_keys import load_signing_key_ring
from llero.identity.throttle import ThrottlePolicy
from llero.identity.tokens import AccessTokenService, TokenPolicy
from llero.storage.base import utc_now

# Each deployment has its own signing keys, so issuer and audience need not name the deployment.
# They keep a JWT made with the same keys for another purpose from passing as an access token.
TOKEN_ISSUER = "llero"  # noqa: S105 - a claim value, not a password
TOKEN_AUDIENCE = "llero-api"  # noqa: S105 - a claim value, not a password

# A one-time enrollment code is printed or handed over once and must be used at once.
ENROLLMENT_CODE_LIFETIME = timedelta(minutes=15)
# The second step of a sign-in: long enough to open an authenticator app, short enough that a
# stolen challenge is of little use.
MFA_CHALLENGE_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True)
class SessionLimits:
    """How long a sign-in session may stay unused (idle) and how long it may last at most."""

    idle: timedelta
    absolute: timedelta


class IdentityContext:
    """The token service, session limits, MFA rules and sign-in throttle of one app, and its clock.

    ``clock`` is read on every call, so a test can move time by replacing it; the access token
    service reads the same clock.
    """

    def __init__(
        self,
        *,
        tokens_for: Callable[[Callable[[], datetime]], AccessTokenService],
        limits: SessionLimits,
        mfa_required_for_admins: bool,
        mfa_required_for_everyone: bool,
        password_min_length: int,
        throttle: ThrottlePolicy,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.clock = clock
        self.tokens = tokens_for(self.now)
        self.limits = limits
        self.mfa_required_for_admins = mfa_required_for_admins
        self.mfa_required_for_everyone = mfa_required_for_everyone
        self.password_min_length = password_min_length
        self.throttle = throttle

    @classmethod
    def from_settings(cls, settings: Settings) -> "IdentityContext":
        """Load the signing key ring and read the limits; raise KeyFileError for a bad key."""
        ring = load_signing_key_ring(settings.keys_dir)
        policy = TokenPolicy(
            issuer=TOKEN_ISSUER,
            audience=TOKEN_AUDIENCE,
            lifetime=timedelta(minutes=settings.access_token_minutes),
            leeway=timedelta(seconds=settings.clock_skew_seconds),
        )
        return cls(
            tokens_for=lambda clock: AccessTokenService(policy, ring, clock=clock),
            limits=SessionLimits(
                idle=timedelta(minutes=settings.refresh_idle_minutes),
                absolute=timedelta(hours=settings.refresh_absolute_hours),
            ),
            mfa_required_for_admins=settings.mfa_required_for_admins,
            mfa_required_for_everyone=settings.mfa_required_for_everyone,
            password_min_length=settings.password_min_length,
            throttle=ThrottlePolicy.from_settings(settings),
        )

    def now(self) -> datetime:
        return self.clock()

    def mfa_required(self, role: str) -> bool:
        """Return whether a user with ``role`` must have a second factor enrolled."""
        return self.mfa_required_for_everyone or (
            self.mfa_required_for_admins and role == Role.ADMIN
        )
