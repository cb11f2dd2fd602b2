"""Ownership and sharing of tools over HTTP: who sees, changes and shares which tool."""

import pytest
from sqlalchemy import func, select

from llero.audit.events import AuditEvent
from llero.forge.models import Tool
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
from tests.forge.tool_helpers import create_category, tool_body

__all__ = ["cast"]

# Every route that names one tool, with a body that would be valid for a visible tool.
TOOL_ROUTES = [
    ("GET", "/api/tools/{id}", None),
    ("PUT", "/api/tools/{id}", {"description": "changed"}),
    ("DELETE", "/api/tools/{id}", None),
    ("GET", "/api/tools/{id}/schema", None),
    ("GET", "/api/tools/{id}/export", None),
    ("POST", "/api/tools/{id}/test", {"arguments": {"city": "Oslo"}}),
    ("POST", "/api/tools/{id}/clone", {"name": "copied"}),
    ("GET", "/api/tools/{id}/versions", None),
    ("GET", "/api/tools/{id}/versions/1", None),
    ("GET", "/api/tools/{id}/diff?from=1&to=1", None),
    ("POST", "/api/tools/{id}/versions/1/restore", None),
    ("GET", "/api/tools/{id}/shares", None),
    ("POST", "/api/tools/{id}/shares", {"everyone": True}),
    ("DELETE", "/api/tools/{id}/shares/1", None),
    ("GET", "/api/tools/{id}/runner", None),
    ("PUT", "/api/tools/{id}/runner", {"mode": "client"}),
]


@pytest.mark.parametrize(("method", "path", "body"), TOOL_ROUTES)
def test_private_tool_answers_like_missing_id(
    cast: Cast, method: str, path: str, body: object
) -> None:
    private = create_tool(cast.alice, "alice_private")["id"]

    guessed = cast.bob.client.request(method, path.format(id=private), json=body)
    missing = cast.bob.client.request(method, path.format(id=MISSING_ID), json=body)

    assert guessed.status_code == 404
    assert comparable(guessed, private) == comparable(missing, MISSING_ID)


def test_private_tool_unchanged_after_guesses(cast: Cast) -> None:
    private = create_tool(cast.alice, "alice_private")
    for method, path, body in TOOL_ROUTES:
        cast.bob.client.request(method, path.format(id=private["id"]), json=body)

    after = cast.alice.client.get(f"/api/tools/{private['id']}").json()

    assert after == private
    assert cast.alice.client.get(f"/api/tools/{private['id']}/shares").json() == []


def test_list_and_search_show_only_visible_tools(cast: Cast) -> None:
    create_tool(cast.alice, "alice_weather")
    create_tool(cast.bob, "bob_weather")

    listed = cast.bob.client.get("/api/tools").json()
    searched = cast.bob.client.get("/api/tools?search=alice").json()

    assert [item["name"] for item in listed["items"]] == ["bob_weather"]
    assert listed["total"] == 1
    assert searched == {"items": [], "total": 0, "limit": 50, "offset": 0}


def test_viewer_sees_nothing_unshared(cast: Cast) -> None:
    create_tool(cast.alice, "alice_weather")

    assert cast.viewer.client.get("/api/tools").json()["total"] == 0
    assert cast.viewer.client.get("/api/tools/export").json() == []


def test_export_leaves_out_invisible_ids(cast: Cast) -> None:
    mine = create_tool(cast.bob, "bob_weather")["id"]
    private = create_tool(cast.alice, "alice_weather")["id"]

    exported = cast.bob.client.get(f"/api/tools/export?ids={mine}&ids={private}").json()

    assert [item["function"]["name"] for item in exported] == ["bob_weather"]


def test_category_counts_only_visible_tools(cast: Cast) -> None:
    category = create_category(cast.admin.client)
    create_tool(cast.alice, "alice_weather", category_id=category["id"])

    seen_by_bob = cast.bob.client.get(f"/api/categories/{category['id']}").json()
    listed_by_bob = cast.bob.client.get("/api/categories").json()
    seen_by_alice = cast.alice.client.get(f"/api/categories/{category['id']}").json()

    assert seen_by_bob["tool_count"] == 0
    assert listed_by_bob[0]["tool_count"] == 0
    assert seen_by_alice["tool_count"] == 1


def test_admin_sees_and_changes_every_tool(cast: Cast) -> None:
    private = create_tool(cast.alice, "alice_weather")["id"]

    listed = cast.admin.client.get("/api/tools").json()
    changed = cast.admin.client.put(f"/api/tools/{private}", json={"description": "by admin"})

    assert [item["name"] for item in listed["items"]] == ["alice_weather"]
    assert changed.status_code == 200
    assert changed.json()["owner_user_id"] == cast.alice.id


def test_tool_records_creator_as_owner(cast: Cast) -> None:
    created = create_tool(cast.alice, "alice_weather")

    assert created["owner_user_id"] == cast.alice.id
    listed = cast.alice.client.get("/api/tools").json()["items"]
    assert listed[0]["owner_user_id"] == cast.alice.id


@pytest.mark.parametrize("field", ["owner_user_id", "owner", "shared_with"])
def test_owner_field_in_body_rejected(cast: Cast, field: str) -> None:
    created = cast.bob.client.post("/api/tools", json=tool_body("bob_tool", **{field: 1}))
    private = create_tool(cast.alice, "alice_weather")["id"]
    updated = cast.alice.client.put(f"/api/tools/{private}", json={field: cast.bob.id})

    assert created.status_code == 422
    assert updated.status_code == 422
    assert f"body.{field}" in [item["field"] for item in created.json()["details"]]
    assert cast.alice.client.get(f"/api/tools/{private}").json()["owner_user_id"] == cast.alice.id


def test_share_with_user_grants_read_only(cast: Cast) -> None:
    tool = create_tool(cast.alice, "alice_weather")
    path = f"/api/tools/{tool['id']}"

    shared = share(cast.alice, path, user_id=cast.bob.id)

    assert shared.status_code == 201
    assert shared.json()["user_id"] == cast.bob.id
    assert cast.bob.client.get(path).status_code == 200
    assert cast.bob.client.get("/api/tools").json()["total"] == 1
    tested = cast.bob.client.post(f"{path}/test", json={"arguments": {"city": "Oslo"}})
    assert tested.json()["ok"] is True
    changed = cast.bob.client.put(path, json={"description": "by bob"})
    assert changed.status_code == 403
    assert changed.json()["error"] == "forbidden"
    assert cast.bob.client.delete(path).status_code == 403
    assert cast.bob.client.post(f"{path}/versions/1/restore").status_code == 403
    assert share(cast.bob, path, user_id=cast.viewer.id).status_code == 403
    assert cast.bob.client.get(f"{path}/shares").status_code == 403
    assert cast.alice.client.get(path).json()["description"] == tool["description"]


def test_share_reaches_only_named_user(cast: Cast) -> None:
    tool = create_tool(cast.alice, "alice_weather")
    share(cast.alice, f"/api/tools/{tool['id']}", user_id=cast.bob.id)

    assert cast.viewer.client.get(f"/api/tools/{tool['id']}").status_code == 404


def test_share_with_everyone_reaches_viewer(cast: Cast) -> None:
    tool = create_tool(cast.alice, "alice_weather")
    path = f"/api/tools/{tool['id']}"

    assert share(cast.alice, path, everyone=True).status_code == 201

    assert cast.viewer.client.get(path).status_code == 200
    assert cast.bob.client.get("/api/tools?search=alice").json()["total"] == 1
    assert cast.viewer.client.put(path, json={"description": "x"}).status_code == 403
    assert cast.alice.client.get(path).json()["description"] == tool["description"]


def test_unshare_hides_tool_again(cast: Cast) -> None:
    tool = create_tool(cast.alice, "alice_weather")
    path = f"/api/tools/{tool['id']}"
    share_id = share(cast.alice, path, user_id=cast.bob.id).json()["id"]

    removed = cast.alice.client.delete(f"{path}/shares/{share_id}")

    assert removed.status_code == 204
    assert cast.bob.client.get(path).status_code == 404
    assert cast.bob.client.get("/api/tools").json()["total"] == 0
    assert cast.alice.client.delete(f"{path}/shares/{share_id}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"everyone": True, "user_id": 1}, "body"),
        ({"everyone": "yes"}, "body.everyone"),
        ({"user_id": MISSING_ID}, "user_id"),
    ],
)
def test_share_body_rejected(cast: Cast, body: dict[str, object], field: str) -> None:
    tool = create_tool(cast.alice, "alice_weather")

    response = share(cast.alice, f"/api/tools/{tool['id']}", **body)

    assert response.status_code == 422
    assert field in [item["field"] for item in response.json()["details"]]


def test_share_with_owner_rejected(cast: Cast) -> None:
    tool = create_tool(cast.alice, "alice_weather")

    response = share(cast.alice, f"/api/tools/{tool['id']}", user_id=cast.alice.id)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "user_id"


@pytest.mark.parametrize("target", [{"everyone": True}, {"user_id": "bob"}])
def test_repeated_share_conflicts(cast: Cast, target: dict[str, object]) -> None:
    tool = create_tool(cast.alice, "alice_weather")
    body = {"user_id": cast.bob.id} if target.get("user_id") == "bob" else target
    path = f"/api/tools/{tool['id']}"

    assert share(cast.alice, path, **body).status_code == 201
    repeated = share(cast.alice, path, **body)

    assert repeated.status_code == 409
    assert len(cast.alice.client.get(f"{path}/shares").json()) == 1


def test_admin_shares_any_tool(cast: Cast) -> None:
    tool = create_tool(cast.alice, "alice_weather")

    shared = share(cast.admin, f"/api/tools/{tool['id']}", user_id=cast.bob.id)

    assert shared.status_code == 201
    assert cast.bob.client.get(f"/api/tools/{tool['id']}").status_code == 200


def test_clone_of_shared_tool_is_private_to_cloner(cast: Cast) -> None:
    tool = create_tool(cast.alice, "alice_weather", status="active")
    share(cast.alice, f"/api/tools/{tool['id']}", everyone=True)

    cloned = cast.bob.client.post(f"/api/tools/{tool['id']}/clone", json={"name": "bob_copy"})

    assert cloned.status_code == 201
    copy = cloned.json()
    assert copy["owner_user_id"] == cast.bob.id
    assert copy["status"] == "draft"
    assert cast.alice.client.get(f"/api/tools/{copy['id']}").status_code == 404
    assert cast.viewer.client.get(f"/api/tools/{copy['id']}").status_code == 404
    assert cast.bob.client.put(f"/api/tools/{copy['id']}", json={"description": "mine"}).is_success


def test_import_does_not_touch_invisible_tool(cast: Cast, database: Database) -> None:
    private = create_tool(cast.alice, "get_weather")
    spec = {"name": "get_weather", "description": "Other", "parameters": {"type": "object"}}

    response = cast.bob.client.post(
        "/api/tools/import?on_conflict=new_version&format=openai",
        json={"type": "function", "function": spec},
    )

    assert response.status_code == 409
    refused = response.json()["details"]
    assert len(refused) == 1
    assert str(private["id"]) not in refused[0]["problem"]
    assert refused[0]["problem"] == "the name get_weather is already taken"
    assert cast.alice.client.get(f"/api/tools/{private['id']}").json()["version"] == 1


def test_import_new_version_of_shared_tool_refused(cast: Cast) -> None:
    tool = create_tool(cast.alice, "get_weather")
    share(cast.alice, f"/api/tools/{tool['id']}", user_id=cast.bob.id)
    spec = {"name": "get_weather", "description": "Other", "parameters": {"type": "object"}}

    response = cast.bob.client.post(
        "/api/tools/import?on_conflict=new_version&format=openai",
        json={"type": "function", "function": spec},
    )

    assert response.status_code == 409
    assert "only its owner can change" in response.json()["details"][0]["problem"]
    assert cast.alice.client.get(f"/api/tools/{tool['id']}").json()["version"] == 1


def test_imported_tools_belong_to_importer(cast: Cast) -> None:
    spec = {"name": "lookup", "description": "Find", "parameters": {"type": "object"}}

    response = cast.bob.client.post(
        "/api/tools/import?format=openai", json={"type": "function", "function": spec}
    )

    assert response.status_code == 200
    tool_id = response.json()["imported"][0]["tool_id"]
    assert cast.bob.client.get(f"/api/tools/{tool_id}").json()["owner_user_id"] == cast.bob.id
    assert cast.alice.client.get(f"/api/tools/{tool_id}").status_code == 404


def test_toolkit_rejects_invisible_tool_like_missing(cast: Cast) -> None:
    private = create_tool(cast.alice, "alice_weather", status="active")["id"]
    agent = create_agent(cast.bob, "bob_agent")

    guessed = cast.bob.client.put(
        f"/api/agents/{agent['id']}/toolkit", json={"tool_ids": [private]}
    )
    added = cast.bob.client.put(f"/api/agents/{agent['id']}/toolkit/{private}")
    created = cast.bob.client.post(
        "/api/agents",
        json={"name": "other", "provider": "openai", "model": "m", "tool_ids": [private]},
    )

    for response in (guessed, added, created):
        assert response.status_code == 409, response.text
        assert "unknown" in response.json()["message"]


def test_shared_tool_usable_in_toolkit_then_unshare_refused(cast: Cast) -> None:
    tool = create_tool(cast.alice, "alice_weather", status="active")
    path = f"/api/tools/{tool['id']}"
    share_id = share(cast.alice, path, user_id=cast.bob.id).json()["id"]
    agent = create_agent(cast.bob, "bob_agent", tool_ids=[tool["id"]])

    refused = cast.alice.client.delete(f"{path}/shares/{share_id}")

    assert agent["toolkit"][0]["id"] == tool["id"]
    assert refused.status_code == 409
    message = refused.json()["message"]
    assert "1 agent that you cannot see" in message
    assert "bob_agent" not in message
    assert cast.bob.client.get(path).status_code == 200


def test_admin_edits_toolkit_with_owners_visibility(cast: Cast) -> None:
    private = create_tool(cast.alice, "alice_weather", status="active")["id"]
    agent = create_agent(cast.bob, "bob_agent")

    response = cast.admin.client.put(
        f"/api/agents/{agent['id']}/toolkit", json={"tool_ids": [private]}
    )

    assert response.status_code == 409
    assert f"{private} (unknown)" in response.json()["message"]


def test_tool_events_name_actor_and_target(cast: Cast, database: Database) -> None:
    tool = create_tool(cast.alice, "alice_weather")
    path = f"/api/tools/{tool['id']}"
    cast.alice.client.put(path, json={"description": "changed"})
    share_id = share(cast.alice, path, user_id=cast.bob.id).json()["id"]
    cast.alice.client.delete(f"{path}/shares/{share_id}")
    cast.alice.client.get(f"{path}/export")
    cast.admin.client.delete(path)

    expected = [
        (AuditEvent.TOOL_CREATED, cast.alice.id),
        (AuditEvent.TOOL_UPDATED, cast.alice.id),
        (AuditEvent.TOOL_SHARED, cast.alice.id),
        (AuditEvent.TOOL_UNSHARED, cast.alice.id),
        (AuditEvent.TOOL_EXPORTED, cast.alice.id),
        (AuditEvent.TOOL_DELETED, cast.admin.id),
    ]
    for event, actor in expected:
        (record,) = audit_records(database, event)
        assert (record.actor_kind, record.actor_id) == ("user", str(actor)), event
        assert (record.target_kind, record.target_id) == ("tool", str(tool["id"])), event
        assert record.request_id, event
    shared = audit_records(database, AuditEvent.TOOL_SHARED)[0].detail_data()
    assert shared == {"share_id": share_id, "user_id": cast.bob.id}
    updated = audit_records(database, AuditEvent.TOOL_UPDATED)[0].detail_data()
    assert updated["fields"] == ["description"]


def test_denied_guess_writes_no_audit_record(cast: Cast, database: Database) -> None:
    private = create_tool(cast.alice, "alice_weather")["id"]

    cast.bob.client.put(f"/api/tools/{private}", json={"description": "x"})
    cast.bob.client.delete(f"/api/tools/{private}")

    assert audit_records(database, AuditEvent.TOOL_UPDATED) == []
    assert audit_records(database, AuditEvent.TOOL_DELETED) == []


def test_failed_audit_record_rolls_back_tool(
    cast: Cast, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_record(*args: object, **kwargs: object) -> int:
        raise RuntimeError("audit insert failed")

    monkeypatch.setattr("llero.audit.service.record", broken_record)

    response = cast.alice.client.post("/api/tools", json=tool_body("alice_weather"))

    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == "internal_error"
    with database.reader() as session:
        assert session.scalar(select(func.count()).select_from(Tool)) == 0
