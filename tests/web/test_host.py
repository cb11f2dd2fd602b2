"""The Host header must name an allowlisted host (testserver, 127.0.0.1 or localhost here),
optionally with a numeric port; anything else is a 400 before any route runs."""

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message

from llero.config.settings import Settings
from llero.storage.db import Database
from tests.web.probes import build_probe_app, category_count

FORGED_HOSTS = [
    "evil.com",
    "evil.com:8000",
    "testserver.evil.com",
    "testserver.evil.com:443",
    "eviltestserver",
    "",
    " ",
    "testserver:evil",
    "testserver:",
    "testserver:80:80",
    "testserver:123456",
    "localhost@evil.com",
    "evil.com#testserver",
    "evil.com/testserver",
    "[::1]evil.com",
    "127.0.0.1.evil.com",
    "127.0.0.2",
]

ACCEPTED_HOSTS = ["testserver", "TestServer", "testserver:8000", "127.0.0.1:8000", "localhost"]


@pytest.mark.parametrize("host", FORGED_HOSTS)
def test_forged_host_rejected(probe_client: TestClient, host: str) -> None:
    response = probe_client.get("/healthz", headers={"host": host})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_host"
    assert response.json()["message"] == "the Host header is not allowed"


@pytest.mark.parametrize("host", FORGED_HOSTS)
def test_forged_host_cannot_change_state(
    probe_client: TestClient, database: Database, host: str
) -> None:
    response = probe_client.post("/probe/category", headers={"host": host})

    assert response.status_code == 400
    assert category_count(database) == 0


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("[::1]", 200),
        ("[::1]:8000", 200),
        ("[::1]evil.com", 400),
        ("[::1]:evil", 400),
        ("::1", 400),
    ],
)
def test_ipv6_loopback_host_needs_exact_brackets(
    settings: Settings, database: Database, host: str, status: int
) -> None:
    # The default allowlist names the IPv6 loopback as "[::1]", the form Host headers use.
    default_hosts = Settings(_env_file=None).allowed_hosts  # type: ignore[call-arg]
    app = build_probe_app(settings.model_copy(update={"allowed_hosts": default_hosts}), database)

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/healthz", headers={"host": host})

    assert response.status_code == status


@pytest.mark.parametrize("host", ACCEPTED_HOSTS)
def test_allowlisted_host_accepted(probe_client: TestClient, host: str) -> None:
    response = probe_client.get("/healthz", headers={"host": host})

    assert response.status_code == 200


async def _status_without_host(app: FastAPI) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.0",
        "method": "GET",
        "scheme": "http",
        "path": "/healthz",
        "raw_path": b"/healthz",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def test_missing_host_header_rejected(probe_app: FastAPI) -> None:
    # HTTP/1.0 clients may omit Host; TestClient always sends one, so the app is called directly.
    assert asyncio.run(_status_without_host(probe_app)) == 400
