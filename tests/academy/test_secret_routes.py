"""The secret routes over HTTP: write-only values, metadata and hints, ownership, versions,
deletion, and an audit record committed with every action."""

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llero.academy import service as academy_service
from llero.access.roles import Role
from llero.audit.service import AuditFilter, export_jsonl, query
from llero.storage.db import Database
from llero.vault.models import SecretKey, SecretVersion, StoredSecret
from tests.academy.helpers import PLANTED, PLANTED_ROTATED, add_agent, create_secret
from tests.conftest import FixtureUser, MakeUser


@pytest.fixture
def other_developer(make_user: MakeUser) -> FixtureUser:
    return make_user(role=Role.DEVELOPER)


def _count(database: Database, model: type[Any]) -> int:
    with database.reader() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_create_returns_metadata_and_hint_only(client: TestClient, admin: FixtureUser) -> None:
    response = create_secret(client, description="production key", name="openai-prod")

    assert response.status_code == 201
    body = response.json()
    assert PLANTED not in response.text
    assert "value" not in body
    assert body["name"] == "openai-prod"
    assert body["kind"] == "provider_api_key"
    assert body["owner_user_id"] == admin.id
    assert body["current_version"] == 1
    assert body["hint"] == PLANTED[-4:]
    assert body["rotated_at"] is None
    assert body["last_used_at"] is None
    assert [version["version"] for version in body["versions"]] == [1]


def test_short_value_gets_no_hint(client: TestClient) -> None:
    response = create_secret(client, value="short-value")

    assert response.status_code == 201
    assert response.json()["hint"] == ""


def test_duplicate_name_conflicts(client: TestClient) -> None:
    create_secret(client)

    response = create_secret(client, value=PLANTED_ROTATED)

    assert response.status_code == 409
    assert response.json()["message"] == "a secret named 'openai-prod' already exists"
    assert PLANTED_ROTATED not in response.text


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "Upper Case"}, "body.name"),
        ({"name": ""}, "body.name"),
        ({"value": ""}, "body.value"),
        ({"kind": "password"}, "body.kind"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "2099-01-01T00:00:00"}, "body.expires_at"),
        ({"value": 12345}, "body.value"),
        ({"owner_user_id": 1}, "body.owner_user_id"),
    ],
)
def test_invalid_create_names_field_without_value(
    client: TestClient, fields: dict[str, Any], field: str
) -> None:
    response = create_secret(client, **fields)

    assert response.status_code == 422
    assert field in response.json()["message"]
    assert PLANTED not in response.text


def test_value_over_limit_rejected(client: TestClient) -> None:
    response = create_secret(client, value="x" * (64 * 1024 + 1))

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body.value"


def test_rotate_adds_current_version(client: TestClient) -> None:
    secret_id = create_secret(client).json()["id"]

    response = client.post(f"/api/secrets/{secret_id}/versions", json={"value": PLANTED_ROTATED})

    assert response.status_code == 200
    body = response.json()
    assert PLANTED_ROTATED not in response.text
    assert body["current_version"] == 2
    assert body["hint"] == PLANTED_ROTATED[-4:]
    assert body["rotated_at"] is not None
    first, second = body["versions"]
    assert first["rotated_at"] is not None
    assert second["rotated_at"] is None


def test_destroy_old_version_keeps_it_listed(client: TestClient) -> None:
    secret_id = create_secret(client).json()["id"]
    client.post(f"/api/secrets/{secret_id}/versions", json={"value": PLANTED_ROTATED})

    response = client.delete(f"/api/secrets/{secret_id}/versions/1")

    assert response.status_code == 200
    first = response.json()["versions"][0]
    assert first["destroyed"] is True
    assert first["hint"] == ""


def test_destroy_current_version_refused(client: TestClient) -> None:
    secret_id = create_secret(client).json()["id"]

    response = client.delete(f"/api/secrets/{secret_id}/versions/1")

    assert response.status_code == 409
    assert response.json()["message"] == (
        f"version 1 is the current value of secret {secret_id}; replace the value first, "
        "or delete the secret"
    )


def test_delete_removes_secret_key_and_versions(client: TestClient, database: Database) -> None:
    secret_id = create_secret(client).json()["id"]
    client.post(f"/api/secrets/{secret_id}/versions", json={"value": PLANTED_ROTATED})

    response = client.delete(f"/api/secrets/{secret_id}")

    assert response.status_code == 204
    assert client.get(f"/api/secrets/{secret_id}").status_code == 404
    assert _count(database, StoredSecret) == 0
    assert _count(database, SecretKey) == 0
    assert _count(database, SecretVersion) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/api/secrets/{id}/value",
        "/api/secrets/{id}/plaintext",
        "/api/secrets/{id}/reveal",
        "/api/secrets/{id}/versions/1",
        "/api/secrets/{id}/versions/1/value",
        "/api/secrets/{id}?include=value",
        "/api/secrets/{id}/resolve",
        "/api/secrets/value?id={id}",
    ],
)
def test_no_route_returns_a_value(client: TestClient, path: str) -> None:
    secret_id = create_secret(client).json()["id"]

    for method in ("GET", "POST"):
        response = client.request(method, path.format(id=secret_id))

        assert PLANTED not in response.text
        if "include" not in path:
            assert response.status_code in {404, 405, 422}


def _properties_reachable(
    document: dict[str, Any], schema: dict[str, Any], seen: set[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Return every (name, schema) property reachable from ``schema`` through references."""
    reference = schema.get("$ref")
    if reference is not None:
        if reference in seen:
            return []
        seen.add(reference)
        schema = document["components"]["schemas"][reference.rsplit("/", 1)[-1]]
    found: list[tuple[str, dict[str, Any]]] = []
    for name, child in schema.get("properties", {}).items():
        found.append((name, child))
        found += _properties_reachable(document, child, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _properties_reachable(document, schema[key], seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            found += _properties_reachable(document, option, seen)
    return found


def test_openapi_offers_no_value_in_any_response(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()

    for route, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                for media in response.get("content", {}).values():
                    # A streamed body (text/event-stream) publishes no schema.
                    properties = _properties_reachable(document, media.get("schema", {}), set())
                    label = f"{method.upper()} {route} {status}"
                    assert not [name for name, child in properties if child.get("writeOnly")], label
                    if route.startswith(("/api/secrets", "/api/vault")):
                        names = {name for name, _ in properties}
                        assert not names & {"value", "plaintext", "master_key"}, label
    create_schema = document["components"]["schemas"]["SecretCreate"]
    assert create_schema["properties"]["value"]["writeOnly"] is True
    assert any(route.startswith("/api/secrets") for route in document["paths"])


def test_planted_value_nowhere_outside_the_vault(
    app: FastAPI,
    client: TestClient,
    database: Database,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent_id = add_agent(database, "writer")
    responses = [create_secret(client)]
    secret_id = responses[0].json()["id"]
    responses += [
        client.post(f"/api/secrets/{secret_id}/versions", json={"value": PLANTED_ROTATED}),
        client.get("/api/secrets"),
        client.get(f"/api/secrets/{secret_id}"),
        client.post(
            f"/api/secrets/{secret_id}/grants",
            json={"agent_id": agent_id, "purpose": "provider:openai"},
        ),
        client.get(f"/api/secrets/{secret_id}/grants"),
        client.delete(f"/api/secrets/{secret_id}/versions/1"),
        create_secret(client),  # a 409 that names the secret
        client.get("/api/openapi.json"),
    ]
    with database.reader() as session:
        exported = "".join(export_jsonl(session, AuditFilter()))
        details = [record.detail for record in query(session, limit=1000).records]
    responses.append(client.delete(f"/api/secrets/{secret_id}"))

    logged = capsys.readouterr()
    places = {
        "responses": "".join(response.text for response in responses),
        "headers": "".join(str(response.headers) for response in responses),
        "stdout": logged.out,
        "stderr": logged.err,
        "log records": caplog.text,
        "audit export": exported,
        "audit details": json.dumps(details),
    }
    assert len(exported.splitlines()) >= 4
    # The log capture works: the vault's own lines about these secrets are in it.
    assert "vault_secret_created" in logged.out + logged.err + caplog.text
    for place, text in places.items():
        assert PLANTED not in text, place
        assert PLANTED_ROTATED not in text, place


def test_developer_cannot_see_or_touch_other_developers_secret(
    anonymous_client: TestClient,
    database: Database,
    developer: FixtureUser,
    other_developer: FixtureUser,
) -> None:
    agent_id = add_agent(database, "other-agent")
    secret_id = create_secret(anonymous_client, developer.headers).json()["id"]
    create_secret(anonymous_client, other_developer.headers, name="own-key")
    other = other_developer.headers

    listed = anonymous_client.get("/api/secrets", headers=other).json()
    calls = [
        anonymous_client.get(f"/api/secrets/{secret_id}", headers=other),
        anonymous_client.get(f"/api/secrets/{secret_id}/grants", headers=other),
        anonymous_client.post(
            f"/api/secrets/{secret_id}/versions", json={"value": PLANTED_ROTATED}, headers=other
        ),
        anonymous_client.delete(f"/api/secrets/{secret_id}/versions/1", headers=other),
        anonymous_client.post(
            f"/api/secrets/{secret_id}/grants",
            json={"agent_id": agent_id, "purpose": "provider:openai"},
            headers=other,
        ),
        anonymous_client.delete(f"/api/secrets/{secret_id}/grants/1", headers=other),
        anonymous_client.delete(f"/api/secrets/{secret_id}", headers=other),
    ]

    assert [item["name"] for item in listed["items"]] == ["own-key"]
    assert listed["total"] == 1
    for response in calls:
        assert response.status_code == 404, response.request.url
        assert response.json()["message"] == f"secret {secret_id} not found"
    owner_view = anonymous_client.get(f"/api/secrets/{secret_id}", headers=developer.headers)
    assert owner_view.json()["current_version"] == 1


def test_admin_sees_every_secret(
    client: TestClient, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    create_secret(anonymous_client, developer.headers)
    create_secret(client, name="admin-key")

    listed = client.get("/api/secrets").json()

    assert [item["name"] for item in listed["items"]] == ["openai-prod", "admin-key"]


def test_every_action_audited_in_order(
    client: TestClient, database: Database, admin: FixtureUser
) -> None:
    agent_id = add_agent(database, "writer")
    secret_id = create_secret(client).json()["id"]
    client.post(f"/api/secrets/{secret_id}/versions", json={"value": PLANTED_ROTATED})
    client.delete(f"/api/secrets/{secret_id}/versions/1")
    grant = client.post(
        f"/api/secrets/{secret_id}/grants",
        json={"agent_id": agent_id, "purpose": "provider:openai"},
    ).json()
    client.delete(f"/api/secrets/{secret_id}/grants/{grant['id']}")
    client.delete(f"/api/secrets/{secret_id}")

    with database.reader() as session:
        page = query(session, AuditFilter(target_kind="secret"), newest_first=False)
    records = page.records

    assert [record.event for record in records] == [
        "secret:created",
        "secret:rotated",
        "secret:version_destroyed",
        "grant:created",
        "grant:revoked",
        "secret:deleted",
    ]
    assert {record.actor_id for record in records} == {str(admin.id)}
    assert {record.target_id for record in records} == {str(secret_id)}
    assert all(record.request_id for record in records)
    assert json.loads(records[3].detail) == {
        "agent_id": agent_id,
        "grant_id": grant["id"],
        "purpose": "provider:openai",
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/secrets", None),
        ("POST", "/api/secrets/{id}/versions", {"value": PLANTED_ROTATED}),
        ("DELETE", "/api/secrets/{id}", None),
    ],
)
def test_failed_audit_record_rolls_back_action(  # noqa: PLR0917 - pytest passes fixtures
    app: FastAPI,
    client: TestClient,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    secret_id = create_secret(client, name="existing").json()["id"]
    before = {model: _count(database, model) for model in (StoredSecret, SecretKey, SecretVersion)}

    def broken_record(*_: object, **__: object) -> int:
        raise RuntimeError("the audit table is gone")

    monkeypatch.setattr(academy_service, "record_as", broken_record)
    if body is None and method == "POST":
        response = create_secret(client)
    else:
        response = client.request(method, path.format(id=secret_id), json=body)

    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    after = {model: _count(database, model) for model in (StoredSecret, SecretKey, SecretVersion)}
    assert after == before
