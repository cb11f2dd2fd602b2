"""Password hashing: argon2id parameters, exact verification, legacy bcrypt and rehash signals."""

import asyncio
import os
import unicodedata

import bcrypt
import pytest
from argon2 import PasswordHasher, Type

from llero.errors import InvalidInput
from llero.identity import passwords
from llero.identity.passwords import (
    PasswordHashFormatError,
    hash_password,
    hash_password_async,
    needs_rehash,
    verify_password,
    verify_password_async,
)
from llero.identity.policy import MAXIMUM_LENGTH

PASSWORD = "plum kettle orbit lantern 42"


@pytest.fixture(scope="module")
def argon2_hash() -> str:
    return hash_password(PASSWORD)


def _bcrypt_hash(secret: bytes) -> str:
    # Cost 4 is bcrypt's minimum; the cost does not change what verifies, only how slowly.
    return bcrypt.hashpw(secret, bcrypt.gensalt(rounds=4)).decode("ascii")


def test_hash_password_uses_argon2id_with_configured_parameters(argon2_hash: str) -> None:
    assert argon2_hash.startswith("$argon2id$v=19$m=65536,t=3,p=1$")


def test_hash_password_meets_owasp_minimum() -> None:
    assert passwords.MEMORY_COST_KIB >= 19 * 1024
    assert passwords.TIME_COST >= 2
    assert passwords.PARALLELISM >= 1


def test_hash_password_salts_each_hash() -> None:
    assert hash_password(PASSWORD) != hash_password(PASSWORD)


def test_password_verifies_against_its_argon2id_hash(argon2_hash: str) -> None:
    assert verify_password(PASSWORD, argon2_hash) is True


@pytest.mark.parametrize(
    "attempt",
    [
        PASSWORD.upper(),
        PASSWORD.title(),
        f" {PASSWORD}",
        f"{PASSWORD} ",
        f"{PASSWORD}\n",
        PASSWORD[:-1],
        f"{PASSWORD}x",
        PASSWORD.replace(" ", ""),
        "",
    ],
    ids=["upper", "title", "leading-space", "trailing-space", "newline", "truncated", "extended",
         "no-spaces", "empty"],
)
def test_password_variant_is_rejected_by_argon2id(argon2_hash: str, attempt: str) -> None:
    assert verify_password(attempt, argon2_hash) is False


def test_composed_and_decomposed_password_verify_alike() -> None:
    composed = unicodedata.normalize("NFC", "café crème brûlée à la maison")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed

    assert verify_password(decomposed, hash_password(composed)) is True


def test_compatibility_form_verifies_as_its_nfkc_form() -> None:
    # Full-width letters are what some input methods type for ASCII; NFKC maps them back.
    full_width = "".join(chr(ord(letter) + 0xFEE0) for letter in "plumkettleorbit")
    assert full_width != "plumkettleorbit"

    assert verify_password(full_width, hash_password("plumkettleorbit")) is True


def test_password_longer_than_maximum_is_not_hashed() -> None:
    with pytest.raises(InvalidInput) as raised:
        hash_password("x" * (MAXIMUM_LENGTH + 1))
    assert raised.value.message == f"password is longer than {MAXIMUM_LENGTH} characters"
    assert raised.value.details[0].field == "password"


def test_password_at_maximum_length_is_hashed_and_verified() -> None:
    password = "ab" * (MAXIMUM_LENGTH // 2)
    assert verify_password(password, hash_password(password)) is True


def test_password_with_lone_surrogate_is_not_hashed() -> None:
    with pytest.raises(InvalidInput) as raised:
        hash_password("correct horse \ud800 battery")
    assert "surrogate" in raised.value.message


def test_password_longer_than_maximum_never_verifies(argon2_hash: str) -> None:
    assert verify_password(PASSWORD + " " * MAXIMUM_LENGTH, argon2_hash) is False


def test_bcrypt_hash_verifies_its_password() -> None:
    assert verify_password("legacy password", _bcrypt_hash(b"legacy password")) is True


def test_bcrypt_hash_rejects_other_password() -> None:
    assert verify_password("Legacy password", _bcrypt_hash(b"legacy password")) is False


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_bcrypt_variants_verify(prefix: str) -> None:
    stored = prefix + _bcrypt_hash(b"legacy password")[4:]
    assert verify_password("legacy password", stored) is True


def test_bcrypt_hash_needs_rehash() -> None:
    assert needs_rehash(_bcrypt_hash(b"legacy password")) is True


@pytest.mark.parametrize("length", [73, 100, 200])
def test_bcrypt_hash_of_prefix_rejects_long_password(length: int) -> None:
    password = ("abcdefghij" * 20)[:length]
    stored = _bcrypt_hash(password[:72].encode())

    assert verify_password(password, stored) is False


def test_password_of_72_bytes_verifies_against_bcrypt() -> None:
    password = ("abcdefghij" * 8)[:72]
    assert verify_password(password, _bcrypt_hash(password.encode())) is True


def test_bcrypt_rejects_multibyte_password_over_72_bytes() -> None:
    # 37 code points but 74 bytes of UTF-8: the byte count is what bcrypt truncates.
    password = "é" * 37
    encoded = password.encode()
    assert len(password) < 72 < len(encoded)

    assert verify_password(password, _bcrypt_hash(encoded[:72])) is False


def test_current_argon2id_hash_needs_no_rehash(argon2_hash: str) -> None:
    assert needs_rehash(argon2_hash) is False


@pytest.mark.parametrize(
    ("time_cost", "memory_cost", "parallelism"),
    [(2, 19 * 1024, 1), (3, 64 * 1024, 4), (1, 64 * 1024, 1)],
    ids=["owasp-minimum", "more-lanes", "fewer-passes"],
)
def test_argon2id_hash_with_older_parameters_needs_rehash(
    time_cost: int, memory_cost: int, parallelism: int
) -> None:
    older = PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
    ).hash(PASSWORD)

    assert verify_password(PASSWORD, older) is True
    assert needs_rehash(older) is True


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain text password",
        "$argon2i$v=19$m=65536,t=3,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A",
        "$2x$04$abcdefghijklmnopqrstuu5lBcUm3QBsoe2oXpGXiqkO8OSHxXPxC",
        "$argon2id$v=19$m=65536,t=3,p=1$not-base64!$also-not",
        "$argon2id$",
        "$2b$04$too-short",
        "$2b$04$ünïcødé" + "x" * 45,
    ],
    ids=["empty", "plain", "argon2i", "bcrypt-2x", "argon2id-garbage", "argon2id-prefix",
         "bcrypt-short", "bcrypt-non-ascii"],
)
def test_malformed_hash_raises_format_error(stored: str) -> None:
    with pytest.raises(PasswordHashFormatError):
        verify_password(PASSWORD, stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain text password",
        "$argon2id$",
        "$argon2id$v=19$m=abc,t=3,p=1$c2FsdHNhbHQ$aGFzaA",
        "$argon2id$v=19$t=3,p=1$c2FsdHNhbHQ$aGFzaA",
    ],
    ids=["empty", "plain", "argon2id-prefix", "argon2id-bad-memory", "argon2id-no-memory"],
)
def test_needs_rehash_of_unreadable_hash_raises_format_error(stored: str) -> None:
    with pytest.raises(PasswordHashFormatError):
        needs_rehash(stored)


def test_format_error_is_not_a_client_error() -> None:
    # A corrupt stored hash must surface as a server fault, not as a 4xx blaming the request.
    assert not issubclass(PasswordHashFormatError, InvalidInput)


def test_async_hash_and_verify_round_trip() -> None:
    async def round_trip() -> tuple[bool, bool]:
        stored = await hash_password_async(PASSWORD)
        return (
            await verify_password_async(PASSWORD, stored),
            await verify_password_async(PASSWORD.upper(), stored),
        )

    assert asyncio.run(round_trip()) == (True, False)


def test_async_hash_leaves_event_loop_free() -> None:
    async def count_ticks_during_hash() -> int:
        ticks = 0
        hashing = asyncio.ensure_future(hash_password_async(PASSWORD))
        while not hashing.done():
            ticks += 1
            await asyncio.sleep(0)
        await hashing
        return ticks

    # A hash that blocked the loop would let this loop turn at most once. A hash in a worker
    # thread leaves the loop free to turn many times while the hash runs.
    assert asyncio.run(count_ticks_during_hash()) > 10


def test_verification_without_account_returns_false() -> None:
    assert passwords.verify_password_without_account(PASSWORD) is False
    assert passwords.verify_password_without_account("") is False


def test_verification_without_account_runs_argon2id(monkeypatch: pytest.MonkeyPatch) -> None:
    # The point is to spend the time of a real verification, so argon2id must run.
    calls: list[str] = []
    real_verify = passwords._verify_argon2id

    def recording_verify(password: str, password_hash: str) -> bool:
        calls.append(password_hash)
        return real_verify(password, password_hash)

    monkeypatch.setattr(passwords, "_verify_argon2id", recording_verify)
    passwords.verify_password_without_account(PASSWORD)

    assert len(calls) == 1
    assert calls[0].startswith("$argon2id$v=19$m=65536,t=3,p=1$")


def test_async_verification_without_account_returns_false() -> None:
    result = asyncio.run(passwords.verify_password_without_account_async(PASSWORD))
    assert result is False


def test_hashes_leave_the_first_core_free() -> None:
    if passwords.HASHING_CORES is None:
        pytest.skip("threads cannot be pinned to cores here")
    cores = os.sched_getaffinity(0)
    pinned = passwords._pool.submit(os.sched_getaffinity, 0).result()

    assert pinned == passwords.HASHING_CORES
    if len(cores) > 1:
        assert min(cores) not in pinned
        assert pinned == cores - {min(cores)}
