"""Admins search, export, verify and purge the audit trail over HTTP, each with its own permission,
and every bad parameter is a 422 that names it."""

import json
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.audit import service
from llero.audit.events import AuditEvent
from llero.audit.keys import AuditKeys, load_audit_keys
from llero.audit.redaction import audit_hash
from llero.audit.service import record
from llero.config.settings import Settings
from llero.storage.db import Database
from tests.audit.helpers import EVENTS, REQUEST, START, audited, execute_raw
from tests.conftest import FixtureUser, MakeUser

PLANTED_KEY = "sk-ant-api03-plantedRouteSecret0123456789"


@pytest.fixture
def keys(settings: Settings) -> AuditKeys:
    return load_audit_keys(settings.keys_dir)


@pytest.fixture
def stored(
    database: Database, keys: AuditKeys, monkeypatch: pytest.MonkeyPatch
) -> list[AuditEvent]:
    """Record EVENTS an hour apart from START, with a provider key in the last detail."""
    hours = iter(range(len(EVENTS)))
    monkeypatch.setattr(service, "utc_now", lambda: START + timedelta(hours=next(hours)))
    with audited(database, keys) as session:
        for index, (event, actor, target) in enumerate(EVENTS):
            detail = {"api_key": PLANTED_KEY} if index == len(EVENTS) - 1 else {"index": index}
            record(session, event, actor=actor, target=target, request=REQUEST, detail=detail)
    monkeypatch.undo()
    return [event for event, _, _ in EVENTS]


def _sequences(response_json: dict[str, object]) -> list[int]:
    return [item["sequence"] for item in response_json["events"]]  # type: ignore[attr-defined,index]


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [6, 5, 4, 3, 2, 1]),
        ({"order": "oldest"}, [1, 2, 3, 4, 5, 6]),
        ({"since": "2026-03-01T02:00:00Z"}, [6, 5, 4, 3]),
        ({"until": "2026-03-01T02:00:00+00:00"}, [2, 1]),
        ({"event": ["tool:created", "tool:deleted"]}, [5, 2]),
        ({"actor_kind": "user", "actor_id": "2"}, [5, 3]),
        ({"actor_kind": "system"}, [4]),
        ({"target_kind": "tool", "target_id": "10"}, [3, 2]),
    ],
)
def test_list_events_filters(
    client: TestClient, params: dict[str, object], expected: list[int]
) -> None:
    response = client.get("/api/audit/events", params=params)

    assert response.status_code == 200
    assert _sequences(response.json()) == expected


@pytest.mark.usefixtures("stored")
def test_list_events_pages_with_cursor(client: TestClient) -> None:
    first = client.get("/api/audit/events", params={"limit": 4}).json()
    second = client.get(
        "/api/audit/events", params={"limit": 4, "after": first["next_cursor"]}
    ).json()

    assert _sequences(first) == [6, 5, 4, 3]
    assert first["next_cursor"] == 3
    assert _sequences(second) == [2, 1]
    assert second["next_cursor"] is None


def test_list_events_record_shape(client: TestClient, stored: list[AuditEvent]) -> None:
    newest = client.get("/api/audit/events", params={"limit": 1}).json()["events"][0]

    assert newest["event"] == stored[-1].value
    assert newest["actor"] == {"kind": "agent", "id": "3"}
    assert newest["target"] == {"kind": "secret", "id": "openai"}
    assert newest["client_address"] == "203.0.113.7"
    assert newest["detail"]["api_key"].startswith("hmac-sha256:")
    assert len(newest["record_hash"]) == 64


def test_list_events_finds_detail_hash(
    client: TestClient, keys: AuditKeys, stored: list[AuditEvent]
) -> None:
    response = client.get(
        "/api/audit/events", params={"detail_hash": audit_hash(PLANTED_KEY, keys)}
    )

    assert _sequences(response.json()) == [len(stored)]
    assert PLANTED_KEY not in response.text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"since": "2026-03-01T02:00:00"}, "query.since"),
        ({"since": "yesterday"}, "query.since"),
        ({"event": "tool:exploded"}, "query.event.0"),
        ({"actor_kind": "robot"}, "query.actor_kind"),
        ({"order": "random"}, "query.order"),
        ({"after": -1}, "query.after"),
        ({"target_id": "x" * 129}, "query.target_id"),
        ({"detail_hash": "hmac-sha256:" + "Z" * 64}, "detail_hash"),
        ({"unknown": "1"}, "query.unknown"),
    ],
)
def test_list_events_rejects_bad_parameter(
    client: TestClient, params: dict[str, object], field: str
) -> None:
    response = client.get("/api/audit/events", params=params)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


def test_list_events_rejects_reversed_time_range(client: TestClient) -> None:
    response = client.get(
        "/api/audit/events",
        params={"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
    )

    assert response.status_code == 422
    assert "since must be before until" in response.json()["message"]


def test_export_streams_json_lines_and_is_audited(
    client: TestClient, admin: FixtureUser, stored: list[AuditEvent]
) -> None:
    response = client.get(
        "/api/audit/export", params={"target_kind": "tool"}, headers={"User-Agent": "siem/1.0"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonl")
    lines = response.text.splitlines()
    assert [json.loads(line)["sequence"] for line in lines] == [2, 3, 5]

    exported = client.get("/api/audit/events", params={"event": "audit:exported"}).json()
    (event,) = exported["events"]
    assert event["actor"] == {"kind": "user", "id": str(admin.id)}
    assert event["user_agent"] == "siem/1.0"
    assert event["request_id"] == response.headers["x-request-id"]
    assert event["detail"]["target_kind"] == "tool"
    assert event["sequence"] == len(stored) + 1


@pytest.mark.usefixtures("stored")
def test_export_holds_no_planted_secret(client: TestClient) -> None:
    response = client.get("/api/audit/export")

    lines = response.text.splitlines()
    # The export's own audit:exported event is committed first, so it is the last line.
    assert len(lines) == len(EVENTS) + 1
    assert json.loads(lines[-1])["event"] == "audit:exported"
    assert PLANTED_KEY not in response.text
    assert "plantedRouteSecret" not in response.text


def test_export_matches_list_records(client: TestClient, stored: list[AuditEvent]) -> None:
    exported = [json.loads(line) for line in client.get("/api/audit/export").text.splitlines()]
    listed = client.get("/api/audit/events", params={"order": "oldest"}).json()["events"]

    assert exported[: len(stored)] == listed[: len(stored)]


@pytest.mark.usefixtures("stored")
def test_export_scope_alone_cannot_read_or_purge(
    anonymous_client: TestClient, make_user: MakeUser
) -> None:
    admin = make_user(role=Role.ADMIN)
    created = anonymous_client.post(
        "/api/tokens", json={"name": "siem", "scopes": ["audit:export"]}, headers=admin.headers
    )
    headers = {"Authorization": f"Bearer {created.json()['token']}"}

    assert anonymous_client.get("/api/audit/export", headers=headers).status_code == 200
    assert anonymous_client.get("/api/audit/events", headers=headers).status_code == 403
    assert anonymous_client.post("/api/audit/purge", headers=headers).status_code == 403
    assert anonymous_client.get("/api/audit/verify", headers=headers).status_code == 403


@pytest.mark.usefixtures("stored")
def test_verify_reports_intact_chain(client: TestClient) -> None:
    whole = client.get("/api/audit/verify").json()
    part = client.get("/api/audit/verify", params={"start": 2, "end": 4}).json()

    assert whole == {
        "ok": True,
        "checked": len(EVENTS),
        "first_sequence": 1,
        "last_sequence": len(EVENTS),
        "broken": None,
    }
    assert (part["ok"], part["checked"], part["first_sequence"]) == (True, 3, 2)


@pytest.mark.usefixtures("stored")
def test_verify_names_edited_record(client: TestClient, database: Database) -> None:
    execute_raw(database, "UPDATE audit_events SET actor_id = '99' WHERE sequence = 3")

    response = client.get("/api/audit/verify")

    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["broken"]["sequence"] == 3
    assert response.json()["broken"]["reason"] == "edited"


def test_verify_rejects_reversed_range(client: TestClient) -> None:
    response = client.get("/api/audit/verify", params={"start": 5, "end": 2})

    assert response.status_code == 422
    assert "start must not be after end" in response.json()["message"]


@pytest.mark.usefixtures("stored")
def test_purge_uses_retention_setting(
    app: FastAPI, client: TestClient, admin: FixtureUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A retention of two days, two days and 3.5 hours after START: the four records of the
    # first 3.5 hours go.
    app.state.settings = app.state.settings.model_copy(update={"audit_retention_days": 2})
    monkeypatch.setattr(service, "utc_now", lambda: START + timedelta(days=2, hours=3, minutes=30))

    response = client.post("/api/audit/purge")

    assert response.status_code == 200
    body = response.json()
    assert body["removed"] == 4
    assert body["first_sequence"] == 5
    assert body["retention_days"] == 2
    monkeypatch.undo()
    assert client.get("/api/audit/verify").json()["ok"] is True
    purged = client.get("/api/audit/events", params={"event": "audit:purged"}).json()["events"]
    assert purged[0]["actor"] == {"kind": "user", "id": str(admin.id)}
    assert purged[0]["detail"]["removed"] == 4


@pytest.mark.usefixtures("stored")
def test_purge_ignores_days_from_client(client: TestClient) -> None:
    # The records are less than a year old, so the default retention keeps all of them.
    response = client.post("/api/audit/purge", json={"days": 1})

    assert response.status_code == 200
    assert response.json()["removed"] == 0
    assert response.json()["retention_days"] == 365
    assert client.get("/api/audit/verify").json()["first_sequence"] == 1


@pytest.mark.usefixtures("stored")
def test_purge_refuses_broken_chain(
    app: FastAPI, client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"audit_retention_days": 1})
    execute_raw(database, "UPDATE audit_events SET detail = '{}' WHERE sequence = 2")
    monkeypatch.setattr(service, "utc_now", lambda: START + timedelta(days=30))

    response = client.post("/api/audit/purge")

    assert response.status_code == 409
    assert "refusing to purge a broken chain" in response.json()["message"]
    monkeypatch.undo()
    assert (
        client.get("/api/audit/events", params={"order": "oldest"}).json()["events"][0]["sequence"]
        == 1
    )
