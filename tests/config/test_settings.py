"""Settings: every unsafe or malformed value stops the start with one line that names the
variable, and no message repeats a value that could be secret."""

from pathlib import Path

import pytest

from llero.config.settings import (
    Environment,
    Settings,
    check_safe_to_serve,
    load_settings,
)
from llero.errors import SettingsError

PLANTED_SECRET = "sk-test-PLANTED-9a8b7c6d5e"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a setting under test, never bound


@pytest.fixture(autouse=True)
def _empty_working_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, so no developer .env is read."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _load_error(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> str:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        check_safe_to_serve(load_settings())
    message = caught.value.message
    assert "\n" not in message
    return message


def _serve_check(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> Settings:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    check_safe_to_serve(settings)
    return settings


@pytest.mark.parametrize(
    "origins",
    [
        "*",
        "https://app.example.com,*",
        "https://*.example.com",
        "null",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://user@app.example.com",
        "ftp://app.example.com",
        "app.example.com",
        "http://app.example.com",
    ],
)
def test_unsafe_cors_origin_stops_start(monkeypatch: pytest.MonkeyPatch, origins: str) -> None:
    message = _load_error(monkeypatch, {"LLERO_ALLOWED_ORIGINS": origins})

    assert message.startswith("invalid setting LLERO_ALLOWED_ORIGINS: ")


def test_wildcard_origin_message_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _load_error(monkeypatch, {"LLERO_ALLOWED_ORIGINS": "*"})

    assert message == (
        "invalid setting LLERO_ALLOWED_ORIGINS: wildcard origins are not allowed; "
        "list each origin exactly"
    )


@pytest.mark.parametrize(
    "origins",
    ["https://app.example.com", "https://app.example.com:8443", "http://localhost:5173"],
)
def test_exact_origins_accepted(monkeypatch: pytest.MonkeyPatch, origins: str) -> None:
    settings = _serve_check(monkeypatch, {"LLERO_ALLOWED_ORIGINS": origins})

    assert settings.allowed_origins == [origins]


@pytest.mark.parametrize("environment", ["production", "test"])
def test_debug_outside_development_stops_start(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    message = _load_error(monkeypatch, {"LLERO_DEBUG": "true", "LLERO_ENVIRONMENT": environment})

    assert message == (
        "invalid setting LLERO_DEBUG: debug is allowed only with LLERO_ENVIRONMENT=development"
    )


def test_debug_in_development_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _serve_check(
        monkeypatch, {"LLERO_DEBUG": "true", "LLERO_ENVIRONMENT": "development"}
    )

    assert settings.debug is True
    assert settings.environment is Environment.DEVELOPMENT


def test_defaults_are_production_without_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _serve_check(monkeypatch, {})

    assert settings.environment is Environment.PRODUCTION
    assert settings.debug is False
    assert settings.host == "127.0.0.1"
    assert settings.allowed_origins == []


@pytest.mark.parametrize(
    "host",
    [ALL_INTERFACES, "::", "192.168.1.10", "10.0.0.5", "app.example.com", "localhost.evil.com"],
)
def test_public_bind_without_tls_stops_start(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    message = _load_error(monkeypatch, {"LLERO_HOST": host})

    assert message.startswith(f"invalid setting LLERO_HOST: listening on {host} beyond loopback")
    assert "LLERO_TLS_CERTFILE" in message
    assert "LLERO_TRUSTED_PROXIES" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_bind_allowed_without_tls(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    assert _serve_check(monkeypatch, {"LLERO_HOST": host}).host == host


def test_public_bind_with_tls_allowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = _serve_check(
        monkeypatch,
        {
            "LLERO_HOST": ALL_INTERFACES,
            "LLERO_TLS_CERTFILE": str(tmp_path / "cert.pem"),
            "LLERO_TLS_KEYFILE": str(tmp_path / "key.pem"),
        },
    )

    assert settings.tls_enabled is True


@pytest.mark.parametrize("proxies", ["10.0.0.1", "10.0.0.0/8", "10.0.0.0/8,fd00::/8", "::1"])
def test_public_bind_behind_trusted_proxy_allowed(
    monkeypatch: pytest.MonkeyPatch, proxies: str
) -> None:
    settings = _serve_check(
        monkeypatch, {"LLERO_HOST": ALL_INTERFACES, "LLERO_TRUSTED_PROXIES": proxies}
    )

    assert settings.trusted_proxies == proxies.split(",")
    assert settings.tls_enabled is False


@pytest.mark.parametrize("variable", ["LLERO_TLS_CERTFILE", "LLERO_TLS_KEYFILE"])
def test_half_tls_configuration_stops_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    message = _load_error(monkeypatch, {variable: str(tmp_path / "file.pem")})

    assert message == (
        "invalid setting LLERO_TLS_CERTFILE: set both LLERO_TLS_CERTFILE and LLERO_TLS_KEYFILE"
    )


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        ("0", "Input should be greater than or equal to 1"),
        ("-1", "Input should be greater than or equal to 1"),
        ("65536", "Input should be less than or equal to 65535"),
        ("http", "Input should be a valid integer, unable to parse string as an integer"),
        ("", "Input should be a valid integer, unable to parse string as an integer"),
    ],
)
def test_bad_port_stops_start(monkeypatch: pytest.MonkeyPatch, port: str, problem: str) -> None:
    message = _load_error(monkeypatch, {"LLERO_PORT": port})

    assert message == f"invalid setting LLERO_PORT: {problem}"


@pytest.mark.parametrize(
    ("proxies", "bad"),
    [("not-an-ip", "not-an-ip"), ("10.0.0.0/33", "10.0.0.0/33"), ("10.0.0.1,evil", "evil")],
)
def test_invalid_trusted_proxy_stops_start(
    monkeypatch: pytest.MonkeyPatch, proxies: str, bad: str
) -> None:
    message = _load_error(monkeypatch, {"LLERO_TRUSTED_PROXIES": proxies})

    assert message == (
        f"invalid setting LLERO_TRUSTED_PROXIES: '{bad}' is not an IP address or network"
    )


@pytest.mark.parametrize("hosts", ["*", "*.example.com", "example.com/admin"])
def test_wildcard_allowed_host_stops_start(monkeypatch: pytest.MonkeyPatch, hosts: str) -> None:
    message = _load_error(monkeypatch, {"LLERO_ALLOWED_HOSTS": hosts})

    assert message.startswith("invalid setting LLERO_ALLOWED_HOSTS: ")


@pytest.mark.parametrize("name", ["LLERO_PROT", "LLERO_ALLOWED_ORIGIN", "LLERO_SECRET_KEY"])
def test_unknown_variable_stops_start(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    message = _load_error(monkeypatch, {name: "1"})

    assert message == f"unknown setting {name}; check the spelling against the README"


def test_test_suite_variables_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _serve_check(monkeypatch, {"LLERO_TEST_SOMETHING": "1"})

    assert settings.port == 8000


@pytest.mark.parametrize("name", ["LLERO_PROT", "OTHER_TOOL_SETTING"])
def test_unknown_dotenv_variable_stops_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    (tmp_path / ".env").write_text(f"{name}=1\n")

    message = _load_error(monkeypatch, {})

    assert message == f"unknown setting {name} in .env; check the spelling against the README"


def test_dotenv_unsafe_value_stops_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LLERO_ALLOWED_ORIGINS=*\n")

    message = _load_error(monkeypatch, {})

    assert message.startswith("invalid setting LLERO_ALLOWED_ORIGINS: wildcard origins")


def test_environment_overrides_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LLERO_PORT=9001\nLLERO_LOG_LEVEL=debug\n")

    settings = _serve_check(monkeypatch, {"LLERO_PORT": "9002"})

    assert settings.port == 9002
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    "environ",
    [
        {"LLERO_PORT": PLANTED_SECRET},
        {"LLERO_MAX_BODY_BYTES": PLANTED_SECRET},
        {"LLERO_DEBUG": PLANTED_SECRET},
        {"LLERO_ENVIRONMENT": PLANTED_SECRET},
        {"LLERO_DATABASE_URL": f"postgresql://llero:{PLANTED_SECRET}@db/llero", "LLERO_PORT": "x"},
    ],
)
def test_setting_errors_never_echo_values(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]
) -> None:
    message = _load_error(monkeypatch, environ)

    assert message.startswith("invalid setting LLERO_")
    assert PLANTED_SECRET not in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LLERO_MAX_BODY_BYTES", "100"),
        ("LLERO_MAX_BODY_BYTES", str(65 * 1024 * 1024)),
        ("LLERO_MAX_JSON_DEPTH", "1000"),
        ("LLERO_LOG_LEVEL", "verbose"),
        ("LLERO_LOG_FORMAT", "xml"),
        ("LLERO_ENVIRONMENT", "prod"),
    ],
)
def test_out_of_range_limits_stop_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    message = _load_error(monkeypatch, {variable: value})

    assert message.startswith(f"invalid setting {variable}: ")
