"""Access tokens: issuing, verifying, and rejecting forged, stale, misdirected and confused tokens.

Time is frozen with a clock object. Forged tokens are built by hand, because PyJWT would refuse to
sign some of them (an HMAC keyed with a PEM public key, for one).
"""

import base64
import hashlib
import hmac
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from llero.config.keyfiles import SIGNING_KEY, create_key_files, read_signing_key
from llero.errors import InvalidInput, LleroError, SettingsError
from llero.identity.opaque import issue_refresh_token
from llero.identity.tokens import (
    AccessTokenService,
    ExpiredToken,
    HmacTokenKey,
    InvalidToken,
    RevokedToken,
    TokenNotYetValid,
    TokenPolicy,
    TokenRejection,
    load_signing_key_ring,
    prune_signing_keys,
    rotate_signing_key,
)

T0 = datetime(2030, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)
ISSUER = "https://llero.example.com"
AUDIENCE = "llero-api"
HMAC_SECRET = bytes(range(32))


class FrozenClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    create_key_files(path)
    return path


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def policy() -> TokenPolicy:
    return TokenPolicy(issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def service(keys_dir: Path, policy: TokenPolicy, clock: FrozenClock) -> AccessTokenService:
    return AccessTokenService(policy, load_signing_key_ring(keys_dir), clock=clock)


@pytest.fixture
def hmac_service(policy: TokenPolicy, clock: FrozenClock) -> AccessTokenService:
    return AccessTokenService(policy, HmacTokenKey(HMAC_SECRET), clock=clock)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signing_input(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())


def sign_eddsa(key: Ed25519PrivateKey, header: dict[str, Any], payload: dict[str, Any]) -> str:
    message = signing_input(header, payload)
    return message + "." + b64(key.sign(message.encode()))


def sign_hs256(secret: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    message = signing_input(header, payload)
    return message + "." + b64(hmac.new(secret, message.encode(), hashlib.sha256).digest())


def good_header(kid: str, alg: str = "EdDSA") -> dict[str, Any]:
    return {"alg": alg, "typ": "at+jwt", "kid": kid}


def good_payload(now: datetime = T0, **changes: Any) -> dict[str, Any]:
    start = int(now.timestamp())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "role": "member",
        "typ": "access",
        "iat": start,
        "nbf": start,
        "exp": start + 900,
        "jti": "token-1",
    }
    payload.update(changes)
    return payload


def legacy_key(keys_dir: Path) -> Ed25519PrivateKey:
    return read_signing_key(keys_dir / SIGNING_KEY)


def current_kid(keys_dir: Path) -> str:
    return load_signing_key_ring(keys_dir).current_kid


def public_pem(keys_dir: Path) -> bytes:
    return (
        legacy_key(keys_dir)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def rejection_of(service: AccessTokenService, token: str) -> TokenRejection:
    with pytest.raises(InvalidToken) as caught:
        service.verify_access_token(token)
    return caught.value.reason


# Round trip.


def test_issued_token_verifies_with_its_claims(service: AccessTokenService) -> None:
    issued = service.issue_access_token(subject="user-42", role="admin")

    claims = service.verify_access_token(issued.token.reveal())

    assert claims.subject == "user-42"
    assert claims.role == "admin"
    assert claims.token_id == issued.token_id
    assert claims.issued_at == T0.replace(microsecond=250000)
    assert (
        claims.expires_at == issued.expires_at == T0.replace(microsecond=0) + timedelta(minutes=15)
    )
    assert claims.key_id == service.jwks()["keys"][0]["kid"]


def test_issued_token_has_rfc_9068_header_and_claims(
    service: AccessTokenService, keys_dir: Path
) -> None:
    token = service.issue_access_token(subject="user-42", role="admin").token.reveal()

    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False})

    assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": current_kid(keys_dir)}
    assert set(payload) == {"iss", "aud", "sub", "role", "typ", "iat", "nbf", "exp", "jti"}
    assert payload["typ"] == "access"
    assert payload["iss"] == ISSUER
    assert payload["aud"] == AUDIENCE
    assert payload["iat"] == pytest.approx(T0.timestamp())
    assert payload["nbf"] == int(T0.timestamp())
    assert payload["exp"] == int(T0.timestamp()) + 900
    assert len(base64.urlsafe_b64decode(payload["jti"] + "==")) == 16


def test_issued_token_ids_differ(service: AccessTokenService) -> None:
    ids = {service.issue_access_token(subject="u", role="r").token_id for _ in range(100)}

    assert len(ids) == 100


def test_issued_token_repr_hides_token(service: AccessTokenService) -> None:
    issued = service.issue_access_token(subject="user-42", role="admin")

    assert issued.token.reveal() not in repr(issued)
    assert issued.token.reveal().split(".")[2] not in repr(issued)


@pytest.mark.parametrize(
    ("subject", "role"), [("", "member"), ("u" * 256, "member"), ("user", ""), ("user", "r" * 65)]
)
def test_issue_with_invalid_subject_or_role_rejected(
    service: AccessTokenService, subject: str, role: str
) -> None:
    with pytest.raises(InvalidInput, match="must be a string of 1 to"):
        service.issue_access_token(subject=subject, role=role)


# Hostile headers and algorithms.

Forger = Callable[[Path], str]

HOSTILE_HEADER_TOKENS: list[tuple[str, Forger, TokenRejection]] = [
    (
        "alg none without signature",
        lambda keys: (
            signing_input(
                {"alg": "none", "typ": "at+jwt", "kid": current_kid(keys)}, good_payload()
            )
            + "."
        ),
        TokenRejection.ALGORITHM_NOT_ALLOWED,
    ),
    (
        "alg None with EdDSA signature",
        lambda keys: sign_eddsa(
            legacy_key(keys),
            {"alg": "None", "typ": "at+jwt", "kid": current_kid(keys)},
            good_payload(),
        ),
        TokenRejection.ALGORITHM_NOT_ALLOWED,
    ),
    (
        "HS256 keyed with the Ed25519 public key PEM",
        lambda keys: sign_hs256(
            public_pem(keys), good_header(current_kid(keys), "HS256"), good_payload()
        ),
        TokenRejection.ALGORITHM_NOT_ALLOWED,
    ),
    (
        "HS256 keyed with the raw Ed25519 public key",
        lambda keys: sign_hs256(
            legacy_key(keys).public_key().public_bytes_raw(),
            good_header(current_kid(keys), "HS256"),
            good_payload(),
        ),
        TokenRejection.ALGORITHM_NOT_ALLOWED,
    ),
    (
        "alg missing",
        lambda keys: sign_eddsa(
            legacy_key(keys), {"typ": "at+jwt", "kid": current_kid(keys)}, good_payload()
        ),
        TokenRejection.ALGORITHM_NOT_ALLOWED,
    ),
    (
        "kid path traversal",
        lambda keys: sign_eddsa(legacy_key(keys), good_header("../../etc/passwd"), good_payload()),
        TokenRejection.UNKNOWN_KEY,
    ),
    (
        "kid with null byte",
        lambda keys: sign_eddsa(
            legacy_key(keys), good_header(current_kid(keys) + "\x00.pem"), good_payload()
        ),
        TokenRejection.UNKNOWN_KEY,
    ),
    (
        "kid of the key file name",
        lambda keys: sign_eddsa(legacy_key(keys), good_header(SIGNING_KEY), good_payload()),
        TokenRejection.UNKNOWN_KEY,
    ),
    (
        "kid in another case",
        lambda keys: sign_eddsa(
            legacy_key(keys), good_header(current_kid(keys).swapcase()), good_payload()
        ),
        TokenRejection.UNKNOWN_KEY,
    ),
    (
        "kid missing",
        lambda keys: sign_eddsa(
            legacy_key(keys), {"alg": "EdDSA", "typ": "at+jwt"}, good_payload()
        ),
        TokenRejection.UNKNOWN_KEY,
    ),
    (
        "kid not a string",
        lambda keys: sign_eddsa(
            legacy_key(keys), {"alg": "EdDSA", "typ": "at+jwt", "kid": ["a"]}, good_payload()
        ),
        TokenRejection.UNKNOWN_KEY,
    ),
    (
        "header typ JWT",
        lambda keys: sign_eddsa(
            legacy_key(keys),
            {"alg": "EdDSA", "typ": "JWT", "kid": current_kid(keys)},
            good_payload(),
        ),
        TokenRejection.WRONG_TYPE,
    ),
    (
        "header typ of a refresh token",
        lambda keys: sign_eddsa(
            legacy_key(keys),
            {"alg": "EdDSA", "typ": "rt+jwt", "kid": current_kid(keys)},
            good_payload(),
        ),
        TokenRejection.WRONG_TYPE,
    ),
    (
        "header typ missing",
        lambda keys: sign_eddsa(
            legacy_key(keys), {"alg": "EdDSA", "kid": current_kid(keys)}, good_payload()
        ),
        TokenRejection.WRONG_TYPE,
    ),
]


@pytest.mark.parametrize(
    ("forge", "expected"),
    [(forge, expected) for _, forge, expected in HOSTILE_HEADER_TOKENS],
    ids=[name for name, _, _ in HOSTILE_HEADER_TOKENS],
)
def test_hostile_header_rejected(
    service: AccessTokenService, keys_dir: Path, forge: Forger, expected: TokenRejection
) -> None:
    assert rejection_of(service, forge(keys_dir)) == expected


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        (
            "jwk",
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ),
        ("x5c", ["MIIB"]),
        ("crit", ["exp"]),
        ("b64", False),
        ("cty", "JWT"),
    ],
)
def test_header_with_extra_member_rejected(
    service: AccessTokenService, keys_dir: Path, member: str, value: object
) -> None:
    header = {**good_header(current_kid(keys_dir)), member: value}
    token = sign_eddsa(legacy_key(keys_dir), header, good_payload())

    assert rejection_of(service, token) == TokenRejection.FORBIDDEN_HEADER


def test_unknown_kid_rejected_without_file_access(
    service: AccessTokenService, keys_dir: Path
) -> None:
    valid = service.issue_access_token(subject="user-1", role="member").token.reveal()
    hostile = sign_eddsa(legacy_key(keys_dir), good_header("../../etc/passwd"), good_payload())
    shutil.rmtree(keys_dir)

    assert rejection_of(service, hostile) == TokenRejection.UNKNOWN_KEY
    assert service.verify_access_token(valid).subject == "user-1"


def test_forged_signature_with_known_kid_rejected(
    service: AccessTokenService, keys_dir: Path
) -> None:
    token = sign_eddsa(
        Ed25519PrivateKey.generate(), good_header(current_kid(keys_dir)), good_payload()
    )

    assert rejection_of(service, token) == TokenRejection.BAD_SIGNATURE


def test_tampered_payload_rejected(service: AccessTokenService) -> None:
    token = service.issue_access_token(subject="user-1", role="member").token.reveal()
    header, _, signature = token.split(".")
    forged_payload = b64(json.dumps(good_payload(role="admin")).encode())

    assert rejection_of(service, f"{header}.{forged_payload}.{signature}") == (
        TokenRejection.BAD_SIGNATURE
    )


def test_signature_checked_before_expiry(service: AccessTokenService, keys_dir: Path) -> None:
    stale = good_payload(now=T0 - timedelta(days=1))
    token = sign_eddsa(Ed25519PrivateKey.generate(), good_header(current_kid(keys_dir)), stale)

    assert rejection_of(service, token) == TokenRejection.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("", TokenRejection.MALFORMED),
        ("abc", TokenRejection.MALFORMED),
        ("a.b", TokenRejection.MALFORMED),
        ("a.b.c.d", TokenRejection.MALFORMED),
        ("!!!.e30.c2ln", TokenRejection.MALFORMED),
        ("W10.e30.c2ln", TokenRejection.MALFORMED),
        ("bm90IGpzb24.e30.c2ln", TokenRejection.MALFORMED),
        ("a" * 5000 + ".b.c", TokenRejection.MALFORMED),
        ("e30.e30.", TokenRejection.ALGORITHM_NOT_ALLOWED),
        ("eyJhbGciOiJFZERTQSJ9..", TokenRejection.WRONG_TYPE),
    ],
)
def test_malformed_token_rejected(
    service: AccessTokenService, token: str, expected: TokenRejection
) -> None:
    assert rejection_of(service, token) == expected


def test_non_string_token_rejected(service: AccessTokenService) -> None:
    assert rejection_of(service, b"a.b.c") == TokenRejection.MALFORMED  # type: ignore[arg-type]


# Claims.


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"iss": "https://attacker.example"}, TokenRejection.WRONG_ISSUER),
        ({"iss": ISSUER + "/"}, TokenRejection.WRONG_ISSUER),
        ({"iss": [ISSUER]}, TokenRejection.WRONG_ISSUER),
        ({"aud": "other-api"}, TokenRejection.WRONG_AUDIENCE),
        ({"aud": [AUDIENCE, "other-api"]}, TokenRejection.WRONG_AUDIENCE),
        ({"aud": [AUDIENCE]}, TokenRejection.WRONG_AUDIENCE),
        ({"typ": "refresh"}, TokenRejection.WRONG_TYPE),
        ({"typ": "id"}, TokenRejection.WRONG_TYPE),
        ({"typ": "Access"}, TokenRejection.WRONG_TYPE),
        ({"sub": ""}, TokenRejection.MALFORMED),
        ({"sub": 42}, TokenRejection.MALFORMED),
        ({"role": ["admin"]}, TokenRejection.MALFORMED),
        ({"jti": 7}, TokenRejection.MALFORMED),
        ({"exp": True}, TokenRejection.MALFORMED),
        ({"exp": "2030-01-01"}, TokenRejection.MALFORMED),
        ({"exp": float("nan")}, TokenRejection.MALFORMED),
        ({"exp": float("inf")}, TokenRejection.MALFORMED),
        ({"exp": 10**30}, TokenRejection.MALFORMED),
        ({"nbf": None}, TokenRejection.MISSING_CLAIM),
    ],
)
def test_signed_token_with_bad_claim_rejected(
    service: AccessTokenService, keys_dir: Path, changes: dict[str, Any], expected: TokenRejection
) -> None:
    token = sign_eddsa(
        legacy_key(keys_dir), good_header(current_kid(keys_dir)), good_payload(**changes)
    )

    assert rejection_of(service, token) == expected


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "role", "typ", "iat", "nbf", "exp", "jti"])
def test_signed_token_missing_claim_rejected(
    service: AccessTokenService, keys_dir: Path, claim: str
) -> None:
    payload = good_payload()
    del payload[claim]
    token = sign_eddsa(legacy_key(keys_dir), good_header(current_kid(keys_dir)), payload)

    assert rejection_of(service, token) == TokenRejection.MISSING_CLAIM


def test_token_for_other_audience_rejected(
    keys_dir: Path, service: AccessTokenService, clock: FrozenClock
) -> None:
    ring = load_signing_key_ring(keys_dir)
    other = AccessTokenService(
        TokenPolicy(issuer=ISSUER, audience="billing-api"), ring, clock=clock
    )
    token = other.issue_access_token(subject="user-1", role="member").token.reveal()

    assert rejection_of(service, token) == TokenRejection.WRONG_AUDIENCE


def test_token_from_other_issuer_rejected(
    keys_dir: Path, service: AccessTokenService, clock: FrozenClock
) -> None:
    ring = load_signing_key_ring(keys_dir)
    other = AccessTokenService(
        TokenPolicy(issuer="https://staging.example.com", audience=AUDIENCE), ring, clock=clock
    )
    token = other.issue_access_token(subject="user-1", role="member").token.reveal()

    assert rejection_of(service, token) == TokenRejection.WRONG_ISSUER


def test_refresh_token_presented_as_access_token_rejected(service: AccessTokenService) -> None:
    refresh = issue_refresh_token().token.reveal()

    assert rejection_of(service, refresh) == TokenRejection.MALFORMED


def test_refresh_jwt_presented_as_access_token_rejected(
    service: AccessTokenService, keys_dir: Path
) -> None:
    token = sign_eddsa(
        legacy_key(keys_dir), good_header(current_kid(keys_dir)), good_payload(typ="refresh")
    )

    assert rejection_of(service, token) == TokenRejection.WRONG_TYPE


# Time.


def test_token_valid_until_expiry_plus_leeway(
    service: AccessTokenService, clock: FrozenClock
) -> None:
    token = service.issue_access_token(subject="user-1", role="member").token.reveal()

    clock.advance(minutes=15, seconds=29)

    assert service.verify_access_token(token).subject == "user-1"


def test_expired_token_rejected(service: AccessTokenService, clock: FrozenClock) -> None:
    issued = service.issue_access_token(subject="user-1", role="member")
    clock.advance(minutes=15, seconds=30)

    with pytest.raises(ExpiredToken) as caught:
        service.verify_access_token(issued.token.reveal())

    assert caught.value.reason == TokenRejection.EXPIRED
    assert caught.value.expired_at == issued.expires_at


def test_leeway_is_configurable(keys_dir: Path, clock: FrozenClock) -> None:
    strict = AccessTokenService(
        TokenPolicy(issuer=ISSUER, audience=AUDIENCE, leeway=timedelta(0)),
        load_signing_key_ring(keys_dir),
        clock=clock,
    )
    token = strict.issue_access_token(subject="user-1", role="member").token.reveal()
    clock.advance(minutes=15)

    with pytest.raises(ExpiredToken):
        strict.verify_access_token(token)


@pytest.mark.parametrize(
    "changes",
    [
        {"nbf": int(T0.timestamp()) + 31},
        {"nbf": int(T0.timestamp()) + 3600},
        {"iat": int(T0.timestamp()) + 3600},
    ],
)
def test_token_not_yet_valid_rejected(
    service: AccessTokenService, keys_dir: Path, changes: dict[str, Any]
) -> None:
    token = sign_eddsa(
        legacy_key(keys_dir), good_header(current_kid(keys_dir)), good_payload(**changes)
    )

    with pytest.raises(TokenNotYetValid) as caught:
        service.verify_access_token(token)

    assert caught.value.reason == TokenRejection.NOT_YET_VALID


def test_token_from_clock_within_leeway_accepted(
    service: AccessTokenService, keys_dir: Path
) -> None:
    start = int(T0.timestamp()) + 29
    payload = good_payload(iat=start, nbf=start)
    token = sign_eddsa(legacy_key(keys_dir), good_header(current_kid(keys_dir)), payload)

    assert service.verify_access_token(token).subject == "user-1"


def test_naive_clock_rejected(keys_dir: Path, policy: TokenPolicy) -> None:
    naive = AccessTokenService(
        policy,
        load_signing_key_ring(keys_dir),
        clock=lambda: datetime(2030, 1, 1),
    )

    with pytest.raises(ValueError, match="naive"):
        naive.issue_access_token(subject="user-1", role="member")


# Per-user not-before time.


def test_token_issued_before_revocation_rejected(
    service: AccessTokenService, clock: FrozenClock
) -> None:
    token = service.issue_access_token(subject="user-1", role="member").token.reveal()
    revoked_at = T0 + timedelta(milliseconds=1)

    with pytest.raises(RevokedToken) as caught:
        service.verify_access_token(token, not_before_for=lambda subject: revoked_at)

    assert caught.value.reason == TokenRejection.REVOKED
    assert caught.value.not_before == revoked_at


def test_token_issued_at_or_after_revocation_accepted(
    service: AccessTokenService, clock: FrozenClock
) -> None:
    revoked_at = T0
    clock.advance(microseconds=400)
    token = service.issue_access_token(subject="user-1", role="member").token.reveal()

    claims = service.verify_access_token(token, not_before_for=lambda subject: revoked_at)

    assert claims.subject == "user-1"


def test_token_of_user_without_revocation_accepted(service: AccessTokenService) -> None:
    token = service.issue_access_token(subject="user-1", role="member").token.reveal()

    assert service.verify_access_token(token, not_before_for=lambda subject: None).role == "member"


def test_revocation_lookup_receives_subject_of_valid_token_only(
    service: AccessTokenService, keys_dir: Path
) -> None:
    looked_up: list[str] = []

    def lookup(subject: str) -> datetime | None:
        looked_up.append(subject)
        return None

    valid = service.issue_access_token(subject="user-7", role="member").token.reveal()
    forged = sign_eddsa(
        Ed25519PrivateKey.generate(), good_header(current_kid(keys_dir)), good_payload()
    )
    with pytest.raises(InvalidToken):
        service.verify_access_token(forged, not_before_for=lookup)
    service.verify_access_token(valid, not_before_for=lookup)

    assert looked_up == ["user-7"]


def test_naive_revocation_time_rejected(service: AccessTokenService) -> None:
    token = service.issue_access_token(subject="user-1", role="member").token.reveal()

    with pytest.raises(ValueError, match="naive"):
        service.verify_access_token(token, not_before_for=lambda subject: datetime(2030, 1, 1))


# Key rotation.


def test_token_signed_by_previous_key_valid_after_rotation(
    keys_dir: Path, policy: TokenPolicy, clock: FrozenClock
) -> None:
    before = AccessTokenService(policy, load_signing_key_ring(keys_dir), clock=clock)
    old_token = before.issue_access_token(subject="user-1", role="member").token.reveal()

    new_kid = rotate_signing_key(keys_dir, now=T0)
    after = AccessTokenService(policy, load_signing_key_ring(keys_dir), clock=clock)
    new_token = after.issue_access_token(subject="user-2", role="member").token.reveal()

    assert after.verify_access_token(old_token).subject == "user-1"
    assert after.verify_access_token(new_token).key_id == new_kid
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid


def test_token_signed_by_pruned_key_rejected(
    keys_dir: Path, policy: TokenPolicy, clock: FrozenClock
) -> None:
    before = AccessTokenService(policy, load_signing_key_ring(keys_dir), clock=clock)
    old_token = before.issue_access_token(subject="user-1", role="member").token.reveal()
    rotate_signing_key(keys_dir, now=T0)
    prune_signing_keys(keys_dir, timedelta(hours=2), now=T0 + timedelta(hours=2))

    after = AccessTokenService(policy, load_signing_key_ring(keys_dir), clock=clock)

    assert rejection_of(after, old_token) == TokenRejection.UNKNOWN_KEY


def test_jwks_has_no_private_key_material(keys_dir: Path, service: AccessTokenService) -> None:
    private = legacy_key(keys_dir).private_bytes_raw()

    document = service.jwks()

    assert len(document["keys"]) == 1
    assert "d" not in document["keys"][0]
    assert b64(private) not in json.dumps(document)
    assert set(document["keys"][0]) == {"kty", "crv", "x", "kid", "alg", "use"}


def test_jwks_key_verifies_issued_token(keys_dir: Path, policy: TokenPolicy) -> None:
    # The system clock here, because PyJWT checks iat, nbf and exp against it.
    service = AccessTokenService(policy, load_signing_key_ring(keys_dir))
    token = service.issue_access_token(subject="user-1", role="member").token.reveal()
    jwk = jwt.PyJWK(service.jwks()["keys"][0])

    payload = jwt.decode(token, jwk, algorithms=["EdDSA"], audience=AUDIENCE)

    assert payload["sub"] == "user-1"


# HS256.


def test_hmac_token_verifies(hmac_service: AccessTokenService) -> None:
    token = hmac_service.issue_access_token(subject="user-1", role="member").token.reveal()

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert hmac_service.verify_access_token(token).subject == "user-1"


def test_eddsa_token_rejected_by_hmac_deployment(
    service: AccessTokenService, hmac_service: AccessTokenService
) -> None:
    token = service.issue_access_token(subject="user-1", role="member").token.reveal()

    assert rejection_of(hmac_service, token) == TokenRejection.ALGORITHM_NOT_ALLOWED


def test_hmac_token_rejected_by_eddsa_deployment(
    service: AccessTokenService, hmac_service: AccessTokenService
) -> None:
    token = hmac_service.issue_access_token(subject="user-1", role="member").token.reveal()

    assert rejection_of(service, token) == TokenRejection.ALGORITHM_NOT_ALLOWED


def test_hmac_token_with_other_secret_rejected(hmac_service: AccessTokenService) -> None:
    other_key = HmacTokenKey(bytes(range(1, 33)))
    header = good_header(HmacTokenKey(HMAC_SECRET).current_kid, "HS256")
    token = sign_hs256(other_key.signing_key(), header, good_payload())

    assert rejection_of(hmac_service, token) == TokenRejection.BAD_SIGNATURE


def test_hmac_token_with_other_kid_rejected(hmac_service: AccessTokenService) -> None:
    other = HmacTokenKey(bytes(range(1, 33)))
    token = sign_hs256(HMAC_SECRET, good_header(other.current_kid, "HS256"), good_payload())

    assert rejection_of(hmac_service, token) == TokenRejection.UNKNOWN_KEY


def test_hmac_deployment_publishes_no_keys(hmac_service: AccessTokenService) -> None:
    assert hmac_service.jwks() == {"keys": []}


@pytest.mark.parametrize("length", [0, 1, 16, 31])
def test_hmac_secret_shorter_than_32_bytes_rejected(length: int) -> None:
    with pytest.raises(SettingsError, match=f"is {length} bytes long; it must be at least 32"):
        HmacTokenKey(bytes(range(length)))


@pytest.mark.parametrize("secret", [b"\x00" * 32, b"a" * 64, b"passwordpasswordpasswordpassword"])
def test_hmac_secret_with_repeated_pattern_rejected(secret: bytes) -> None:
    with pytest.raises(SettingsError, match="not random"):
        HmacTokenKey(secret)


def test_hmac_secret_as_text_rejected() -> None:
    with pytest.raises(SettingsError, match="as bytes"):
        HmacTokenKey("x" * 64)  # type: ignore[arg-type]


def test_hmac_key_repr_hides_secret() -> None:
    secret = bytes(range(100, 132))

    text = repr(HmacTokenKey(secret)) + str(vars(HmacTokenKey(secret)))

    assert secret.hex() not in text
    assert repr(secret) not in text
    assert b64(secret) not in text


# Policy and errors.


@pytest.mark.parametrize(
    "changes",
    [
        {"issuer": ""},
        {"audience": ""},
        {"lifetime": timedelta(0)},
        {"lifetime": timedelta(hours=1, seconds=1)},
        {"leeway": timedelta(seconds=-1)},
        {"leeway": timedelta(minutes=5, seconds=1)},
    ],
)
def test_unsafe_token_policy_rejected(changes: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, **changes}

    with pytest.raises(SettingsError):
        TokenPolicy(**settings)


def test_token_errors_form_one_hierarchy() -> None:
    for error in (ExpiredToken(T0), TokenNotYetValid(T0), RevokedToken(T0)):
        assert isinstance(error, InvalidToken)
        assert isinstance(error, LleroError)
        assert error.code == "invalid_token"
