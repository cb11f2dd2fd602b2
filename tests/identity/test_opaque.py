"""Opaque tokens: their scanner-friendly shape, checksums, and rejection before any lookup."""

import hashlib
import re
from collections.abc import Callable

import pytest

from llero.identity.opaque import (
    BASE62_ALPHABET,
    IssuedOpaqueToken,
    OpaqueKind,
    issue_email_link_token,
    issue_opaque_token,
    issue_personal_api_token,
    issue_refresh_token,
    parse_email_link_token,
    parse_opaque_token,
    parse_personal_api_token,
    parse_refresh_token,
)
from llero.identity.tokens import InvalidToken, TokenRejection

# Issued once by issue_personal_api_token; the format must keep accepting it, because secret
# scanners and tokens already handed out depend on it.
KNOWN_API_TOKEN = "llero_pat_203qA48OD7cdo1x1lA6wNzj2ij7b4ZZvuZ6pHQU6Ht34UR6Rt"

SHAPES = {
    OpaqueKind.REFRESH: re.compile(r"llero_rt_[0-9A-Za-z]{49}"),
    OpaqueKind.PERSONAL_API: re.compile(r"llero_pat_[0-9A-Za-z]{49}"),
    OpaqueKind.EMAIL_LINK: re.compile(r"llero_el_[0-9A-Za-z]{49}"),
}

ISSUERS: dict[OpaqueKind, Callable[[], IssuedOpaqueToken]] = {
    OpaqueKind.REFRESH: issue_refresh_token,
    OpaqueKind.PERSONAL_API: issue_personal_api_token,
    OpaqueKind.EMAIL_LINK: issue_email_link_token,
}

PARSERS: dict[OpaqueKind, Callable[[str], str]] = {
    OpaqueKind.REFRESH: parse_refresh_token,
    OpaqueKind.PERSONAL_API: parse_personal_api_token,
    OpaqueKind.EMAIL_LINK: parse_email_link_token,
}


def reason_of(kind: OpaqueKind, text: object) -> TokenRejection:
    with pytest.raises(InvalidToken) as caught:
        parse_opaque_token(text, kind)
    return caught.value.reason


def replace_at(text: str, index: int) -> str:
    """Return ``text`` with the character at ``index`` changed to the next base62 digit."""
    changed = BASE62_ALPHABET[(BASE62_ALPHABET.index(text[index]) + 1) % 62]
    return text[:index] + changed + text[index + 1 :]


@pytest.mark.parametrize("kind", list(OpaqueKind))
def test_issued_token_has_prefix_and_base62_body(kind: OpaqueKind) -> None:
    issued = ISSUERS[kind]()

    assert issued.kind == kind
    assert SHAPES[kind].fullmatch(issued.token.reveal())


@pytest.mark.parametrize("kind", list(OpaqueKind))
def test_issued_token_hash_is_sha256_of_token(kind: OpaqueKind) -> None:
    issued = ISSUERS[kind]()

    expected = hashlib.sha256(issued.token.reveal().encode()).hexdigest()
    assert issued.token_hash == expected


@pytest.mark.parametrize("kind", list(OpaqueKind))
def test_issued_token_parses_to_its_hash(kind: OpaqueKind) -> None:
    issued = ISSUERS[kind]()

    assert PARSERS[kind](issued.token.reveal()) == issued.token_hash


@pytest.mark.parametrize("kind", list(OpaqueKind))
def test_issued_tokens_differ(kind: OpaqueKind) -> None:
    tokens = {issue_opaque_token(kind).token.reveal() for _ in range(1000)}

    assert len(tokens) == 1000


def test_issued_token_repr_hides_token() -> None:
    issued = issue_personal_api_token()

    assert issued.token.reveal() not in repr(issued)
    assert issued.token.reveal()[10:30] not in repr(issued)


def test_known_api_token_accepted() -> None:
    expected = hashlib.sha256(KNOWN_API_TOKEN.encode()).hexdigest()

    assert parse_personal_api_token(KNOWN_API_TOKEN) == expected


@pytest.mark.parametrize("index", range(len("llero_pat_"), len(KNOWN_API_TOKEN)))
def test_api_token_with_one_changed_character_rejected(index: int) -> None:
    altered = replace_at(KNOWN_API_TOKEN, index)

    assert reason_of(OpaqueKind.PERSONAL_API, altered) == TokenRejection.BAD_CHECKSUM


@pytest.mark.parametrize("kind", list(OpaqueKind))
def test_issued_token_with_one_changed_character_rejected(kind: OpaqueKind) -> None:
    token = ISSUERS[kind]().token.reveal()
    prefix_length = len(token) - 49

    for index in range(prefix_length, len(token)):
        assert reason_of(kind, replace_at(token, index)) == TokenRejection.BAD_CHECKSUM


def test_api_token_with_swapped_characters_rejected() -> None:
    index = 20
    body = list(KNOWN_API_TOKEN)
    body[index], body[index + 1] = body[index + 1], body[index]
    swapped = "".join(body)

    assert swapped != KNOWN_API_TOKEN
    assert reason_of(OpaqueKind.PERSONAL_API, swapped) == TokenRejection.BAD_CHECKSUM


@pytest.mark.parametrize(
    ("presented", "expected"),
    [
        (OpaqueKind.REFRESH, OpaqueKind.PERSONAL_API),
        (OpaqueKind.REFRESH, OpaqueKind.EMAIL_LINK),
        (OpaqueKind.PERSONAL_API, OpaqueKind.REFRESH),
        (OpaqueKind.PERSONAL_API, OpaqueKind.EMAIL_LINK),
        (OpaqueKind.EMAIL_LINK, OpaqueKind.REFRESH),
        (OpaqueKind.EMAIL_LINK, OpaqueKind.PERSONAL_API),
    ],
)
def test_token_of_other_kind_rejected(presented: OpaqueKind, expected: OpaqueKind) -> None:
    token = issue_opaque_token(presented).token.reveal()

    assert reason_of(expected, token) == TokenRejection.WRONG_TYPE


def test_api_token_with_refresh_prefix_swapped_in_rejected() -> None:
    forged = "llero_rt_" + KNOWN_API_TOKEN.removeprefix("llero_pat_")

    assert reason_of(OpaqueKind.REFRESH, forged) == TokenRejection.BAD_CHECKSUM


@pytest.mark.parametrize(
    "text",
    [
        "",
        "llero_pat_",
        KNOWN_API_TOKEN[:-1],
        KNOWN_API_TOKEN + "0",
        KNOWN_API_TOKEN.upper(),
        KNOWN_API_TOKEN[:20] + "-" + KNOWN_API_TOKEN[21:],
        KNOWN_API_TOKEN[:20] + "_" + KNOWN_API_TOKEN[21:],
        KNOWN_API_TOKEN[:20] + "\u0661" + KNOWN_API_TOKEN[21:],
        KNOWN_API_TOKEN[:20] + "\x00" + KNOWN_API_TOKEN[21:],
        " " + KNOWN_API_TOKEN,
        KNOWN_API_TOKEN + "\n",
        "ghp_" + KNOWN_API_TOKEN[10:],
        "Bearer " + KNOWN_API_TOKEN,
        "llero_pat_" + "0" * 10_000_000,
    ],
)
def test_malformed_api_token_rejected(text: str) -> None:
    assert reason_of(OpaqueKind.PERSONAL_API, text) == TokenRejection.MALFORMED


@pytest.mark.parametrize("value", [None, 42, b"llero_pat_abc", ["llero_pat_"]])
def test_non_string_token_rejected(value: object) -> None:
    assert reason_of(OpaqueKind.PERSONAL_API, value) == TokenRejection.MALFORMED
