"""The provider routes over HTTP: who may do what, egress checks at save time, and a key that
never follows a base URL to a new host."""

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from llero.academy import providers
from llero.access.roles import Role
from llero.audit.models import AuditRecord
from llero.barracks.models import Agent
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.storage.db import Database
from llero.vault.models import SecretKind
from tests.academy.provider_helpers import GPT_4O, PROVIDERS, audit_records, stored_secret
from tests.conftest import MakeUser

OLLAMA = "127.0.0.1:11434"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"egress_allowed_endpoints": [OLLAMA]})


@pytest.fixture
def openai_key(database: Database) -> int:
    return stored_secret(database, "openai-key", SecretKind.PROVIDER_API_KEY)


def create(client: TestClient, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "openai", "protocol": "openai", "models": [GPT_4O]}
    body.update(overrides)
    response = client.post(PROVIDERS, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def assert_refused(response: Any, status: int, code: str, field: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert [detail["field"] for detail in body["details"]] == [field]
    message: str = body["message"]
    return message


# Create and read.


def test_create_defaults_to_official_url(client: TestClient, openai_key: int) -> None:
    created = create(client, secret_id=openai_key)

    assert created["base_url"] == "https://api.openai.com/v1"
    assert created["secret_id"] == openai_key
    assert created["secret_attached"] is True
    assert created["models"] == [GPT_4O]


def test_create_anthropic_defaults_to_its_url(client: TestClient) -> None:
    created = create(client, name="anthropic", protocol="anthropic", models=[])

    assert created["base_url"] == "https://api.anthropic.com"
    assert created["secret_id"] is None


def test_create_records_audit_event(
    client: TestClient, database: Database, openai_key: int
) -> None:
    created = create(client, secret_id=openai_key)

    assert audit_records(database, "provider:created") == [
        (
            str(created["id"]),
            {
                "name": "openai",
                "protocol": "openai",
                "base_url": "https://api.openai.com/v1",
                "key_id": openai_key,
                "models": ["gpt-4o"],
            },
        )
    ]


def test_local_server_on_allowed_endpoint_needs_no_key(client: TestClient) -> None:
    created = create(client, name="ollama", base_url=f"http://{OLLAMA}/v1/", models=[])

    assert created["base_url"] == f"http://{OLLAMA}/v1"
    assert created["secret_attached"] is False


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_non_admin_reads_models_without_url_or_key(
    client: TestClient,
    anonymous_client: TestClient,
    make_user: MakeUser,
    openai_key: int,
    role: Role,
) -> None:
    created = create(client, secret_id=openai_key)
    reader = make_user(role=role)

    listed = anonymous_client.get(PROVIDERS, headers=reader.headers)
    single = anonymous_client.get(f"{PROVIDERS}/{created['id']}", headers=reader.headers)

    expected = {
        "id": created["id"],
        "name": "openai",
        "protocol": "openai",
        "models": [GPT_4O],
        "secret_attached": True,
    }
    assert listed.json() == {"items": [expected]}
    assert single.json() == expected


def test_admin_reads_url_and_key(client: TestClient, openai_key: int) -> None:
    created = create(client, secret_id=openai_key)

    listed = client.get(PROVIDERS).json()["items"]

    assert listed == [created]


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_non_admin_cannot_create(
    anonymous_client: TestClient, make_user: MakeUser, role: Role
) -> None:
    user = make_user(role=role)

    response = anonymous_client.post(
        PROVIDERS, json={"name": "x", "protocol": "openai"}, headers=user.headers
    )

    assert response.status_code == 403


# Input checks.


@pytest.mark.parametrize(
    ("base_url", "rule"),
    [
        # The hostile case: a loopback port that no admin allowed.
        ("http://127.0.0.1:8080/v1", "plain http is allowed only to endpoints an admin listed"),
        ("https://127.0.0.1:8443/v1", "the host '127.0.0.1' is not on the egress allowlist"),
        ("http://127.0.0.1:11435", "127.0.0.1:11435 is not one"),
        ("https://169.254.169.254/latest", "is not on the egress allowlist"),
        ("https://evil.example.com/v1", "the host 'evil.example.com' is not on the egress"),
        ("http://api.openai.com/v1", "plain http is allowed only to endpoints an admin listed"),
        ("ftp://api.openai.com/v1", "the URL scheme must be https, not 'ftp'"),
        ("https://user:pw@api.openai.com/v1", "must not contain a user name or password"),
        ("https://api.openai.com/v1#frag", "must not contain a fragment"),
        ("https://[::1]:11434/v1", "is not on the egress allowlist"),
    ],
)
def test_base_url_outside_policy_refused_naming_rule(
    client: TestClient, database: Database, base_url: str, rule: str
) -> None:
    response = client.post(
        PROVIDERS, json={"name": "local", "protocol": "openai", "base_url": base_url}
    )

    message = assert_refused(response, 422, "egress_refused", "base_url")
    assert rule in message
    assert client.get(PROVIDERS).json() == {"items": []}
    assert audit_records(database, "provider:created") == []


def test_base_url_with_query_refused(client: TestClient) -> None:
    response = client.post(
        PROVIDERS,
        json={"name": "x", "protocol": "openai", "base_url": "https://api.openai.com/v1?key=k"},
    )

    message = assert_refused(response, 422, "invalid_request", "base_url")
    assert message == "base_url: must not contain a query string"


@pytest.mark.parametrize("name", ["OpenAI", "open ai", "-openai", "", "a" * 65, "ópenai"])
def test_bad_name_refused(client: TestClient, name: str) -> None:
    response = client.post(PROVIDERS, json={"name": name, "protocol": "openai"})

    assert response.status_code == 422, response.text
    assert "name" in response.json()["message"]


def test_unknown_protocol_refused(client: TestClient) -> None:
    response = client.post(PROVIDERS, json={"name": "x", "protocol": "gemini"})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body.protocol"


def test_duplicate_name_conflicts(client: TestClient) -> None:
    create(client)

    response = client.post(PROVIDERS, json={"name": "openai", "protocol": "openai"})

    assert response.status_code == 409
    assert response.json()["message"] == (
        "a provider named 'openai' already exists; choose another name"
    )


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({**GPT_4O, "input_micros_per_million": -1}, "body.models.0.input_micros_per_million"),
        (
            {**GPT_4O, "output_micros_per_million": 10**12 + 1},
            "body.models.0.output_micros_per_million",
        ),
        ({**GPT_4O, "input_micros_per_million": 2.5}, "body.models.0.input_micros_per_million"),
        (
            {**GPT_4O, "input_micros_per_million": "2500000"},
            "body.models.0.input_micros_per_million",
        ),
        ({**GPT_4O, "name": " gpt-4o"}, "models.0.name"),
    ],
)
def test_bad_price_or_model_name_refused(
    client: TestClient, model: dict[str, Any], field: str
) -> None:
    response = client.post(PROVIDERS, json={"name": "x", "protocol": "openai", "models": [model]})

    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == field


def test_repeated_model_refused(client: TestClient) -> None:
    response = client.post(
        PROVIDERS, json={"name": "x", "protocol": "openai", "models": [GPT_4O, GPT_4O]}
    )

    message = assert_refused(response, 422, "invalid_request", "models.1.name")
    assert message == "models.1.name: repeats the model 'gpt-4o'; list it once"


def test_secret_of_other_kind_refused(client: TestClient, database: Database) -> None:
    webhook_key = stored_secret(database, "hook", SecretKind.WEBHOOK_SIGNING_KEY)

    response = client.post(
        PROVIDERS, json={"name": "x", "protocol": "openai", "secret_id": webhook_key}
    )

    message = assert_refused(response, 422, "invalid_request", "secret_id")
    assert message == (
        f"secret_id: secret {webhook_key} is a webhook_signing_key; a provider needs a "
        "provider_api_key"
    )


def test_missing_secret_refused(client: TestClient) -> None:
    response = client.post(PROVIDERS, json={"name": "x", "protocol": "openai", "secret_id": 4242})

    message = assert_refused(response, 422, "invalid_request", "secret_id")
    assert message == "secret_id: no secret has id 4242"


# Changing the base URL detaches the key.


def test_base_url_change_detaches_secret(
    client: TestClient, database: Database, openai_key: int
) -> None:
    created = create(client, secret_id=openai_key)

    response = client.patch(
        f"{PROVIDERS}/{created['id']}", json={"base_url": f"http://{OLLAMA}/v1"}
    )

    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["base_url"] == f"http://{OLLAMA}/v1"
    assert changed["secret_id"] is None
    assert changed["secret_attached"] is False
    assert audit_records(database, "provider:updated") == [
        (
            str(created["id"]),
            {"name": "openai", "changed": ["base_url"], "base_url": f"http://{OLLAMA}/v1"},
        )
    ]
    assert audit_records(database, "provider:secret_detached") == [
        (
            str(created["id"]),
            {"name": "openai", "key_id": openai_key, "reason": "base_url_changed"},
        )
    ]


def test_same_base_url_keeps_secret(client: TestClient, openai_key: int) -> None:
    created = create(client, secret_id=openai_key)

    response = client.patch(
        f"{PROVIDERS}/{created['id']}", json={"base_url": "https://api.openai.com/v1/"}
    )

    assert response.json()["secret_id"] == openai_key


def test_models_change_keeps_secret(
    client: TestClient, database: Database, openai_key: int
) -> None:
    created = create(client, secret_id=openai_key)
    mini = {
        "name": "gpt-4o-mini",
        "input_micros_per_million": 150_000,
        "output_micros_per_million": 600_000,
    }
    cheaper = {**GPT_4O, "input_micros_per_million": 2_000_000}

    response = client.patch(f"{PROVIDERS}/{created['id']}", json={"models": [mini, cheaper]})

    assert response.json()["secret_id"] == openai_key
    assert response.json()["models"] == [cheaper, mini]
    assert audit_records(database, "provider:secret_detached") == []


def test_refused_base_url_change_keeps_everything(
    client: TestClient, database: Database, openai_key: int
) -> None:
    created = create(client, secret_id=openai_key)

    response = client.patch(
        f"{PROVIDERS}/{created['id']}", json={"base_url": "http://127.0.0.1:9/v1"}
    )

    assert_refused(response, 422, "egress_refused", "base_url")
    assert client.get(f"{PROVIDERS}/{created['id']}").json() == created
    assert audit_records(database, "provider:secret_detached") == []


def test_reattach_secret_after_detach(
    client: TestClient, database: Database, openai_key: int
) -> None:
    created = create(client, secret_id=openai_key)
    client.patch(f"{PROVIDERS}/{created['id']}", json={"base_url": f"http://{OLLAMA}/v1"})

    response = client.put(f"{PROVIDERS}/{created['id']}/secret", json={"secret_id": openai_key})

    assert response.status_code == 200, response.text
    assert response.json()["secret_id"] == openai_key
    assert audit_records(database, "provider:secret_attached") == [
        (
            str(created["id"]),
            {"name": "openai", "key_id": openai_key, "base_url": f"http://{OLLAMA}/v1"},
        )
    ]


def test_detach_secret_route(client: TestClient, database: Database, openai_key: int) -> None:
    created = create(client, secret_id=openai_key)

    response = client.delete(f"{PROVIDERS}/{created['id']}/secret")

    assert response.json()["secret_id"] is None
    assert audit_records(database, "provider:secret_detached") == [
        (str(created["id"]), {"name": "openai", "key_id": openai_key, "reason": "detached"})
    ]


def test_update_null_field_refused(client: TestClient) -> None:
    created = create(client)

    response = client.patch(f"{PROVIDERS}/{created['id']}", json={"base_url": None})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body.base_url"


# Agents name providers.


@pytest.fixture
def agent_on_openai(database: Database) -> None:
    with database.transaction() as session:
        session.add(Agent(name="researcher", provider="openai", model="gpt-4o"))


@pytest.mark.usefixtures("agent_on_openai")
def test_delete_used_provider_conflicts(client: TestClient) -> None:
    created = create(client)

    response = client.delete(f"{PROVIDERS}/{created['id']}")

    assert response.status_code == 409
    assert response.json()["message"] == (
        "provider 'openai' cannot be deleted while agents use it: researcher; move those agents "
        "to another provider first"
    )


@pytest.mark.usefixtures("agent_on_openai")
def test_rename_used_provider_conflicts(client: TestClient) -> None:
    created = create(client)

    response = client.patch(f"{PROVIDERS}/{created['id']}", json={"name": "openai2"})

    assert response.status_code == 409


def test_delete_unused_provider(client: TestClient, database: Database) -> None:
    created = create(client)

    response = client.delete(f"{PROVIDERS}/{created['id']}")

    assert response.status_code == 204
    assert client.get(f"{PROVIDERS}/{created['id']}").status_code == 404
    assert audit_records(database, "provider:deleted") == [(str(created["id"]), {"name": "openai"})]
    with database.reader() as session:
        assert session.scalars(select(providers.ProviderModel)).all() == []


# Fail closed.


def test_failed_audit_rolls_back_create(
    client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(providers, "record_as", broken)

    response = client.post(PROVIDERS, json={"name": "openai", "protocol": "openai"})

    assert response.status_code == 500
    with database.reader() as session:
        assert session.scalars(select(providers.Provider)).all() == []


def test_planted_key_appears_nowhere(
    app: FastAPI, client: TestClient, database: Database, capfd: pytest.CaptureFixture[str]
) -> None:
    planted = "sk-planted-provider-key-5c1e9a7d3b"
    stored = app.state.vault.create_secret(
        name="planted", kind=SecretKind.PROVIDER_API_KEY, value=Secret(planted)
    )
    created = create(client, secret_id=stored.secret_id)
    path = f"{PROVIDERS}/{created['id']}"

    responses = [
        client.get(PROVIDERS),
        client.get(path),
        client.patch(path, json={"base_url": f"http://{OLLAMA}/v1"}),
        client.put(f"{path}/secret", json={"secret_id": stored.secret_id}),
        client.delete(f"{path}/secret"),
        client.delete(path),
    ]

    assert all(response.status_code < 300 for response in responses)
    assert not any(planted in response.text for response in responses)
    with database.reader() as session:
        details = session.scalars(select(AuditRecord.detail)).all()
    assert details
    assert not any(planted in detail for detail in details)
    assert planted not in capfd.readouterr().err
