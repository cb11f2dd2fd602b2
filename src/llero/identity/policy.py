"""Rules a new password must meet, after NIST SP 800-63B-4 (Digital Identity Guidelines).

The rules cover characters, length and guessability only. NIST forbids composition rules (a
digit, a symbol, mixed case), because they push users to predictable patterns such as
``Password1!``, so there are none. Length counts Unicode code points of the NFKC form, the same
form that ``passwords`` hashes.
"""

import functools
import itertools
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources

from llero.errors import InvalidInput, SettingsError, Violation

# NIST SP 800-63B-4 requires 15 characters for a password that is the only authentication factor,
# and allows 8 for a password that is always combined with a second factor.
DEFAULT_MINIMUM_LENGTH = 15
MFA_MINIMUM_LENGTH = 8

# NIST says to permit at least 64 characters. 256 code points leave room for passphrases of many
# words and for any password manager's output. The bound keeps the input to normalising and
# hashing at most 1 KiB of UTF-8.
MAXIMUM_LENGTH = 256

PRODUCT_NAME = "llero"

# Shorter words or local parts are too common inside long passwords to reject them for it.
MINIMUM_CONTEXT_WORD_LENGTH = 3

_BLOCKLIST_FILE = "common-passwords.txt"
# Characters people put around a common password to make it longer or "stronger".
_PADDING = string.digits + string.punctuation + " "

# Control characters are not printable and may be cut or altered by forms and terminals. Lone
# surrogates cannot be encoded as UTF-8. Unassigned code points can get a decomposition in a later
# Unicode version, which would change the NFKC form and so the hash input after a Python upgrade;
# NIST calls for normalising "stabilized strings", which excludes them. Private-use code points are
# allowed, because Unicode never assigns them a decomposition.
_REJECTED_CATEGORIES = frozenset({"Cc", "Cs", "Cn"})


class PasswordRule(StrEnum):
    """The rule that a rejected password broke; stable, for clients to branch on."""

    INVALID_CHARACTER = "invalid_character"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    BLOCKLISTED = "blocklisted"
    CONTAINS_EMAIL = "contains_email"
    CONTAINS_CONTEXT_WORD = "contains_context_word"
    REPETITIVE = "repetitive"


@dataclass(frozen=True)
class PasswordRejection:
    """The reason a password was rejected; ``message`` never contains the password."""

    rule: PasswordRule
    message: str


class PasswordRejected(InvalidInput):
    """A new password breaks a rule of the policy; ``rule`` names it."""

    def __init__(self, rejection: PasswordRejection) -> None:
        super().__init__(rejection.message, details=[Violation("password", rejection.message)])
        self.rule = rejection.rule


def check_minimum_length(minimum_length: int, *, mfa_required: bool) -> None:
    """Raise SettingsError unless ``minimum_length`` is allowed for this MFA setting.

    Below 8 is never allowed. Below 15 is allowed only when every account must use a second
    factor, because then the password alone never grants access.
    """
    if minimum_length < MFA_MINIMUM_LENGTH:
        raise SettingsError(
            f"password minimum length {minimum_length} is below {MFA_MINIMUM_LENGTH}; "
            f"set it to at least {MFA_MINIMUM_LENGTH}"
        )
    if minimum_length < DEFAULT_MINIMUM_LENGTH and not mfa_required:
        raise SettingsError(
            f"password minimum length {minimum_length} is below {DEFAULT_MINIMUM_LENGTH}, which "
            "is allowed only when multi-factor authentication is mandatory"
        )
    if minimum_length > MAXIMUM_LENGTH:
        raise SettingsError(
            f"password minimum length {minimum_length} is above the maximum of {MAXIMUM_LENGTH}"
        )


def check_password(
    password: str,
    *,
    email: str | None = None,
    context_words: Iterable[str] = (),
    minimum_length: int = DEFAULT_MINIMUM_LENGTH,
    mfa_required: bool = False,
) -> PasswordRejection | None:
    """Return why ``password`` may not be set, or None when it meets every rule.

    ``email`` is the account's address, whose local part the password must not contain.
    ``context_words`` are further words the password must not contain, such as role names;
    the product name is always one of them. Only the first rule broken is reported, in the
    order of ``PasswordRule``.

    Raises SettingsError for a minimum length that ``check_minimum_length`` rejects, and
    TypeError when ``context_words`` is a single string instead of a collection.
    """
    check_minimum_length(minimum_length, mfa_required=mfa_required)
    # A lone string is an iterable of one-character words, all of them too short to check.
    if isinstance(context_words, str):
        raise TypeError("context_words must be a collection of words, not a single string")

    normalised = unicodedata.normalize("NFKC", password)
    return (
        _check_characters(normalised)
        or _check_length(normalised, minimum_length)
        or _check_guessability(normalised.casefold(), email, context_words)
    )


def require_valid_password(
    password: str,
    *,
    email: str | None = None,
    context_words: Iterable[str] = (),
    minimum_length: int = DEFAULT_MINIMUM_LENGTH,
    mfa_required: bool = False,
) -> None:
    """Raise PasswordRejected when ``check_password`` rejects ``password``."""
    rejection = check_password(
        password,
        email=email,
        context_words=context_words,
        minimum_length=minimum_length,
        mfa_required=mfa_required,
    )
    if rejection is not None:
        raise PasswordRejected(rejection)


@functools.cache
def load_blocklist() -> frozenset[str]:
    """Return the shipped list of common and breached passwords, case-folded; read once.

    data/README.md names the source, and scripts/build_password_blocklist.py rebuilds the file.
    """
    text = resources.files("llero.identity").joinpath("data", _BLOCKLIST_FILE).read_text("utf-8")
    return frozenset(line.casefold() for line in text.splitlines() if line)


def _check_characters(normalised: str) -> PasswordRejection | None:
    for character in normalised:
        if unicodedata.category(character) in _REJECTED_CATEGORIES:
            return PasswordRejection(
                PasswordRule.INVALID_CHARACTER,
                "password contains a control character, a lone surrogate or an unassigned "
                "code point; remove it",
            )
    return None


def _check_length(normalised: str, minimum_length: int) -> PasswordRejection | None:
    if len(normalised) < minimum_length:
        return PasswordRejection(
            PasswordRule.TOO_SHORT,
            f"password is shorter than {minimum_length} characters; use a longer passphrase",
        )
    if len(normalised) > MAXIMUM_LENGTH:
        return PasswordRejection(
            PasswordRule.TOO_LONG, f"password is longer than {MAXIMUM_LENGTH} characters"
        )
    return None


def _check_guessability(
    folded: str, email: str | None, context_words: Iterable[str]
) -> PasswordRejection | None:
    if _built_from_common_password(folded):
        return PasswordRejection(
            PasswordRule.BLOCKLISTED,
            "password is on the list of common and breached passwords, or repeats one with "
            "digits or symbols around it; choose another",
        )
    if _is_run(folded):
        return PasswordRejection(
            PasswordRule.REPETITIVE,
            "password is one character repeated or a run such as 12345 or abcde; choose a "
            "passphrase",
        )
    if any(part in folded for part in _email_parts(email)):
        return PasswordRejection(
            PasswordRule.CONTAINS_EMAIL,
            "password contains the local part of the account's email address; choose another",
        )
    for word in _context_words(context_words):
        if word in folded:
            return PasswordRejection(
                PasswordRule.CONTAINS_CONTEXT_WORD,
                f"password contains the word {word!r}, which is easy to guess here; choose another",
            )
    return None


def _built_from_common_password(folded: str) -> bool:
    """Return whether ``folded`` is a listed password, or one repeated, with only digits and
    symbols before or after it ("passwordpassword123").

    Few listed passwords reach the minimum length, so the ways people stretch a short one count
    as the password itself.
    """
    blocklist = load_blocklist()
    if folded in blocklist:
        return True
    core = folded.strip(_PADDING)
    if not core:
        return False
    for length in range(1, len(core) // 2 + 1):
        if len(core) % length == 0 and core[:length] * (len(core) // length) == core:
            return core[:length] in blocklist
    return core in blocklist


def _is_run(folded: str) -> bool:
    """Return whether every character of ``folded`` repeats the one before or steps by one
    ("aaaa", "abcd", "dcba"), digits wrapping from 9 to 0 ("1234567890123")."""
    steps = set()
    for before, after in itertools.pairwise(folded):
        step = ord(after) - ord(before)
        if before.isdigit() and after.isdigit():
            step = (step + 5) % 10 - 5
        steps.add(step)
    return len(steps) <= 1 and steps <= {-1, 0, 1}


def _email_parts(email: str | None) -> list[str]:
    """Return the folded local part, and its base before a ``+`` tag, of 3 or more characters.

    ``alice+work@example.com`` yields ``alice+work`` and ``alice``, because a password that
    contains ``alice`` is as easy to guess for anyone who has seen the address.
    """
    if not email or "@" not in email:
        return []
    local_part = _fold(email.rpartition("@")[0])
    candidates = {local_part, local_part.partition("+")[0]}
    return [part for part in candidates if len(part) >= MINIMUM_CONTEXT_WORD_LENGTH]


def _context_words(words: Iterable[str]) -> list[str]:
    folded = {_fold(word) for word in (PRODUCT_NAME, *words)}
    return sorted(word for word in folded if len(word) >= MINIMUM_CONTEXT_WORD_LENGTH)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()
