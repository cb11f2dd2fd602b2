"""Access tokens: short-lived JWTs in the RFC 9068 shape, signed with Ed25519 (or HS256 if set).

A deployment uses one algorithm. Verification accepts only that algorithm, only the header members
Llero itself writes (alg, kid, typ), and only a kid that is exactly the id of a loaded key, so
``alg: none``, an HS256 token keyed with the Ed25519 public key, and keys fetched from jku, x5u or
an embedded jwk are all rejected before any signature check. The payload is not parsed until the
signature has been verified.

Both the JOSE header ("typ": "at+jwt") and the payload ("typ": "access") name the token type, so a
refresh token, an e-mail link, an API token or an ID token can never pass as an access token.

Each rejection raises InvalidToken or a subclass with a machine-readable ``reason``. The reason is
for logs: a client should see one generic 401 whatever the reason, so it learns nothing about keys
or claims by trying variants.
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.types import Options

from llero.crypto import Secret, random_token
from llero.errors import InvalidInput, LleroError, SettingsError
from llero.identity.signing_keys import (
    MAX_ACCESS_TOKEN_LIFETIME,
    MAX_CLOCK_LEEWAY,
    SigningKeyRing,
    load_signing_key_ring,
    prune_signing_keys,
    rotate_signing_key,
)

__all__ = [
    "AccessClaims",
    "AccessTokenService",
    "ExpiredToken",
    "HmacTokenKey",
    "InvalidToken",
    "IssuedAccessToken",
    "RevokedToken",
    "SigningKeyRing",
    "TokenNotYetValid",
    "TokenPolicy",
    "TokenRejection",
    "check_not_revoked",
    "load_signing_key_ring",
    "prune_signing_keys",
    "rotate_signing_key",
]

ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a token type name, not a password
ACCESS_TOKEN_MEDIA_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 media type, not a password
HMAC_ALGORITHM = "HS256"

DEFAULT_ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
DEFAULT_LEEWAY = timedelta(seconds=30)

# An HS256 secret must be as strong as the 256-bit hash. Randomness cannot be measured, but a
# secret made of fewer distinct byte values than this is a repeated pattern, not random bytes.
MIN_HMAC_SECRET_BYTES = 32
MIN_HMAC_SECRET_DISTINCT_BYTES = 8

# A token Llero issues is about 450 characters, and about 850 with a 255-character subject and a
# 64-character role. The limit stops oversized input before any parsing.
MAX_TOKEN_CHARS = 4096
MAX_SUBJECT_CHARS = 255
MAX_ROLE_CHARS = 64

HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})
REQUIRED_CLAIMS = ("iss", "aud", "sub", "role", "typ", "iat", "nbf", "exp", "jti")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)

Clock = Callable[[], datetime]
NotBeforeLookup = Callable[[str], datetime | None]


class TokenRejection(StrEnum):
    """Reason codes for a rejected token: stable values for logs and metrics."""

    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    BAD_CHECKSUM = "bad_checksum"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    FORBIDDEN_HEADER = "forbidden_header"
    MALFORMED = "malformed"
    MISSING_CLAIM = "missing_claim"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    UNKNOWN_KEY = "unknown_key"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_TYPE = "wrong_type"


class InvalidToken(LleroError):
    """A presented token, access or opaque, was rejected; ``reason`` is the rejection code."""

    code = "invalid_token"

    def __init__(self, reason: TokenRejection, message: str = "the token is invalid") -> None:
        super().__init__(message)
        self.reason = reason


class ExpiredToken(InvalidToken):
    def __init__(self, expired_at: datetime) -> None:
        super().__init__(TokenRejection.EXPIRED, "the token has expired")
        self.expired_at = expired_at


class TokenNotYetValid(InvalidToken):
    def __init__(self, valid_from: datetime) -> None:
        super().__init__(TokenRejection.NOT_YET_VALID, "the token is not valid yet")
        self.valid_from = valid_from


class RevokedToken(InvalidToken):
    """The token was issued before its user's not-before time, for example a sign-out everywhere."""

    def __init__(self, not_before: datetime) -> None:
        super().__init__(TokenRejection.REVOKED, "the token has been revoked")
        self.not_before = not_before


class TokenKeys(Protocol):
    """The keys of one algorithm: the current key signs, and any key with a known kid verifies."""

    @property
    def algorithm(self) -> str: ...

    @property
    def current_kid(self) -> str: ...

    def signing_key(self) -> Ed25519PrivateKey | bytes: ...

    def verification_key(self, kid: str) -> Ed25519PublicKey | bytes | None: ...

    def jwks(self) -> dict[str, list[dict[str, str]]]: ...


class HmacTokenKey:
    """One HS256 secret, for deployments that cannot use Ed25519; it is never published."""

    algorithm = HMAC_ALGORITHM

    def __init__(self, secret: bytes | Secret[bytes]) -> None:
        raw = secret.reveal() if isinstance(secret, Secret) else secret
        _check_hmac_secret(raw)
        self._secret = Secret(raw)
        # RFC 7638 thumbprint of the symmetric JWK. A SHA-256 digest reveals nothing usable
        # about a 256-bit secret, and the kid lets a later secret rotation tell tokens apart.
        members = json.dumps({"k": _base64url(raw), "kty": "oct"}, separators=(",", ":"))
        self.current_kid = _base64url(hashlib.sha256(members.encode("ascii")).digest())

    def __repr__(self) -> str:
        return f"HmacTokenKey(current_kid={self.current_kid!r})"

    def signing_key(self) -> bytes:
        return self._secret.reveal()

    def verification_key(self, kid: str) -> bytes | None:
        return self._secret.reveal() if kid == self.current_kid else None

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": []}


def _check_hmac_secret(secret: object) -> None:
    if not isinstance(secret, bytes):
        raise SettingsError("the HS256 token secret must be given as bytes")
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise SettingsError(
            f"the HS256 token secret is {len(secret)} bytes long; it must be at least "
            f"{MIN_HMAC_SECRET_BYTES} random bytes, for example from secrets.token_bytes(32)"
        )
    if len(set(secret)) < MIN_HMAC_SECRET_DISTINCT_BYTES:
        raise SettingsError(
            "the HS256 token secret repeats a few byte values, so it is not random; "
            "generate it with secrets.token_bytes(32)"
        )


@dataclass(frozen=True)
class TokenPolicy:
    """Issuer, audience, lifetime and allowed clock skew (leeway) of access tokens."""

    issuer: str
    audience: str
    lifetime: timedelta = DEFAULT_ACCESS_TOKEN_LIFETIME
    leeway: timedelta = DEFAULT_LEEWAY

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise SettingsError("the access token issuer and audience must not be empty")
        # Retired signing keys are kept for MAX_ACCESS_TOKEN_LIFETIME + MAX_CLOCK_LEEWAY, so a
        # longer token could outlive the key that verifies it.
        if not timedelta(seconds=1) <= self.lifetime <= MAX_ACCESS_TOKEN_LIFETIME:
            raise SettingsError(
                f"the access token lifetime must be between 1 second and "
                f"{int(MAX_ACCESS_TOKEN_LIFETIME.total_seconds())} seconds"
            )
        if not timedelta(0) <= self.leeway <= MAX_CLOCK_LEEWAY:
            raise SettingsError(
                f"the access token leeway must be between 0 and "
                f"{int(MAX_CLOCK_LEEWAY.total_seconds())} seconds"
            )


@dataclass(frozen=True)
class IssuedAccessToken:
    token: Secret[str]
    token_id: str
    expires_at: datetime


@dataclass(frozen=True)
class AccessClaims:
    """The verified claims of an access token; ``session_id`` is None for a token without sid."""

    subject: str
    role: str
    token_id: str
    key_id: str
    issued_at: datetime
    expires_at: datetime
    session_id: str | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AccessTokenService:
    """Issues and verifies the access tokens of one deployment, with one algorithm and key set."""

    def __init__(self, policy: TokenPolicy, keys: TokenKeys, *, clock: Clock = _utc_now) -> None:
        self.policy = policy
        self._keys = keys
        self._clock = clock

    def issue_access_token(
        self, *, subject: str, role: str, session_id: str | None = None
    ) -> IssuedAccessToken:
        """Sign an access token for ``subject`` acting with ``role``, valid for the policy lifetime.

        ``session_id`` becomes the ``sid`` claim, so revoking that sign-in session can end the
        token at once.

        ``iat`` has millisecond precision (RFC 7519 allows a non-integer NumericDate) so that a
        revocation and the token issued right after it in the same request stay in order.
        """
        _check_claim_text("subject", subject, MAX_SUBJECT_CHARS)
        _check_claim_text("role", role, MAX_ROLE_CHARS)
        if session_id is not None:
            _check_claim_text("session id", session_id, MAX_SUBJECT_CHARS)

        issued_ms = _epoch_milliseconds(self._now())
        valid_from = issued_ms // 1000
        expires = valid_from + int(self.policy.lifetime.total_seconds())
        token_id = random_token(16)
        payload = {
            "iss": self.policy.issuer,
            "aud": self.policy.audience,
            "sub": subject,
            "role": role,
            "typ": ACCESS_TOKEN_TYPE,
            "iat": issued_ms / 1000,
            "nbf": valid_from,
            "exp": expires,
            "jti": token_id,
        }
        if session_id is not None:
            payload["sid"] = session_id
        headers = {"kid": self._keys.current_kid, "typ": ACCESS_TOKEN_MEDIA_TYPE}

        token = jwt.encode(
            payload, self._keys.signing_key(), algorithm=self._keys.algorithm, headers=headers
        )
        return IssuedAccessToken(Secret(token), token_id, datetime.fromtimestamp(expires, UTC))

    def verify_access_token(
        self, token: str, *, not_before_for: NotBeforeLookup | None = None
    ) -> AccessClaims:
        """Return the claims of a valid access token; raise InvalidToken or a subclass otherwise.

        ``not_before_for(subject)`` returns the user's revocation time or None. It is called only
        for a token whose signature and claims are already valid, so garbage never reaches the
        database. A token issued before that time, compared in whole milliseconds, is rejected.
        """
        header = _read_header(token)
        kid, key = self._check_header(header)
        payload = self._verified_payload(token, key)
        claims = self._check_claims(payload, kid)

        if not_before_for is not None:
            check_not_revoked(claims, not_before_for(claims.subject))
        return claims

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Return the public verification keys as a JWKS document; empty for HS256."""
        return self._keys.jwks()

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the token clock returned a naive datetime; return UTC")
        return now

    def _check_header(self, header: dict[str, Any]) -> tuple[str, Ed25519PublicKey | bytes]:
        """Return the kid and its key once every header member matches what Llero writes."""
        if not header.keys() <= HEADER_MEMBERS:
            raise InvalidToken(TokenRejection.FORBIDDEN_HEADER)
        if header.get("alg") != self._keys.algorithm:
            raise InvalidToken(TokenRejection.ALGORITHM_NOT_ALLOWED)
        if header.get("typ") != ACCESS_TOKEN_MEDIA_TYPE:
            raise InvalidToken(TokenRejection.WRONG_TYPE)
        kid = header.get("kid")
        key = self._keys.verification_key(kid) if isinstance(kid, str) else None
        if kid is None or key is None:
            raise InvalidToken(TokenRejection.UNKNOWN_KEY)
        return kid, key

    def _verified_payload(self, token: str, key: Ed25519PublicKey | bytes) -> dict[str, Any]:
        """Verify the signature with the pinned algorithm, then issuer, audience and presence."""
        # Time claims are checked by _check_claims against the injected clock instead.
        options: Options = {
            "require": list(REQUIRED_CLAIMS),
            "strict_aud": True,
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
        }
        try:
            decoded = jwt.decode_complete(
                token,
                key,
                algorithms=[self._keys.algorithm],
                issuer=self.policy.issuer,
                audience=self.policy.audience,
                options=options,
            )
        except jwt.InvalidTokenError as error:
            raise InvalidToken(_rejection_for(error)) from None
        payload: dict[str, Any] = decoded["payload"]
        return payload

    def _check_claims(self, payload: dict[str, Any], kid: str) -> AccessClaims:
        if payload["typ"] != ACCESS_TOKEN_TYPE:
            raise InvalidToken(TokenRejection.WRONG_TYPE)
        subject, role, token_id = (_claim_text(payload, name) for name in ("sub", "role", "jti"))
        issued_at, valid_from, expires_at = (
            _claim_time(payload, name) for name in ("iat", "nbf", "exp")
        )

        session_id = _claim_text(payload, "sid") if "sid" in payload else None

        now = self._now()
        leeway = self.policy.leeway
        if expires_at <= now - leeway:
            raise ExpiredToken(expires_at)
        if valid_from > now + leeway or issued_at > now + leeway:
            raise TokenNotYetValid(max(valid_from, issued_at))
        return AccessClaims(subject, role, token_id, kid, issued_at, expires_at, session_id)

    def usable_until(self, claims: AccessClaims) -> datetime:
        """Return the moment from which ``claims`` count as expired, leeway included."""
        return claims.expires_at + self.policy.leeway


def _read_header(token: object) -> dict[str, Any]:
    """Decode the JOSE header alone; it is only inspected, and trusted after the signature check."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise InvalidToken(TokenRejection.MALFORMED)
    segment = token.split(".", 1)[0]
    try:
        raw = base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_", validate=True)
        header = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidToken(TokenRejection.MALFORMED) from None
    if not isinstance(header, dict):
        raise InvalidToken(TokenRejection.MALFORMED)
    return header


def _rejection_for(error: jwt.InvalidTokenError) -> TokenRejection:
    # InvalidSignatureError subclasses DecodeError, so it must be matched first.
    rejections: list[tuple[type[jwt.InvalidTokenError], TokenRejection]] = [
        (jwt.InvalidSignatureError, TokenRejection.BAD_SIGNATURE),
        (jwt.InvalidAlgorithmError, TokenRejection.ALGORITHM_NOT_ALLOWED),
        (jwt.MissingRequiredClaimError, TokenRejection.MISSING_CLAIM),
        (jwt.InvalidIssuerError, TokenRejection.WRONG_ISSUER),
        (jwt.InvalidAudienceError, TokenRejection.WRONG_AUDIENCE),
    ]
    return next(
        (reason for kind, reason in rejections if isinstance(error, kind)),
        TokenRejection.MALFORMED,
    )


def check_not_revoked(claims: AccessClaims, not_before: datetime | None) -> None:
    """Raise RevokedToken when the token was issued before ``not_before``, to the millisecond."""
    if not_before is None:
        return
    if not_before.tzinfo is None:
        raise ValueError("not_before_for returned a naive datetime; return UTC")
    if _epoch_milliseconds(claims.issued_at) < _epoch_milliseconds(not_before):
        raise RevokedToken(not_before)


def _check_claim_text(name: str, value: object, max_chars: int) -> None:
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise InvalidInput(f"the token {name} must be a string of 1 to {max_chars} characters")


def _claim_text(payload: dict[str, Any], name: str) -> str:
    value = payload[name]
    if not isinstance(value, str) or not value:
        raise InvalidToken(TokenRejection.MALFORMED)
    return value


def _claim_time(payload: dict[str, Any], name: str) -> datetime:
    value = payload[name]
    # bool is a subclass of int, and "exp": true must not read as one second after 1970.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(TokenRejection.MALFORMED)
    try:
        return EPOCH + timedelta(milliseconds=round(value * 1000))
    except (OverflowError, ValueError):
        # Python's json module reads NaN and Infinity, which no date can hold.
        raise InvalidToken(TokenRejection.MALFORMED) from None


def _epoch_milliseconds(moment: datetime) -> int:
    return (moment - EPOCH) // MILLISECOND


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
