"""Ownership and sharing of agents over HTTP: who sees, uses, changes and shares which agent."""

import pytest

from llero.audit.events import AuditEvent
from llero.storage.db import Database
from tests.access.helpers import (
    MISSING_ID,
    Cast,
    audit_records,
    cast,
    comparable,
    create_agent,
    create_tool,
    share,
)

__all__ = ["cast"]

# Every agent route a developer may call, with a body that would be valid for a visible agent.
AGENT_ROUTES = [
    ("GET", "/api/agents/{id}", None),
    ("PUT", "/api/agents/{id}", {"description": "changed"}),
    ("DELETE", "/api/agents/{id}", None),
    ("PUT", "/api/agents/{id}/toolkit", {"tool_ids": []}),
    ("PUT", "/api/agents/{id}/toolkit/{tool}", None),
    ("DELETE", "/api/agents/{id}/toolkit/{tool}", None),
    ("GET", "/api/agents/{id}/shares", None),
    ("POST", "/api/agents/{id}/shares", {"everyone": True}),
    ("DELETE", "/api/agents/{id}/shares/1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), AGENT_ROUTES)
def test_private_agent_answers_like_missing_id(
    cast: Cast, method: str, path: str, body: object
) -> None:
    tool = create_tool(cast.bob, "bob_tool", status="active")["id"]
    private = create_agent(cast.alice, "alice_agent")["id"]

    guessed = cast.bob.client.request(method, path.format(id=private, tool=tool), json=body)
    missing = cast.bob.client.request(method, path.format(id=MISSING_ID, tool=tool), json=body)

    assert guessed.status_code == 404
    assert comparable(guessed, private) == comparable(missing, MISSING_ID)


def test_admin_status_route_sees_every_agent(cast: Cast) -> None:
    agent = create_agent(cast.alice, "alice_agent")

    response = cast.admin.client.put(
        f"/api/agents/{agent['id']}/status", json={"status": "disabled"}
    )

    assert response.status_code == 200
    assert response.json()["owner_user_id"] == cast.alice.id


def test_agent_list_shows_only_visible_agents(cast: Cast) -> None:
    create_agent(cast.alice, "alice_agent")
    create_agent(cast.bob, "bob_agent")

    bobs = cast.bob.client.get("/api/agents").json()
    searched = cast.bob.client.get("/api/agents?search=alice").json()
    admins = cast.admin.client.get("/api/agents").json()

    assert [item["name"] for item in bobs["items"]] == ["bob_agent"]
    assert bobs["total"] == 1
    assert searched["total"] == 0
    assert searched["items"] == []
    assert admins["total"] == 2
    assert cast.viewer.client.get("/api/agents").json()["total"] == 0


@pytest.mark.parametrize("field", ["owner_user_id", "shared_with"])
def test_agent_owner_field_rejected(cast: Cast, field: str) -> None:
    body = {"name": "a", "provider": "openai", "model": "m", field: cast.bob.id}
    created = cast.alice.client.post("/api/agents", json=body)
    agent = create_agent(cast.alice, "alice_agent")
    updated = cast.alice.client.put(f"/api/agents/{agent['id']}", json={field: cast.bob.id})

    assert created.status_code == 422
    assert updated.status_code == 422
    assert agent["owner_user_id"] == cast.alice.id


def test_agent_share_grants_read_not_change(cast: Cast) -> None:
    agent = create_agent(cast.alice, "alice_agent")
    path = f"/api/agents/{agent['id']}"

    shared = share(cast.alice, path, user_id=cast.bob.id)

    assert shared.status_code == 201
    assert cast.bob.client.get(path).status_code == 200
    assert cast.bob.client.get("/api/agents").json()["total"] == 1
    changed = cast.bob.client.put(path, json={"description": "by bob"})
    assert changed.status_code == 403
    assert changed.json()["error"] == "forbidden"
    assert cast.bob.client.delete(path).status_code == 403
    assert cast.bob.client.put(f"{path}/toolkit", json={"tool_ids": []}).status_code == 403
    assert share(cast.bob, path, everyone=True).status_code == 403
    assert cast.viewer.client.get(path).status_code == 404


def test_agent_shared_with_everyone_reaches_viewer(cast: Cast) -> None:
    agent = create_agent(cast.alice, "alice_agent")
    path = f"/api/agents/{agent['id']}"
    share(cast.alice, path, everyone=True)

    assert cast.viewer.client.get(path).status_code == 200
    assert cast.viewer.client.put(path, json={"description": "x"}).status_code == 403


def test_agent_unshare_hides_it_again(cast: Cast) -> None:
    agent = create_agent(cast.alice, "alice_agent")
    path = f"/api/agents/{agent['id']}"
    share_id = share(cast.alice, path, user_id=cast.bob.id).json()["id"]

    listed = cast.alice.client.get(f"{path}/shares").json()
    removed = cast.alice.client.delete(f"{path}/shares/{share_id}")

    assert [item["user_id"] for item in listed] == [cast.bob.id]
    assert removed.status_code == 204
    assert cast.bob.client.get(path).status_code == 404
    assert cast.bob.client.get("/api/agents").json()["total"] == 0


def test_agent_events_name_actor_and_target(cast: Cast, database: Database) -> None:
    tool = create_tool(cast.alice, "alice_tool", status="active")
    agent = create_agent(cast.alice, "alice_agent")
    path = f"/api/agents/{agent['id']}"
    cast.alice.client.put(path, json={"model": "gpt-5"})
    cast.alice.client.put(f"{path}/toolkit/{tool['id']}")
    share_id = share(cast.alice, path, everyone=True).json()["id"]
    cast.alice.client.delete(f"{path}/shares/{share_id}")
    cast.admin.client.post(f"{path}/quarantine", json={"reason": "suspected leak"})
    cast.admin.client.delete(path)

    expected = [
        (AuditEvent.AGENT_CREATED, cast.alice.id, 1),
        (AuditEvent.AGENT_UPDATED, cast.alice.id, 2),
        (AuditEvent.AGENT_SHARED, cast.alice.id, 1),
        (AuditEvent.AGENT_UNSHARED, cast.alice.id, 1),
        (AuditEvent.AGENT_QUARANTINED, cast.admin.id, 1),
        (AuditEvent.AGENT_DELETED, cast.admin.id, 1),
    ]
    for event, actor, count in expected:
        records = audit_records(database, event)
        assert len(records) == count, event
        for record in records:
            assert (record.actor_kind, record.actor_id) == ("user", str(actor)), event
            assert (record.target_kind, record.target_id) == ("agent", str(agent["id"])), event
    toolkit = audit_records(database, AuditEvent.AGENT_UPDATED)[1].detail_data()
    assert toolkit == {"fields": ["toolkit"], "tool_ids": [tool["id"]]}
    shared = audit_records(database, AuditEvent.AGENT_SHARED)[0].detail_data()
    assert shared == {"share_id": share_id, "everyone": True}
