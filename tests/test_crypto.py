"""The primitive operations in llero.crypto, against published test vectors where they exist."""

import base64
import copy
import json
import logging
import pickle

import pytest
import structlog

from llero.crypto import Secret, constant_time_equals, hash_token, keyed_hash, random_token

PLANTED = "planted-secret-value-4f1c9a"


def test_random_token_default_is_256_bits_url_safe() -> None:
    token = random_token()

    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(raw) == 32
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_random_token_values_differ() -> None:
    tokens = {random_token() for _ in range(1000)}

    assert len(tokens) == 1000


@pytest.mark.parametrize("nbytes", [0, 1, 8, 15])
def test_random_token_below_128_bits_rejected(nbytes: int) -> None:
    with pytest.raises(ValueError, match="at least 16 random bytes"):
        random_token(nbytes)


def test_random_token_128_bits_accepted() -> None:
    token = random_token(16)

    assert len(base64.urlsafe_b64decode(token + "==")) == 16


def test_hash_token_is_sha256_hex() -> None:
    # FIPS 180-2 test vector for SHA-256("abc").
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

    assert hash_token("abc") == expected


def test_keyed_hash_matches_rfc_4231_case_2() -> None:
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"

    assert keyed_hash(b"Jefe", "what do ya want for nothing?") == expected
    assert keyed_hash(Secret(b"Jefe"), b"what do ya want for nothing?") == expected


def test_keyed_hash_depends_on_key() -> None:
    assert keyed_hash(b"k" * 32, "alice@example.com") != keyed_hash(b"K" * 32, "alice@example.com")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("same", "same", True),
        ("same", "Same", False),
        ("short", "shorter", False),
        (b"bytes", b"bytes", True),
        ("bytes", b"bytes", True),
        ("p\u00e4ssw\u00f6rd", "p\u00e4ssw\u00f6rd", True),
        ("p\u00e4ssw\u00f6rd", "passwort", False),
        ("", "", True),
    ],
)
def test_constant_time_equals_compares_values(
    a: str | bytes, b: str | bytes, expected: bool
) -> None:
    assert constant_time_equals(a, b) is expected


def test_secret_repr_and_str_hide_value() -> None:
    secret = Secret(PLANTED)

    assert PLANTED not in repr(secret)
    assert PLANTED not in str(secret)
    assert PLANTED not in f"{secret}"
    assert PLANTED not in f"{secret!r}"
    assert PLANTED not in "%s %r" % (secret, secret)  # noqa: UP031 - logging formats this way
    assert PLANTED not in repr([secret, {"key": secret}])


def test_secret_reveal_returns_value() -> None:
    assert Secret(PLANTED).reveal() == PLANTED
    assert Secret(b"\x00\x01").reveal() == b"\x00\x01"


def test_secret_hidden_in_log_output(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(PLANTED)
    rendered = structlog.processors.JSONRenderer()(None, "info", {"event": "x", "key": secret})

    with caplog.at_level(logging.INFO):
        logging.getLogger("llero.test").info("loaded key %s", secret)

    assert PLANTED not in str(rendered)
    assert PLANTED not in caplog.text
    assert PLANTED not in json.dumps({"key": secret}, default=repr)


def test_secret_equality_is_by_value_between_secrets_only() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"


def test_secret_cannot_be_hashed_pickled_or_changed() -> None:
    secret = Secret(PLANTED)

    with pytest.raises(TypeError):
        hash(secret)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(AttributeError):
        secret._value = "other"


def test_secret_copy_returns_same_object() -> None:
    secret = Secret(PLANTED)

    assert copy.copy(secret) is secret
    assert copy.deepcopy({"key": secret})["key"] is secret
