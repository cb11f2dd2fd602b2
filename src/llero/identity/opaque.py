"""Opaque tokens: refresh tokens, personal API tokens and e-mail link tokens.

Each token is a kind prefix, 43 base62 characters drawn from the CSPRNG (256 bits), and a
six-character base62 CRC32 checksum of everything before it:

    llero_pat_<43 random characters><6 checksum characters>

The prefix lets secret scanners find a leaked token, and the checksum lets them, and Llero,
tell a real token from a typo or a look-alike offline, as GitHub's tokens do. The checksum is
no secret and proves nothing about authenticity; only the database lookup of the hash does.

Only ``hash_token`` of a token is ever stored. The plaintext exists once, in the
``IssuedOpaqueToken`` handed to the caller to show or send. The parse functions reject a wrong
prefix, length, alphabet or checksum before any database lookup.
"""

import re
import secrets
import zlib
from dataclasses import dataclass
from enum import StrEnum

from llero.crypto import Secret, hash_token
from llero.identity.tokens import InvalidToken, TokenRejection

BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# ASCII only: str.isalnum and \w also accept other scripts' letters and digits.
_BASE62_TEXT = re.compile("[0-9A-Za-z]*")
RANDOM_BYTES = 32
RANDOM_CHARS = 43  # 62**43 > 2**256, so 43 characters carry every value of 32 random bytes
CHECKSUM_CHARS = 6  # 62**6 > 2**32, the range of CRC32


class OpaqueKind(StrEnum):
    REFRESH = "refresh"
    PERSONAL_API = "personal_api"
    EMAIL_LINK = "email_link"


PREFIXES = {
    OpaqueKind.REFRESH: "llero_rt_",
    OpaqueKind.PERSONAL_API: "llero_pat_",
    OpaqueKind.EMAIL_LINK: "llero_el_",
}


@dataclass(frozen=True)
class IssuedOpaqueToken:
    """A new token: ``token`` goes to the user once, ``token_hash`` goes to the database."""

    kind: OpaqueKind
    token: Secret[str]
    token_hash: str


def issue_refresh_token() -> IssuedOpaqueToken:
    return issue_opaque_token(OpaqueKind.REFRESH)


def issue_personal_api_token() -> IssuedOpaqueToken:
    return issue_opaque_token(OpaqueKind.PERSONAL_API)


def issue_email_link_token() -> IssuedOpaqueToken:
    return issue_opaque_token(OpaqueKind.EMAIL_LINK)


def issue_opaque_token(kind: OpaqueKind) -> IssuedOpaqueToken:
    body = PREFIXES[kind] + _to_base62(secrets.token_bytes(RANDOM_BYTES), RANDOM_CHARS)
    token = body + _checksum(body)
    return IssuedOpaqueToken(kind, Secret(token), hash_token(token))


def parse_refresh_token(text: str) -> str:
    """Return the storage hash of a well-formed refresh token; raise InvalidToken otherwise."""
    return parse_opaque_token(text, OpaqueKind.REFRESH)


def parse_personal_api_token(text: str) -> str:
    """Return the storage hash of a well-formed personal API token; raise InvalidToken otherwise."""
    return parse_opaque_token(text, OpaqueKind.PERSONAL_API)


def parse_email_link_token(text: str) -> str:
    """Return the storage hash of a well-formed e-mail link token; raise InvalidToken otherwise."""
    return parse_opaque_token(text, OpaqueKind.EMAIL_LINK)


def parse_opaque_token(text: object, kind: OpaqueKind) -> str:
    """Return ``hash_token(text)`` once ``text`` has the shape and checksum of a ``kind`` token.

    InvalidToken's reason is WRONG_TYPE for another kind's prefix (a refresh token sent as an API
    token), BAD_CHECKSUM for a mistyped or altered token, and MALFORMED for anything else.
    """
    if not isinstance(text, str):
        raise InvalidToken(TokenRejection.MALFORMED)
    prefix = PREFIXES[kind]
    if not text.startswith(prefix):
        raise InvalidToken(_rejection_for_prefix(text))
    if len(text) != len(prefix) + RANDOM_CHARS + CHECKSUM_CHARS:
        raise InvalidToken(TokenRejection.MALFORMED)

    body, checksum = text[:-CHECKSUM_CHARS], text[-CHECKSUM_CHARS:]
    if not _BASE62_TEXT.fullmatch(text, len(prefix)):
        raise InvalidToken(TokenRejection.MALFORMED)
    # The checksum is computable by anyone from the token itself, so a plain comparison leaks
    # nothing that a constant-time one would hide.
    if checksum != _checksum(body):
        raise InvalidToken(TokenRejection.BAD_CHECKSUM)
    return hash_token(text)


def _rejection_for_prefix(text: str) -> TokenRejection:
    if any(text.startswith(prefix) for prefix in PREFIXES.values()):
        return TokenRejection.WRONG_TYPE
    return TokenRejection.MALFORMED


def _checksum(body: str) -> str:
    return _to_base62(zlib.crc32(body.encode("ascii")).to_bytes(4, "big"), CHECKSUM_CHARS)


def _to_base62(data: bytes, width: int) -> str:
    """Encode ``data`` as a big-endian number in exactly ``width`` base62 digits."""
    number = int.from_bytes(data, "big")
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(BASE62_ALPHABET[remainder])
    if number:
        raise ValueError(f"{len(data)} bytes do not fit in {width} base62 digits")
    return "".join(reversed(digits))
