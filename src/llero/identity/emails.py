"""Email address normalisation, so that one mailbox can hold only one account.

``normalize_email`` returns the form to store under a unique index: the local part in NFKC with
Unicode case folding, and the domain as lower-case IDNA A-labels. Folding the local part's case
goes beyond RFC 5321, which lets a server tell ``Alice`` from ``alice``. No common mail provider
does so, and folding can only merge two addresses into one key, never let one mailbox claim two
accounts. Keep the address as the user typed it for sending mail.

``email_skeletons`` returns the forms under which two addresses that look alike collide, so that
a second account cannot take an address that reads like an existing one. ``normalize_email``
already rejects a local part or domain label that mixes scripts. The skeletons also catch a
look-alike written wholly in another script, such as "access" spelt in Cyrillic letters.

Quoted local parts (``"john doe"@example.com``), comments and IP-literal domains are rejected.
They are valid in RFC 5322 but rare in practice, and each makes it harder to decide when two
strings name the same mailbox.
"""

import unicodedata
from dataclasses import dataclass
from enum import StrEnum

import idna

from llero.errors import Conflict, InvalidInput, Violation
from llero.identity.confusables import skeleton

# RFC 5321 limits a local part to 64 octets and a forward path to 256 octets including its two
# angle brackets, which leaves 254 for the address.
MAX_LOCAL_PART_OCTETS = 64
MAX_ADDRESS_OCTETS = 254

# NFKC can expand a code point into at most 18 (U+FDFA), so a longer input can never fit.
_MAX_INPUT_CHARACTERS = MAX_ADDRESS_OCTETS * 18

# Characters RFC 5322 allows in a dot-atom besides letters and digits ("atext").
_ATEXT_SYMBOLS = frozenset("!#$%&'*+-/=?^_`{|}~")

# RFC 6531 allows any UTF-8 in a local part. Llero accepts letters, combining marks and digits of
# every script. It rejects symbols, spaces, format characters (such as zero-width joiners) and
# unassigned code points, because they let two different addresses look the same.
_NON_ASCII_CATEGORIES = frozenset(
    {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No"}
)

# Scripts that one local part or domain label may mix: Latin with the scripts that Japanese,
# Chinese or Korean writing combines. These are the combinations of Unicode TR39's "highly
# restrictive" level. Any other mix, such as a Cyrillic a (U+0430) among Latin letters, is
# rejected, because it is the usual way to spoof another address.
_ALLOWED_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)


class EmailRule(StrEnum):
    """The rule that a rejected address broke; stable, for clients to branch on."""

    INVALID_FORMAT = "invalid_format"
    TOO_LONG = "too_long"
    INVALID_LOCAL_PART = "invalid_local_part"
    INVALID_DOMAIN = "invalid_domain"
    MIXED_SCRIPTS = "mixed_scripts"
    COMBINING_MARK = "combining_mark"


@dataclass(frozen=True)
class EmailRejection:
    """The reason an address was rejected; ``message`` never repeats the address."""

    rule: EmailRule
    message: str


class EmailRejected(InvalidInput):
    """An email address is invalid; ``rule`` names the rule it broke."""

    def __init__(self, rejection: EmailRejection) -> None:
        super().__init__(rejection.message, details=[Violation("email", rejection.message)])
        self.rule = rejection.rule


class EmailLookalikeTaken(Conflict):
    """Another user's address has the same skeleton, so the two would read as one address."""

    def __init__(self) -> None:
        message = "email address looks like the address of another user; use another address"
        super().__init__(message, details=[Violation("email", message)])


@dataclass(frozen=True)
class EmailSkeletons:
    """The UTS #39 skeletons of a normalised address in lower and in upper case.

    Addresses match without regard to case, so a look-alike may imitate either form. The
    Cyrillic letters U+0430 U+0441 U+0441 U+0435 U+0455 U+0455 imitate "access" in lower case.
    The Cyrillic capitals U+041A U+041E U+0422 imitate "KOT", but in lower case they do not
    look like "kot". Comparing one case-folded skeleton instead would join letters that look
    alike in neither case, such as "L" and "I".
    """

    lower: str
    upper: str


def normalize_email(address: str) -> str:
    """Return the normalised form of ``address`` for uniqueness checks, or raise EmailRejected."""
    if len(address) > _MAX_INPUT_CHARACTERS:
        raise _too_long()

    local_part, at_sign, domain = unicodedata.normalize("NFKC", address).rpartition("@")
    if not at_sign or not local_part or not domain or "@" in local_part:
        raise _rejected(
            EmailRule.INVALID_FORMAT,
            "email address must be a local part and a domain joined by exactly one '@'",
        )

    _check_single_script(local_part, "local part")
    _check_combining_marks(local_part, "local part")
    for label in domain.split("."):
        _check_single_script(_unicode_label(label), "domain")
        _check_combining_marks(_unicode_label(label), "domain")
    normalized = f"{_normalize_local_part(local_part)}@{_normalize_domain(domain)}"
    if len(normalized.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise _too_long()
    return normalized


def email_skeletons(normalized: str) -> EmailSkeletons:
    """Return the skeletons of an address that ``normalize_email`` returned.

    The domain's skeletons are taken of its Unicode form, because the A-label of a look-alike
    ("xn--...") does not resemble the name it imitates.
    """
    local_part, _, domain = normalized.rpartition("@")
    unicode_domain = ".".join(_unicode_label(label) for label in domain.split("."))
    lower = f"{local_part}@{unicode_domain}"
    return EmailSkeletons(lower=skeleton(lower), upper=skeleton(lower.upper()))


def _normalize_local_part(local_part: str) -> str:
    # Case folding can leave a string that NFKC changes again (the folded "ΐ" is decomposed), so
    # the result is normalised once more, as Unicode's NFKC_Casefold does.
    folded = unicodedata.normalize("NFKC", local_part.casefold())

    if len(folded.encode("utf-8", errors="surrogatepass")) > MAX_LOCAL_PART_OCTETS:
        raise _rejected(
            EmailRule.TOO_LONG,
            f"local part of the email address is longer than {MAX_LOCAL_PART_OCTETS} bytes",
        )
    if folded.startswith(".") or folded.endswith(".") or ".." in folded:
        raise _rejected(
            EmailRule.INVALID_LOCAL_PART,
            "local part of the email address must not start or end with a dot or contain two "
            "dots in a row",
        )
    if not all(_is_local_part_character(character) for character in folded):
        raise _rejected(
            EmailRule.INVALID_LOCAL_PART,
            "local part of the email address contains a character that is not allowed; use "
            "letters, digits, dots and !#$%&'*+-/=?^_`{|}~",
        )
    return folded


def _is_local_part_character(character: str) -> bool:
    if character.isascii():
        return character.isalnum() or character == "." or character in _ATEXT_SYMBOLS
    return unicodedata.category(character) in _NON_ASCII_CATEGORIES


def _normalize_domain(domain: str) -> str:
    try:
        # UTS 46 processing maps case and compatibility forms before IDNA 2008 validates each
        # label, so "BÜCHER.de" and "bücher.de" both give "xn--bcher-kva.de".
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError, and UnicodeEncodeError for a lone surrogate
        raise _rejected(
            EmailRule.INVALID_DOMAIN, "domain of the email address is not a valid domain name"
        ) from None

    # UTS 46 turns the ideographic full stop "。" into a dot, so a trailing dot is only visible
    # here. A fully qualified "example.com." would be a second spelling of "example.com".
    labels = ascii_domain.split(".")
    if len(labels) < 2 or "" in labels or labels[-1].isdigit():
        raise _rejected(
            EmailRule.INVALID_DOMAIN,
            "domain of the email address must be a name of two or more labels, such as "
            "example.com, without a trailing dot and not an IP address",
        )
    return ascii_domain


def _check_single_script(text: str, part: str) -> None:
    scripts = {script for script in map(_script_of, text) if script is not None}
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in _ALLOWED_SCRIPT_MIXES):
        return
    raise _rejected(
        EmailRule.MIXED_SCRIPTS,
        f"{part} of the email address mixes letters of different scripts (such as Latin and "
        "Cyrillic), which can make it look like another address",
    )


def _unicode_label(label: str) -> str:
    """Return an A-label ("xn--...") as the Unicode it encodes, so its scripts can be checked."""
    if not label.lower().startswith("xn--"):
        return label
    try:
        return idna.decode(label)
    except UnicodeError:
        # _normalize_domain rejects it with the usual message.
        return label


def _check_combining_marks(text: str, part: str) -> None:
    """Reject a combining mark left on a Latin, Greek or Cyrillic letter, or on no letter.

    Accented letters of these scripts have precomposed forms, which NFKC produces, so a mark
    that is still separate draws an accent that no such address needs: "adm\u0131\u0307n"
    shows as "admin". Scripts such as Devanagari, whose vowel signs are combining marks, are
    left alone.
    """
    previous: str | None = None
    for character in text:
        if _is_variation_selector(character):
            # Invisible, and removed from the skeleton, so a look-alike is caught there.
            continue
        if unicodedata.category(character) in {"Mn", "Me"} and (
            previous is None or _script_of(previous) in {None, "LATIN", "GREEK", "CYRILLIC"}
        ):
            raise _rejected(
                EmailRule.COMBINING_MARK,
                f"{part} of the email address contains a separate accent or mark, which can "
                "make it look like another address; type the accented letter itself",
            )
        previous = character


def _is_variation_selector(character: str) -> bool:
    point = ord(character)
    return 0xFE00 <= point <= 0xFE0F or 0xE0100 <= point <= 0xE01EF


def _script_of(character: str) -> str | None:
    """Return the script of a letter, or None for digits, marks, symbols and modifier letters.

    NOTE: the first word of the character's Unicode name replaces its Script property,
    which Python's unicodedata lacks. That is right for the letters of the common scripts, and
    a rare letter named otherwise can only make an address be rejected, never pass a mix.
    """
    if unicodedata.category(character) not in {"Lu", "Ll", "Lt", "Lo"}:
        return None
    first_word = unicodedata.name(character, "").split(" ", 1)[0]
    return "HAN" if first_word == "CJK" else first_word


def _too_long() -> EmailRejected:
    return _rejected(EmailRule.TOO_LONG, f"email address is longer than {MAX_ADDRESS_OCTETS} bytes")


def _rejected(rule: EmailRule, message: str) -> EmailRejected:
    return EmailRejected(EmailRejection(rule, message))
