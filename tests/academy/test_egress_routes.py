"""The admin-managed egress allowlist: entries join the policy that provider URLs are saved and
called under, they follow the same rules as the settings, and every change is audited."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.academy.allowlist import egress_policy
from llero.academy.providers import endpoint_of, get_provider_by_name
from llero.access.roles import Role
from llero.egress import EgressRefused
from llero.storage.db import Database
from tests.academy.provider_helpers import PROVIDERS, audit_records
from tests.conftest import MakeUser

ENTRIES = "/api/egress/entries"
OLLAMA_URL = "http://127.0.0.1:11434/v1"


def _ollama(client: TestClient) -> int:
    return client.post(
        PROVIDERS, json={"name": "ollama", "protocol": "openai", "base_url": OLLAMA_URL}
    ).status_code


def test_added_endpoint_lets_provider_be_saved(client: TestClient, database: Database) -> None:
    assert _ollama(client) == 422

    added = client.post(ENTRIES, json={"kind": "endpoint", "value": "127.0.0.1:11434"})

    assert added.status_code == 201, added.text
    assert added.json()["value"] == "127.0.0.1:11434"
    assert _ollama(client) == 201
    assert audit_records(database, "settings:changed") == [
        (
            str(added.json()["id"]),
            {"change": "egress_entry_added", "kind": "endpoint", "value": "127.0.0.1:11434"},
        )
    ]


def test_added_host_allows_https_only(client: TestClient) -> None:
    client.post(ENTRIES, json={"kind": "host", "value": "LLM.Example.org"})

    https = client.post(
        PROVIDERS,
        json={"name": "vllm", "protocol": "openai", "base_url": "https://llm.example.org/v1"},
    )
    plain = client.post(
        PROVIDERS,
        json={"name": "vllm2", "protocol": "openai", "base_url": "http://llm.example.org/v1"},
    )

    assert https.status_code == 201, https.text
    assert plain.status_code == 422


def test_removed_entry_stops_calls(app: FastAPI, client: TestClient, database: Database) -> None:
    entry = client.post(ENTRIES, json={"kind": "endpoint", "value": "127.0.0.1:11434"}).json()
    assert _ollama(client) == 201

    removed = client.delete(f"{ENTRIES}/{entry['id']}")

    assert removed.status_code == 204
    with database.reader() as session:
        provider = get_provider_by_name(session, "ollama")
        policy = egress_policy(app.state.settings, session)
        with pytest.raises(EgressRefused):
            endpoint_of(provider, policy)
    changes = [detail["change"] for _, detail in audit_records(database, "settings:changed")]
    assert changes == ["egress_entry_added", "egress_entry_removed"]


def test_read_shows_settings_and_entries(client: TestClient) -> None:
    client.post(ENTRIES, json={"kind": "endpoint", "value": "[::1]:8000"})

    body = client.get("/api/egress").json()

    assert body["settings"] == {
        "hosts": ["api.openai.com", "api.anthropic.com"],
        "endpoints": [],
    }
    assert [(entry["kind"], entry["value"]) for entry in body["entries"]] == [
        ("endpoint", "[::1]:8000")
    ]


@pytest.mark.parametrize(
    ("kind", "value", "problem"),
    [
        ("endpoint", "169.254.169.254:80", "where cloud metadata services answer"),
        ("endpoint", "[fd00:ec2::254]:80", "where cloud metadata services answer"),
        ("endpoint", "127.0.0.1", "must be host:port"),
        ("endpoint", "http://127.0.0.1:11434", "must be host:port only"),
        ("host", "*.example.org", "must be a plain host name"),
        ("host", "10.1.2.3", "allow it as host:port in the endpoint list instead"),
    ],
)
def test_bad_entry_refused(client: TestClient, kind: str, value: str, problem: str) -> None:
    response = client.post(ENTRIES, json={"kind": kind, "value": value})

    assert response.status_code == 422, response.text
    assert response.json()["details"] == [
        {"field": "value", "problem": response.json()["message"].removeprefix("value: ")}
    ]
    assert problem in response.json()["message"]


def test_repeated_entry_conflicts(client: TestClient) -> None:
    client.post(ENTRIES, json={"kind": "endpoint", "value": "127.0.0.1:11434"})

    again = client.post(ENTRIES, json={"kind": "endpoint", "value": "127.0.0.1:11434"})
    configured = client.post(ENTRIES, json={"kind": "host", "value": "api.openai.com"})

    assert again.status_code == 409
    assert again.json()["message"] == "127.0.0.1:11434 is already an allowed endpoint"
    assert configured.status_code == 409
    assert configured.json()["message"] == (
        "api.openai.com is already allowed by LLERO_EGRESS_ALLOWED_HOSTS"
    )


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_non_admin_cannot_touch_allowlist(
    anonymous_client: TestClient, make_user: MakeUser, role: Role
) -> None:
    user = make_user(role=role)
    body = {"kind": "endpoint", "value": "127.0.0.1:11434"}

    assert anonymous_client.get("/api/egress", headers=user.headers).status_code == 403
    assert anonymous_client.post(ENTRIES, json=body, headers=user.headers).status_code == 403
