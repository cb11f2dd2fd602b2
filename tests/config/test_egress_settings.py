"""The egress settings: hosts and endpoints are checked at start, and a bad entry stops the start
with one line that names the variable and the problem."""

from pathlib import Path

import pytest

from llero.config.settings import load_settings
from llero.errors import SettingsError

HOSTS = "LLERO_EGRESS_ALLOWED_HOSTS"
ENDPOINTS = "LLERO_EGRESS_ALLOWED_ENDPOINTS"


@pytest.fixture(autouse=True)
def _empty_working_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory, so no developer .env is read."""
    monkeypatch.chdir(tmp_path)


def _error(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = caught.value.message
    assert "\n" not in message
    return message


def test_defaults_are_official_provider_hosts() -> None:
    settings = load_settings()

    assert settings.egress_allowed_hosts == ["api.openai.com", "api.anthropic.com"]
    assert settings.egress_allowed_endpoints == []


def test_lists_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOSTS, " API.OpenAI.com , llm.example.org")
    monkeypatch.setenv(ENDPOINTS, "127.0.0.1:11434, [::1]:8000 ,Ollama.LAN:11434")

    settings = load_settings()

    assert settings.egress_allowed_hosts == ["api.openai.com", "llm.example.org"]
    assert settings.egress_allowed_endpoints == [
        "127.0.0.1:11434",
        "[::1]:8000",
        "ollama.lan:11434",
    ]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("*.openai.com", "must be a plain host name such as api.openai.com"),
        ("https://api.openai.com", "must be a plain host name"),
        ("api.openai.com:443", "must be a plain host name"),
        ("api.openai.com/v1", "must be a plain host name"),
        ("-bad.example.com", "must be a plain host name"),
        ("bücher.example", "write a non-ASCII name in punycode"),
        ("127.0.0.1", "127.0.0.1 is a private, loopback or reserved address; allow it as"),
        ("10.0.0.8", "allow it as host:port in the endpoint list instead"),
    ],
)
def test_bad_host_stops_start(monkeypatch: pytest.MonkeyPatch, value: str, problem: str) -> None:
    message = _error(monkeypatch, HOSTS, value)

    assert message.startswith(f"invalid setting {HOSTS}: ")
    assert problem in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("127.0.0.1", "must be host:port, such as 127.0.0.1:11434"),
        ("127.0.0.1:0", "has port 0"),
        ("127.0.0.1:70000", "has an invalid port"),
        ("http://127.0.0.1:11434", "must be host:port only, without scheme, path or user"),
        ("127.0.0.1:11434/v1", "must be host:port only"),
        ("169.254.169.254:80", "169.254.169.254 is a link-local, multicast or unspecified"),
        ("[fe80::1]:80", "is a link-local, multicast or unspecified address"),
        ("[fd00:ec2::254]:80", "where cloud metadata services answer"),
        ("[::ffff:169.254.169.254]:80", "where cloud metadata services answer"),
        ("0.0.0.0:11434", "is a link-local, multicast or unspecified address"),
        ("224.0.0.1:5000", "is a link-local, multicast or unspecified address"),
        ("*.lan:11434", "must be a plain host name"),
    ],
)
def test_bad_endpoint_stops_start(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    message = _error(monkeypatch, ENDPOINTS, value)

    assert message.startswith(f"invalid setting {ENDPOINTS}: ")
    assert problem in message
