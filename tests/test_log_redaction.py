"""Every credential shape is removed from log text, and values under secret keys are removed whole,
while ordinary text and descriptive keys stay readable."""

import pytest

from llero.log_redaction import REDACTED, is_secret_key, redact_event, redact_text, redact_value

OPENAI_KEY = "sk-proj-Pl4ntedOpenAiKey0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-api03-Pl4ntedAnthropicKey-0123456789_abc"
JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlUGxhbnRlZA"
LLERO_TOKEN = "llero_pat_Pl4ntedLleroToken0123456789abcdefghijkABCDEF"
BEARER = "Bearer Pl4ntedOpaqueBearerValue"
PASSWORD = "Pl4nted horse battery staple"


@pytest.mark.parametrize(
    ("text", "planted"),
    [
        (f"provider rejected {OPENAI_KEY}", OPENAI_KEY),
        (f"key={ANTHROPIC_KEY}", ANTHROPIC_KEY),
        (f"token {JWT} expired", JWT),
        (f"unknown token {LLERO_TOKEN}.", LLERO_TOKEN),
        (f"Authorization: {BEARER}", "Pl4ntedOpaqueBearerValue"),
        ("authorization: basic dXNlcjpQbDRudGVkUGFzcw==", "dXNlcjpQbDRudGVkUGFzcw=="),
        ("GET /api/tools?access_token=Pl4ntedQueryToken&page=2", "Pl4ntedQueryToken"),
        ('{"password": "Pl4nted horse battery staple"}', PASSWORD),
        ("api_key: Pl4ntedApiKey", "Pl4ntedApiKey"),
        ("Cookie: llero_session=Pl4ntedCookie; Path=/", "Pl4ntedCookie"),
        ("postgresql://llero:Pl4ntedDbPass@127.0.0.1/llero", "Pl4ntedDbPass"),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIPl4ntedPem\n-----END PRIVATE KEY-----",
            "MIIPl4ntedPem",
        ),
    ],
)
def test_credential_shapes_removed_from_text(text: str, planted: str) -> None:
    redacted = redact_text(text)

    assert planted not in redacted
    assert REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "task-runner finished in 12 ms",
        "status_code=200 route=/api/tools/{tool_id}",
        "imported 658 tools, 54 as new versions",
        "2026-03-01T00:00:00Z",
    ],
)
def test_ordinary_text_unchanged(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "key", ["password", "api_key", "apiKey", "Authorization", "cookie", "refresh_token", "secret"]
)
def test_secret_keys_detected(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["token_kind", "api_token_id", "event", "route", "status_code"])
def test_descriptive_keys_kept(key: str) -> None:
    assert not is_secret_key(key)


def test_nested_values_redacted_by_key_and_shape() -> None:
    value = {
        "user": {"email": "a@example.com", "password": PASSWORD},
        "headers": [("Authorization", BEARER)],
        "provider": {"config": {"note": f"uses {OPENAI_KEY}"}},
        "secret": {"nested": {"anything": "Pl4ntedUnderSecret"}},
    }

    redacted = redact_value(value)

    assert redacted["user"] == {"email": "a@example.com", "password": REDACTED}
    assert "Pl4ntedOpaqueBearerValue" not in str(redacted["headers"])
    assert redacted["provider"]["config"]["note"] == f"uses {REDACTED}"
    assert redacted["secret"] == REDACTED
    assert value["user"]["password"] == PASSWORD


def test_objects_logged_by_redacted_repr() -> None:
    class Carrier:
        def __repr__(self) -> str:
            return f"Carrier(key={OPENAI_KEY!r})"

    redacted = redact_event(None, "info", {"event": "sent", "carrier": Carrier()})

    assert OPENAI_KEY not in redacted["carrier"]
    assert redacted["carrier"].startswith("Carrier(")


def test_deep_nesting_bounded() -> None:
    value: object = OPENAI_KEY
    for _ in range(50):
        value = [value]

    assert OPENAI_KEY not in str(redact_value(value))


def test_audit_event_name_kept_as_message() -> None:
    event = redact_event(None, "info", {"event": "token:family_revoked", "user_id": 3})

    assert event["event"] == "token:family_revoked"


def test_other_message_with_token_redacted() -> None:
    event = redact_event(None, "info", {"event": "token:abcdef0123456789"})

    assert "abcdef0123456789" not in event["event"]
