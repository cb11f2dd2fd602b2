"""Second factors: time-based one-time passwords (TOTP, RFC 6238) and single-use recovery codes.

TOTP uses the parameters every authenticator app supports without asking: HMAC-SHA-1, 6 digits,
a 30-second step. SHA-1's collision weakness does not apply to HMAC, which RFC 6238 and RFC 4226
build on. Seeds and codes travel in ``Secret``, so they show as a mask in logs and tracebacks.
"""

import base64
import hashlib
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno

from llero.crypto import Secret, constant_time_equals, hash_token

TOTP_DIGITS = 6
TOTP_STEP_SECONDS = 30
# RFC 4226 requires a shared secret of at least 128 bits and recommends 160, the HMAC-SHA-1 size.
TOTP_SEED_BYTES = 20
# One step either way covers a phone clock up to 30 seconds off and a code typed just before it
# rolled over. Each further step would widen the window in which a guessed code is accepted.
TOTP_ALLOWED_DRIFT_STEPS = 1
DEFAULT_ISSUER = "Llero"

RECOVERY_CODE_COUNT = 10
# Crockford's base32 alphabet: no i, l, o or u, so a code read aloud or copied by hand survives.
RECOVERY_CODE_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# 26 characters of 5 bits are 130 bits from the CSPRNG. That is what lets a plain SHA-256 store
# them (crypto.hash_token): a salt and a slow hash exist to make guessing a low-entropy secret from
# a stolen hash expensive, and at 130 bits even 2**64 guesses a second would need about 2**65
# seconds on average, whatever the hash costs. It also lets the database find a code by equality.
RECOVERY_CODE_LENGTH = 26
_RECOVERY_CODE_GROUPS = (5, 5, 5, 5, 6)
# Readers type what they see: drop separators and accept the letters Crockford maps to digits.
_RECOVERY_CODE_TYPOS = str.maketrans({"-": None, " ": None, "i": "1", "l": "1", "o": "0"})


@dataclass(frozen=True, repr=False)
class TotpEnrollment:
    """Data for adding Llero to an authenticator app. Every field contains the seed.

    ``seed`` is the base32 secret to store (encrypted) once the user confirms a first code.
    ``provisioning_uri`` is the otpauth:// URI, ``manual_key`` the seed in groups of four for
    typing, and ``qr_svg`` a standalone SVG image of a QR code of the URI.
    """

    seed: Secret[str]
    provisioning_uri: Secret[str]
    manual_key: Secret[str]
    qr_svg: Secret[str]

    def __repr__(self) -> str:
        return "TotpEnrollment(seed=**********, provisioning_uri=**********, ...)"


def new_totp_seed() -> Secret[str]:
    """Return a new TOTP seed of 160 random bits, base32-encoded without padding."""
    return Secret(base64.b32encode(secrets.token_bytes(TOTP_SEED_BYTES)).decode("ascii"))


def enroll_totp(
    account_name: str, *, issuer: str = DEFAULT_ISSUER, seed: Secret[str] | None = None
) -> TotpEnrollment:
    """Return enrollment data for ``account_name`` (usually the email) under a new seed.

    ``seed`` is for showing the same enrollment again before the user confirms it.
    """
    if seed is None:
        seed = new_totp_seed()
    uri = _totp(seed).provisioning_uri(name=account_name, issuer_name=issuer)
    return TotpEnrollment(
        seed=seed,
        provisioning_uri=Secret(uri),
        manual_key=Secret(_group(seed.reveal(), 4)),
        qr_svg=Secret(_qr_svg(uri)),
    )


def totp_step(now: datetime) -> int:
    """Return the number of the TOTP time step that contains ``now`` (a timezone-aware time)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, or the step depends on the server's zone")
    return int(now.timestamp()) // TOTP_STEP_SECONDS


def verify_totp(
    seed: Secret[str], code: str, last_used_step: int | None, now: datetime
) -> int | None:
    """Return the time step that ``code`` belongs to, or None when it is not accepted.

    Accepted codes are those of the current step and of one step before or after it, and only
    for steps after ``last_used_step``. A caller must store the returned step as the new
    ``last_used_step`` in the same transaction that signs the user in, so that a code can be used
    once: an observed code replayed within its 90-second window is then refused.
    """
    if len(code) != TOTP_DIGITS or not (code.isascii() and code.isdigit()):
        return None

    totp = _totp(seed)
    current = totp_step(now)
    candidates = range(current - TOTP_ALLOWED_DRIFT_STEPS, current + TOTP_ALLOWED_DRIFT_STEPS + 1)

    # Every candidate is compared, so the time taken does not show which step matched.
    matched = [step for step in candidates if constant_time_equals(totp.generate_otp(step), code)]
    fresh = [step for step in matched if last_used_step is None or step > last_used_step]
    return max(fresh, default=None)


def generate_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[Secret[str]]:
    """Return ``count`` new recovery codes, formatted for display as ``xxxxx-xxxxx-...``."""
    return [Secret(_format_recovery_code(_random_recovery_code())) for _ in range(count)]


def hash_recovery_code(code: str | Secret[str]) -> str:
    """Return the form in which a recovery code is stored: SHA-256 hex of its canonical form.

    Raises ValueError when ``code`` is not a recovery code in form; codes from
    ``generate_recovery_codes`` always are.
    """
    canonical = _canonical_recovery_code(code.reveal() if isinstance(code, Secret) else code)
    if canonical is None:
        raise ValueError("not a recovery code: expected 26 characters of Crockford base32")
    return hash_token(canonical)


def find_recovery_code(code: str, stored_hashes: Sequence[str]) -> int | None:
    """Return the index in ``stored_hashes`` of the hash of ``code``, or None.

    The caller deletes that hash in the same transaction that signs the user in, which is what
    makes each code single-use. Input is accepted in any case, with or without dashes and spaces.
    """
    canonical = _canonical_recovery_code(code)
    if canonical is None:
        return None
    presented = hash_token(canonical)

    # No early exit: the time taken does not depend on which stored hash matched, if any.
    found = None
    for index, stored in enumerate(stored_hashes):
        if constant_time_equals(presented, stored):
            found = index
    return found


def _totp(seed: Secret[str]) -> pyotp.TOTP:
    return pyotp.TOTP(
        seed.reveal(), digits=TOTP_DIGITS, digest=hashlib.sha1, interval=TOTP_STEP_SECONDS
    )


def _qr_svg(uri: str) -> str:
    buffer = io.BytesIO()
    qr_code = segno.make(uri, error="m", micro=False)
    qr_code.save(buffer, kind="svg", scale=4, xmldecl=False, svgns=True, nl=False)
    return buffer.getvalue().decode("utf-8")


def _random_recovery_code() -> str:
    return "".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))


def _format_recovery_code(code: str) -> str:
    groups = []
    start = 0
    for size in _RECOVERY_CODE_GROUPS:
        groups.append(code[start : start + size])
        start += size
    return "-".join(groups)


def _canonical_recovery_code(code: str) -> str | None:
    canonical = code.lower().translate(_RECOVERY_CODE_TYPOS)
    if len(canonical) != RECOVERY_CODE_LENGTH:
        return None
    if not all(character in RECOVERY_CODE_ALPHABET for character in canonical):
        return None
    return canonical


def _group(text: str, size: int) -> str:
    return " ".join(text[index : index + size] for index in range(0, len(text), size))
