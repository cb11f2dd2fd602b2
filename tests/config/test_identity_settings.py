"""Sign-in settings: token lifetimes, session limits, MFA and password rules are validated when
they are loaded, and the key check reads the signing keys as the ring that verifies tokens."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llero.config.keyfiles import SIGNING_KEY, check_key_files, create_key_files
from llero.config.settings import Settings, check_safe_to_serve, load_settings
from llero.errors import KeyFileError, SettingsError
from llero.identity.signing_keys import prune_signing_keys, rotate_signing_key

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _empty_working_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, so no developer .env is read."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _load_error(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> str:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return caught.value.message


def test_identity_defaults_are_strict() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.access_token_minutes == 15
    assert settings.clock_skew_seconds == 30
    assert settings.refresh_idle_minutes == 30
    assert settings.refresh_absolute_hours == 12
    assert settings.mfa_required_for_admins is True
    assert settings.mfa_required_for_everyone is False
    assert settings.signup_open is False
    assert settings.password_min_length == 15


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LLERO_ACCESS_TOKEN_MINUTES", "0"),
        ("LLERO_ACCESS_TOKEN_MINUTES", "61"),
        ("LLERO_CLOCK_SKEW_SECONDS", "-1"),
        ("LLERO_CLOCK_SKEW_SECONDS", "301"),
        ("LLERO_REFRESH_IDLE_MINUTES", "4"),
        ("LLERO_REFRESH_ABSOLUTE_HOURS", "0"),
        ("LLERO_PASSWORD_MIN_LENGTH", "7"),
        ("LLERO_PASSWORD_MIN_LENGTH", "257"),
        ("LLERO_MFA_REQUIRED_FOR_ADMINS", "maybe"),
    ],
)
def test_identity_setting_out_of_range_stops_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    message = _load_error(monkeypatch, {variable: value})

    assert message.startswith(f"invalid setting {variable}: ")


def test_short_password_minimum_needs_mfa_for_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _load_error(monkeypatch, {"LLERO_PASSWORD_MIN_LENGTH": "10"})

    assert message.startswith("invalid setting LLERO_PASSWORD_MIN_LENGTH: ")
    assert "multi-factor authentication is mandatory" in message


def test_short_password_minimum_allowed_with_mfa_for_everyone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLERO_PASSWORD_MIN_LENGTH", "10")
    monkeypatch.setenv("LLERO_MFA_REQUIRED_FOR_EVERYONE", "true")

    assert load_settings().password_min_length == 10


def test_idle_limit_longer_than_absolute_stops_start(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _load_error(
        monkeypatch, {"LLERO_REFRESH_IDLE_MINUTES": "1441", "LLERO_REFRESH_ABSOLUTE_HOURS": "24"}
    )

    assert message == (
        "invalid setting LLERO_REFRESH_ABSOLUTE_HOURS: must be at least 25 hours, because a "
        "session may not stay idle (LLERO_REFRESH_IDLE_MINUTES, 1441 minutes) longer than it "
        "may last"
    )


def test_open_signup_without_mail_stops_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLERO_SIGNUP_OPEN", "true")

    with pytest.raises(SettingsError) as caught:
        check_safe_to_serve(load_settings())

    assert caught.value.message == (
        "invalid setting LLERO_SIGNUP_OPEN: sign-up sends a verification mail, so it needs "
        "LLERO_SMTP_HOST"
    )


def test_key_check_accepts_rotated_ring_without_legacy_key(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    create_key_files(keys_dir)
    rotate_signing_key(keys_dir, now=T0)
    prune_signing_keys(keys_dir, timedelta(hours=2), now=T0 + timedelta(hours=3))

    assert not (keys_dir / SIGNING_KEY).exists()
    check_key_files(keys_dir)


def test_key_check_rejects_ring_naming_missing_key(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    create_key_files(keys_dir)
    kid = rotate_signing_key(keys_dir, now=T0)
    (keys_dir / "signing" / f"{kid}.pem").unlink()

    with pytest.raises(KeyFileError) as caught:
        check_key_files(keys_dir)

    assert caught.value.message == (
        f"key file {keys_dir / 'signing' / f'{kid}.pem'} is missing; run `llero init`"
    )
