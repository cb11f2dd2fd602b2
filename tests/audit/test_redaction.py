"""Event details are bounded JSON with every secret replaced by its keyed hash."""

import json

import pytest

from llero.audit.keys import AuditKeys
from llero.audit.redaction import (
    DETAIL_MAX_BYTES,
    DETAIL_MAX_DEPTH,
    InvalidAuditDetail,
    audit_hash,
    encode_detail,
    is_sensitive_key,
    looks_like_credential,
)

SECRET = "hunter2-PLANTED"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "new_password",
        "Password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "refreshToken",
        "access_token",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "authorization",
        "Authorization",
        "cookie",
        "Set-Cookie",
        "code",
        "mfa_code",
        "recovery_code",
        "seed",
        "totp_seed",
        "otp",
        "pin",
        "private_key",
        "passphrase",
        "credentials",
        "key",
        "auth",
        "session_id",
        "salt",
    ],
)
def test_sensitive_key_detected(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "name",
        "tool",
        "key_id",
        "auth_method",
        "error_code",
        "status_code",
        "reason_code",
        "postcode",
        "seeded",
        "reason",
        "count",
        "description",
    ],
)
def test_plain_key_kept(key: str) -> None:
    assert not is_sensitive_key(key)


@pytest.mark.parametrize(
    "value",
    [
        "sk-live-PLANTED1234567",
        "sk-proj-abcdefghijklmnop",
        "sk-ant-api03-abcdefghijkl",
        "rk_live_abcdefghijkl",
        "ghp_abcdefghijklmnopqrstuvwx",
        "xoxb-1234567890-abcdef",
        "AKIAIOSFODNN7EXAMPLE",
        "Bearer abcdefghijklmnop",
        "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2ln",
        "-----BEGIN PRIVATE KEY-----",
        "the key is sk-live-abcdefghijkl, keep it safe",
    ],
)
def test_credential_shape_detected(value: str) -> None:
    assert looks_like_credential(value)


@pytest.mark.parametrize(
    "value",
    ["task-management", "desk_reservation_system", "sk-short", "openai", "Bearer", "hello world"],
)
def test_ordinary_string_not_credential(value: str) -> None:
    assert not looks_like_credential(value)


def test_sensitive_values_hashed(audit_keys: AuditKeys) -> None:
    text = encode_detail(
        {"password": SECRET, "code": 123456, "name": "alice", "otp_seed": None}, audit_keys
    )

    assert json.loads(text) == {
        "code": audit_hash("123456", audit_keys),
        "name": "alice",
        "otp_seed": None,
        "password": audit_hash(SECRET, audit_keys),
    }
    assert SECRET not in text


def test_values_below_sensitive_key_hashed(audit_keys: AuditKeys) -> None:
    text = encode_detail(
        {"credentials": {"user": "bob", "values": [SECRET, 42, False]}}, audit_keys
    )

    assert json.loads(text) == {
        "credentials": {
            "user": audit_hash("bob", audit_keys),
            "values": [
                audit_hash(SECRET, audit_keys),
                audit_hash("42", audit_keys),
                audit_hash("false", audit_keys),
            ],
        }
    }


def test_credential_under_plain_key_hashed(audit_keys: AuditKeys) -> None:
    text = encode_detail({"notes": ["first", "sk-live-PLANTED99887766"]}, audit_keys)

    assert json.loads(text) == {
        "notes": ["first", audit_hash("sk-live-PLANTED99887766", audit_keys)]
    }


def test_detail_is_canonical(audit_keys: AuditKeys) -> None:
    first = encode_detail({"b": 1, "a": "é", "c": [1.5, True]}, audit_keys)
    second = encode_detail({"c": [1.5, True], "a": "é", "b": 1}, audit_keys)

    assert first == second == '{"a":"\\u00e9","b":1,"c":[1.5,true]}'


def test_empty_detail_is_empty_object(audit_keys: AuditKeys) -> None:
    assert encode_detail(None, audit_keys) == "{}"
    assert encode_detail({}, audit_keys) == "{}"


def test_detail_at_size_limit_accepted(audit_keys: AuditKeys) -> None:
    overhead = len('{"notes":""}')
    text = encode_detail({"notes": "x" * (DETAIL_MAX_BYTES - overhead)}, audit_keys)

    assert len(text) == DETAIL_MAX_BYTES


def _nested(depth: int) -> dict[str, object]:
    detail: dict[str, object] = {"leaf": 1}
    for _ in range(depth - 1):
        detail = {"inner": detail}
    return detail


def test_detail_at_depth_limit_accepted(audit_keys: AuditKeys) -> None:
    assert encode_detail(_nested(DETAIL_MAX_DEPTH - 1), audit_keys).count("inner") == (
        DETAIL_MAX_DEPTH - 2
    )


@pytest.mark.parametrize(
    ("detail", "message"),
    [
        ({"notes": "x" * DETAIL_MAX_BYTES}, "the limit is 4096"),
        (_nested(DETAIL_MAX_DEPTH + 1), "nests deeper than 8"),
        ({"when": object()}, "detail.when has type object"),
        ({"raw": b"bytes"}, "detail.raw has type bytes"),
        ({"ratio": float("nan")}, "detail.ratio is not a finite number"),
        ({"ratio": float("inf")}, "detail.ratio is not a finite number"),
        ({1: "numeric key"}, "has a key that is not a string"),
        ({"": "empty key"}, "has a key that is empty"),
        ({"k" * 65: "long key"}, "longer than 64"),
        ({"items": [{"password": {"nested": {1, 2}}}]}, "detail.items[0].password.nested has type"),
        ({"tool-7": {"x": object()}}, "detail.<key>.x has type object"),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_invalid_detail_rejected(audit_keys: AuditKeys, detail: object, message: str) -> None:
    with pytest.raises(InvalidAuditDetail, match=message.replace("[", r"\[").replace("]", r"\]")):
        encode_detail(detail, audit_keys)  # type: ignore[arg-type]


def test_rejection_message_omits_secret(audit_keys: AuditKeys) -> None:
    with pytest.raises(InvalidAuditDetail) as raised:
        encode_detail({"password": SECRET, "other": {SECRET: object()}}, audit_keys)

    assert SECRET not in str(raised.value)


def test_audit_hash_has_prefix_and_hex(audit_keys: AuditKeys) -> None:
    digest = audit_hash("value", audit_keys)

    assert digest.startswith("hmac-sha256:")
    assert len(digest.removeprefix("hmac-sha256:")) == 64
    assert digest != audit_hash("value ", audit_keys)
