"""TOTP enrollment and verification with replay refusal, and single-use recovery codes."""

import base64
import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree

import pyotp
import pytest

from llero.crypto import Secret
from llero.identity.mfa import (
    RECOVERY_CODE_ALPHABET,
    TotpEnrollment,
    enroll_totp,
    find_recovery_code,
    generate_recovery_codes,
    hash_recovery_code,
    new_totp_seed,
    totp_step,
    verify_totp,
)

# RFC 6238 appendix B: the ASCII key "12345678901234567890" for HMAC-SHA-1.
RFC_SEED = Secret(base64.b32encode(b"12345678901234567890").decode("ascii"))

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


def _code_at(seed: Secret[str], moment: datetime) -> str:
    """Compute the code with pyotp directly, independently of the code under test."""
    return pyotp.TOTP(seed.reveal()).at(moment)


@pytest.fixture
def seed() -> Secret[str]:
    # Fixed, so that the preconditions below (two steps give different codes) hold every run.
    return Secret("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")


def test_totp_seed_has_160_random_bits() -> None:
    seeds = {new_totp_seed().reveal() for _ in range(20)}

    assert len(seeds) == 20
    assert all(len(base64.b32decode(value)) == 20 for value in seeds)


def test_totp_seed_is_masked(seed: Secret[str]) -> None:
    value = seed.reveal()
    for shown in (repr(seed), str(seed), f"{seed}", f"{seed!r}"):
        assert value not in shown


def test_enrollment_is_masked(seed: Secret[str]) -> None:
    enrollment = enroll_totp("alice@example.com", seed=seed)
    for shown in (repr(enrollment), str(enrollment), f"{enrollment}"):
        assert seed.reveal() not in shown
        assert seed.reveal()[:4] not in shown


def test_enrollment_uri_follows_key_uri_format(seed: Secret[str]) -> None:
    enrollment = enroll_totp("alice@example.com", seed=seed)
    uri = urlsplit(enrollment.provisioning_uri.reveal())
    query = parse_qs(uri.query)

    assert uri.scheme == "otpauth"
    assert uri.netloc == "totp"
    assert unquote(uri.path) == "/Llero:alice@example.com"
    assert query["secret"] == [seed.reveal()]
    assert query["issuer"] == ["Llero"]


def test_enrollment_uri_parameters_are_the_defaults_apps_assume(seed: Secret[str]) -> None:
    parsed = pyotp.parse_uri(enroll_totp("alice@example.com", seed=seed).provisioning_uri.reveal())

    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.digits == 6
    assert parsed.interval == 30
    assert parsed.digest().name == "sha1"


def test_enrollment_issuer_can_be_set(seed: Secret[str]) -> None:
    enrollment = enroll_totp("alice@example.com", issuer="Llero at Example", seed=seed)
    assert "issuer=Llero%20at%20Example" in enrollment.provisioning_uri.reveal()


def test_enrollment_creates_new_seed_each_time() -> None:
    first = enroll_totp("alice@example.com")
    second = enroll_totp("alice@example.com")
    assert first.seed.reveal() != second.seed.reveal()


def test_manual_key_is_seed_in_fours(seed: Secret[str]) -> None:
    manual_key = enroll_totp("alice@example.com", seed=seed).manual_key.reveal()

    assert manual_key.replace(" ", "") == seed.reveal()
    assert all(len(group) == 4 for group in manual_key.split(" "))


def test_enrollment_qr_code_is_standalone_svg(seed: Secret[str]) -> None:
    svg = enroll_totp("alice@example.com", seed=seed).qr_svg.reveal()
    root = ElementTree.fromstring(svg)  # noqa: S314 - parses this module's own output

    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.find("{http://www.w3.org/2000/svg}path") is not None
    assert int(root.attrib["width"]) >= 100


@pytest.mark.parametrize(
    ("unix_time", "expected_code"),
    [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"), (1234567890, "005924"),
     (2000000000, "279037")],
)
def test_rfc_6238_vectors_are_accepted(unix_time: int, expected_code: str) -> None:
    # Appendix B lists 8-digit codes; a 6-digit code is the last 6 digits of the same value.
    moment = datetime.fromtimestamp(unix_time, tz=UTC)
    assert verify_totp(RFC_SEED, expected_code, None, moment) == unix_time // 30


def test_current_code_is_accepted_and_returns_its_step(seed: Secret[str]) -> None:
    step = verify_totp(seed, _code_at(seed, NOW), None, NOW)

    assert step == int(NOW.timestamp()) // 30
    assert step == totp_step(NOW)


@pytest.mark.parametrize("drift_steps", [-1, 1])
def test_code_one_step_off_is_accepted(seed: Secret[str], drift_steps: int) -> None:
    code = _code_at(seed, NOW + timedelta(seconds=30 * drift_steps))
    assert verify_totp(seed, code, None, NOW) == totp_step(NOW) + drift_steps


@pytest.mark.parametrize("drift_steps", [-2, 2, -3, 10])
def test_code_two_or_more_steps_off_is_rejected(seed: Secret[str], drift_steps: int) -> None:
    code = _code_at(seed, NOW + timedelta(seconds=30 * drift_steps))
    # The code must differ from the three accepted ones, or this test would prove nothing.
    accepted = {_code_at(seed, NOW + timedelta(seconds=30 * offset)) for offset in (-1, 0, 1)}
    assert code not in accepted

    assert verify_totp(seed, code, None, NOW) is None


def test_replayed_code_is_rejected(seed: Secret[str]) -> None:
    code = _code_at(seed, NOW)
    step = verify_totp(seed, code, None, NOW)
    assert step is not None

    assert verify_totp(seed, code, step, NOW) is None
    assert verify_totp(seed, code, step, NOW + timedelta(seconds=25)) is None


def test_earlier_step_after_use_is_rejected(seed: Secret[str]) -> None:
    later_step = verify_totp(seed, _code_at(seed, NOW), None, NOW)
    assert later_step is not None

    earlier_code = _code_at(seed, NOW - timedelta(seconds=30))
    assert verify_totp(seed, earlier_code, later_step, NOW) is None


def test_code_of_next_step_is_accepted_after_use(seed: Secret[str]) -> None:
    used_step = verify_totp(seed, _code_at(seed, NOW), None, NOW)
    assert used_step is not None

    next_moment = NOW + timedelta(seconds=30)
    assert verify_totp(seed, _code_at(seed, next_moment), used_step, next_moment) == used_step + 1


def test_code_for_other_seed_is_rejected(seed: Secret[str]) -> None:
    code = _code_at(RFC_SEED, NOW)
    assert code not in {_code_at(seed, NOW + timedelta(seconds=30 * s)) for s in (-1, 0, 1)}

    assert verify_totp(seed, code, None, NOW) is None


@pytest.mark.parametrize(
    "code",
    ["", "12345", "1234567", "12345a", " 123456", "123456 ", "123 456", "-12345",
     "\u0661\u0662\u0663\u0664\u0665\u0666", "\uff11\uff12\uff13\uff14\uff15\uff16"],
    ids=["empty", "five", "seven", "letter", "leading-space", "trailing-space", "inner-space",
         "negative", "arabic-indic-digits", "full-width-digits"],
)
def test_malformed_code_is_rejected(code: str) -> None:
    assert verify_totp(RFC_SEED, code, None, datetime.fromtimestamp(59, tz=UTC)) is None


def test_naive_time_raises(seed: Secret[str]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_totp(seed, "123456", None, datetime(2026, 3, 14, 15, 9, 26))


def test_ten_distinct_recovery_codes_are_generated() -> None:
    codes = [code.reveal() for code in generate_recovery_codes()]

    assert len(codes) == 10
    assert len(set(codes)) == 10


def test_recovery_code_has_at_least_112_bits() -> None:
    for code in generate_recovery_codes():
        characters = code.reveal().replace("-", "")
        assert set(characters) <= set(RECOVERY_CODE_ALPHABET)
        assert len(characters) * math.log2(len(RECOVERY_CODE_ALPHABET)) >= 112


def test_recovery_codes_are_masked() -> None:
    code = generate_recovery_codes(1)[0]
    assert code.reveal() not in repr(code)
    assert code.reveal() not in f"{code}"


def test_recovery_code_hash_is_sha256_of_canonical_form() -> None:
    code = generate_recovery_codes(1)[0]
    canonical = code.reveal().replace("-", "")

    assert hash_recovery_code(code) == hashlib.sha256(canonical.encode()).hexdigest()
    assert hash_recovery_code(code.reveal()) == hash_recovery_code(code)


@pytest.mark.parametrize("code", ["", "not a code", "0" * 25, "0" * 27, "u" * 26])
def test_hash_of_malformed_recovery_code_raises(code: str) -> None:
    with pytest.raises(ValueError, match="not a recovery code"):
        hash_recovery_code(code)


@pytest.fixture
def recovery_codes() -> tuple[list[str], list[str]]:
    codes = [code.reveal() for code in generate_recovery_codes()]
    return codes, [hash_recovery_code(code) for code in codes]


def test_recovery_code_is_found_by_its_index(recovery_codes: tuple[list[str], list[str]]) -> None:
    codes, hashes = recovery_codes
    for index, code in enumerate(codes):
        assert find_recovery_code(code, hashes) == index


def test_used_recovery_code_is_rejected(recovery_codes: tuple[list[str], list[str]]) -> None:
    codes, hashes = recovery_codes
    index = find_recovery_code(codes[4], hashes)
    assert index is not None

    # Deleting the matched hash is what makes a code single-use.
    del hashes[index]
    assert find_recovery_code(codes[4], hashes) is None
    assert find_recovery_code(codes[5], hashes) == 4


@pytest.mark.parametrize(
    "transform",
    [str.upper, lambda code: code.replace("-", ""), lambda code: code.replace("-", " "),
     lambda code: code.replace("1", "l").replace("0", "O")],
    ids=["upper", "no-dashes", "spaces", "crockford-lookalikes"],
)
def test_recovery_code_typed_differently_is_found(
    recovery_codes: tuple[list[str], list[str]], transform: Callable[[str], str]
) -> None:
    codes, hashes = recovery_codes
    assert find_recovery_code(transform(codes[0]), hashes) == 0


def test_wrong_recovery_code_is_rejected(recovery_codes: tuple[list[str], list[str]]) -> None:
    codes, hashes = recovery_codes
    first = codes[0]
    changed = ("1" if first[0] != "1" else "2") + first[1:]
    other = generate_recovery_codes(1)[0].reveal()

    for attempt in (changed, other, first[:-1], first + "0", "", "-" * 30, "\u0430" * 26):
        assert find_recovery_code(attempt, hashes) is None


def test_recovery_code_is_not_found_in_empty_list() -> None:
    assert find_recovery_code(generate_recovery_codes(1)[0].reveal(), []) is None


def test_enrollment_type_is_frozen(seed: Secret[str]) -> None:
    enrollment = enroll_totp("alice@example.com", seed=seed)
    assert isinstance(enrollment, TotpEnrollment)
    with pytest.raises(AttributeError):
        enrollment.seed = new_totp_seed()  # type: ignore[misc]
