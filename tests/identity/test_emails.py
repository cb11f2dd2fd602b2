"""Email normalisation for uniqueness: NFKC, case folding, IDNA, rejection of invalid forms, and
the skeletons under which look-alike addresses collide."""

import idna
import pytest

from llero.identity.emails import (
    MAX_ADDRESS_OCTETS,
    EmailRejected,
    EmailRule,
    EmailSkeletons,
    email_skeletons,
    normalize_email,
)

CYRILLIC_SMALL_A = "\u0430"


def _full_width(text: str) -> str:
    return "".join(
        chr(ord(character) + 0xFEE0) if "!" <= character <= "~" else character
        for character in text
    )


@pytest.mark.parametrize(
    "address",
    [
        "Admin@Example.com",
        "admin@example.com",
        "ADMIN@EXAMPLE.COM",
        "aDmIn@eXaMpLe.CoM",
        _full_width("ADMIN@EXAMPLE.COM"),
        # The ideographic full stop is a dot in IDNA.
        "admin@example\u3002com",
    ],
    ids=["title", "lower", "upper", "mixed", "full-width", "ideographic-dot"],
)
def test_case_and_width_variants_normalize_to_same_address(address: str) -> None:
    assert normalize_email(address) == "admin@example.com"


@pytest.mark.parametrize(
    "address",
    [
        f"{CYRILLIC_SMALL_A}dmin@example.com",
        f"Admin@ex{CYRILLIC_SMALL_A}mple.com",
        "p\u03b1ypal@example.com",
        f"{CYRILLIC_SMALL_A}\u03b2c@example.com",
        "admin@" + idna.encode(f"ex{CYRILLIC_SMALL_A}mple").decode() + ".com",
    ],
    ids=[
        "cyrillic-in-local-part",
        "cyrillic-in-domain",
        "greek-in-latin",
        "cyrillic-and-greek",
        "cyrillic-in-a-label",
    ],
)
def test_mixed_script_lookalike_is_rejected(address: str) -> None:
    with pytest.raises(EmailRejected) as raised:
        normalize_email(address)

    assert raised.value.rule is EmailRule.MIXED_SCRIPTS
    assert "mixes letters of different scripts" in raised.value.message


@pytest.mark.parametrize(
    "address",
    [
        "adm\u0131\u0307n@example.com",
        "ad\u0301min@example.com",
        "\u0301admin@example.com",
        "admin@ex\u0131\u0307ample.com",
    ],
    ids=["dotless-i-with-dot", "acute-on-d", "leading-mark", "mark-in-domain"],
)
def test_separate_combining_mark_is_rejected(address: str) -> None:
    with pytest.raises(EmailRejected) as raised:
        normalize_email(address)

    assert raised.value.rule is EmailRule.COMBINING_MARK
    assert "separate accent or mark" in raised.value.message


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("jose\u0301@example.com", "jos\u00e9@example.com"),
        ("\u0930\u093e\u092e@example.com", "\u0930\u093e\u092e@example.com"),
    ],
    ids=["latin-accent-composes", "devanagari-vowel-sign"],
)
def test_composing_or_script_mark_is_accepted(address: str, expected: str) -> None:
    assert normalize_email(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "\u043f\u0440\u0438\u043c\u0435\u0440@example.com",
        "\u7530\u4e2d\u305f\u308d\u3046tanaka@example.jp",
        "kim\ud0dc\ud604@example.kr",
        "user@\u043f\u0440\u0438\u043c\u0435\u0440.com",
        "\u00e9lise2024@example.com",
    ],
    ids=["all-cyrillic", "japanese-and-latin", "korean-and-latin", "cyrillic-domain", "accents"],
)
def test_single_script_address_is_accepted(address: str) -> None:
    assert "@" in normalize_email(address)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("user@B\u00fccher.de", "user@xn--bcher-kva.de"),
        ("user@B\u00dcCHER.DE", "user@xn--bcher-kva.de"),
        ("user@xn--bcher-kva.de", "user@xn--bcher-kva.de"),
        ("user@XN--BCHER-KVA.DE", "user@xn--bcher-kva.de"),
    ],
    ids=["unicode", "unicode-upper", "a-label", "a-label-upper"],
)
def test_unicode_domain_is_stored_as_idna_a_labels(address: str, expected: str) -> None:
    assert normalize_email(address) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("Stra\u00dfe@example.com", "strasse@example.com"),
        ("STRASSE@example.com", "strasse@example.com"),
        ("\u0391\u039b\u0395\u039e@example.com", "\u03b1\u03bb\u03b5\u03be@example.com"),
        ("e\u0301lise@example.com", "\u00e9lise@example.com"),
        ("\u00c9LISE@example.com", "\u00e9lise@example.com"),
    ],
    ids=["sharp-s", "double-s", "greek-upper", "decomposed", "composed-upper"],
)
def test_local_part_is_nfkc_case_folded(address: str, expected: str) -> None:
    assert normalize_email(address) == expected


@pytest.mark.parametrize(
    "address",
    ["first.last+tag@sub.example.co.uk", "o'brien@example.ie", "a!#$%&'*+-/=?^_`{|}~z@example.com"],
)
def test_valid_address_keeps_its_characters(address: str) -> None:
    assert normalize_email(address) == address


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("", EmailRule.INVALID_FORMAT),
        ("admin", EmailRule.INVALID_FORMAT),
        ("@example.com", EmailRule.INVALID_FORMAT),
        ("admin@", EmailRule.INVALID_FORMAT),
        ("ad@min@example.com", EmailRule.INVALID_FORMAT),
        ("admin@@example.com", EmailRule.INVALID_FORMAT),
        (".admin@example.com", EmailRule.INVALID_LOCAL_PART),
        ("admin.@example.com", EmailRule.INVALID_LOCAL_PART),
        ("ad..min@example.com", EmailRule.INVALID_LOCAL_PART),
        ('"admin"@example.com', EmailRule.INVALID_LOCAL_PART),
        ("ad min@example.com", EmailRule.INVALID_LOCAL_PART),
        ("admin\n@example.com", EmailRule.INVALID_LOCAL_PART),
        ("ad\u200bmin@example.com", EmailRule.INVALID_LOCAL_PART),
        ("ad\u200dmin@example.com", EmailRule.INVALID_LOCAL_PART),
        ("admin\u202e@example.com", EmailRule.INVALID_LOCAL_PART),
        ("ad\ud800min@example.com", EmailRule.INVALID_LOCAL_PART),
        ("ad\u0378min@example.com", EmailRule.INVALID_LOCAL_PART),
        ("\U0001f600@example.com", EmailRule.INVALID_LOCAL_PART),
        ("ad(comment)min@example.com", EmailRule.INVALID_LOCAL_PART),
        ("admin@localhost", EmailRule.INVALID_DOMAIN),
        ("admin@example.com.", EmailRule.INVALID_DOMAIN),
        ("admin@example\u3002com\u3002", EmailRule.INVALID_DOMAIN),
        ("admin@[127.0.0.1]", EmailRule.INVALID_DOMAIN),
        ("admin@127.0.0.1", EmailRule.INVALID_DOMAIN),
        ("admin@exa mple.com", EmailRule.INVALID_DOMAIN),
        ("admin@exam_ple.com", EmailRule.INVALID_DOMAIN),
        ("admin@-example.com", EmailRule.INVALID_DOMAIN),
        ("admin@example..com", EmailRule.INVALID_DOMAIN),
        ("admin@example.com\n", EmailRule.INVALID_DOMAIN),
        ("admin@ex\u200dample.com", EmailRule.INVALID_DOMAIN),
        ("admin@ex\ud800ample.com", EmailRule.INVALID_DOMAIN),
        ("admin@" + "a" * 64 + ".com", EmailRule.INVALID_DOMAIN),
        ("a" * 65 + "@example.com", EmailRule.TOO_LONG),
        ("\u00e9" * 33 + "@example.com", EmailRule.TOO_LONG),
        ("admin@" + ".".join(["a" * 60] * 5) + ".com", EmailRule.INVALID_DOMAIN),
        ("a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com", EmailRule.TOO_LONG),
        ("a" * 100_000, EmailRule.TOO_LONG),
    ],
    ids=lambda value: value.value if isinstance(value, EmailRule) else None,
)
def test_invalid_address_is_rejected_with_rule(address: str, rule: EmailRule) -> None:
    with pytest.raises(EmailRejected) as raised:
        normalize_email(address)

    error = raised.value
    assert error.rule is rule
    assert error.code == "invalid_request"
    assert [violation.field for violation in error.details] == ["email"]


def test_rejection_message_does_not_repeat_address() -> None:
    with pytest.raises(EmailRejected) as raised:
        normalize_email("secret.person@localhost")
    assert "secret.person" not in raised.value.message


def test_local_part_of_64_octets_is_accepted() -> None:
    assert normalize_email("a" * 64 + "@example.com") == "a" * 64 + "@example.com"


def test_address_of_254_octets_is_accepted() -> None:
    domain = ".".join(["b" * 60] * 4) + ".co"
    address = "a" * (MAX_ADDRESS_OCTETS - len(domain) - 1) + "@" + domain
    assert len(address) == MAX_ADDRESS_OCTETS

    assert normalize_email(address) == address


def _skeletons(address: str) -> EmailSkeletons:
    return email_skeletons(normalize_email(address))


@pytest.mark.parametrize(
    ("lookalike", "original"),
    [
        # Every letter of the local part Cyrillic.
        ("\u0430\u0441\u0441\u0435\u0455\u0455@example.com", "access@example.com"),
        # Every letter of the first domain label Cyrillic, as typed and as an A-label.
        ("jose@\u0455\u0441\u043e\u0440\u0435.com", "jose@scope.com"),
        (
            "jose@" + idna.encode("\u0455\u0441\u043e\u0440\u0435").decode() + ".com",
            "jose@scope.com",
        ),
        # An invisible variation selector after the local part.
        ("admin\ufe0f@example.com", "Admin@Example.com"),
        ("rnodern@example.com", "modern@example.com"),
    ],
    ids=["cyrillic-local-part", "cyrillic-label", "cyrillic-a-label", "variation-selector", "rn-m"],
)
def test_lower_case_lookalike_shares_skeleton(lookalike: str, original: str) -> None:
    assert normalize_email(lookalike) != normalize_email(original)
    assert _skeletons(lookalike).lower == _skeletons(original).lower


@pytest.mark.parametrize(
    ("lookalike", "original"),
    [
        # Cyrillic capitals, whose lower-case forms do not look like "kot".
        ("\u041a\u041e\u0422@example.com", "kot@example.com"),
        # Greek capitals.
        ("\u039a\u0391\u03a1\u0391@example.com", "Kapa@example.com"),
        ("j0hn@example.com", "JOHN@example.com"),
    ],
    ids=["cyrillic-capitals", "greek-capitals", "zero-for-o"],
)
def test_upper_case_lookalike_shares_upper_skeleton(lookalike: str, original: str) -> None:
    assert _skeletons(lookalike).lower != _skeletons(original).lower
    assert _skeletons(lookalike).upper == _skeletons(original).upper


@pytest.mark.parametrize(
    ("address", "other"),
    [
        ("\u0438\u0432\u0430\u043d@example.com", "ivan@example.com"),
        (
            "\u043d\u0430\u0442\u0430\u043b\u044c\u044f@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
            "natalya@example.com",
        ),
        ("mall@example.com", "mail@example.com"),
        ("lena@example.com", "iena@example.com"),
    ],
    ids=["cyrillic-ivan", "cyrillic-natalya", "mall-mail", "l-i"],
)
def test_different_looking_addresses_keep_different_skeletons(address: str, other: str) -> None:
    first, second = _skeletons(address), _skeletons(other)

    assert first.lower != second.lower
    assert first.upper != second.upper
