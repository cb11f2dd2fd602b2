"""Tool versions over HTTP: history, snapshots, diff, restore and clone."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from llero.forge.models import Tool, ToolStatus
from llero.storage.db import Database
from tests.forge.tool_helpers import count_rows, create_category, create_tool, tool_body

CITY = {"name": "city", "type": "string", "required": True, "max_length": 100}
UNIT = {"name": "unit", "type": "enum", "enum": ["celsius", "fahrenheit"]}
DAYS = {"name": "days", "type": "integer", "minimum": 1, "maximum": 14}


def update(client: TestClient, tool_id: int, **changes: Any) -> dict[str, Any]:
    response = client.put(f"/api/tools/{tool_id}", json=changes)
    assert response.status_code == 200, response.text
    updated: dict[str, Any] = response.json()
    return updated


def versions(client: TestClient, tool_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/api/tools/{tool_id}/versions")
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()
    return listed


def test_versions_list_every_state_newest_first(client: TestClient) -> None:
    tool = create_tool(client)
    update(client, tool["id"], description="Second.")
    update(client, tool["id"], status="active")

    listed = versions(client, tool["id"])

    assert [item["version"] for item in listed] == [3, 2, 1]
    assert [item["change"] for item in listed] == ["updated", "updated", "created"]


def test_version_snapshot_keeps_the_prior_state(client: TestClient) -> None:
    tool = create_tool(client)
    update(client, tool["id"], description="Second.", parameters=[CITY])

    response = client.get(f"/api/tools/{tool['id']}/versions/1")

    assert response.status_code == 200
    snapshot = response.json()["snapshot"]
    assert snapshot["description"] == "Current weather for a city."
    assert [parameter["name"] for parameter in snapshot["parameters"]] == ["city", "unit"]
    assert snapshot["status"] == "draft"
    assert response.json()["version"] == 1


def test_unknown_version_is_not_found(client: TestClient) -> None:
    tool = create_tool(client)

    response = client.get(f"/api/tools/{tool['id']}/versions/2")

    assert response.status_code == 404
    assert response.json()["message"] == f"version 2 of tool {tool['id']} not found"


def test_versions_page_with_limit_and_offset(client: TestClient) -> None:
    tool = create_tool(client)
    for index in range(4):
        update(client, tool["id"], description=f"Text {index}.")

    response = client.get(f"/api/tools/{tool['id']}/versions", params={"limit": 2, "offset": 1})

    assert [item["version"] for item in response.json()] == [4, 3]


def test_diff_lists_fields_and_parameters(client: TestClient) -> None:
    tool = create_tool(client)
    changed_city = {**CITY, "max_length": 50}
    update(
        client,
        tool["id"],
        description="Weather and forecast.",
        status="active",
        parameters=[DAYS, changed_city],
    )

    response = client.get(f"/api/tools/{tool['id']}/diff", params={"from": 1, "to": 2})

    assert response.status_code == 200
    diff = response.json()
    assert diff["from_version"] == 1
    assert diff["to_version"] == 2
    assert diff["fields"] == [
        {
            "field": "description",
            "before": "Current weather for a city.",
            "after": "Weather and forecast.",
        },
        {"field": "status", "before": "draft", "after": "active"},
    ]
    assert [item["name"] for item in diff["parameters_added"]] == ["days"]
    assert diff["parameters_added"][0]["before"] is None
    assert diff["parameters_added"][0]["after"]["maximum"] == 14
    assert [item["name"] for item in diff["parameters_removed"]] == ["unit"]
    assert diff["parameters_removed"][0]["after"] is None
    assert diff["parameters_changed"] == [
        {"name": "city", "before": CITY, "after": changed_city, "fields": ["max_length"]}
    ]
    assert diff["parameters_reordered"] is False


def test_diff_of_reordered_parameters_reports_order(client: TestClient) -> None:
    tool = create_tool(client)
    update(client, tool["id"], parameters=[UNIT, CITY])

    diff = client.get(f"/api/tools/{tool['id']}/diff", params={"from": 1, "to": 2}).json()

    assert diff["parameters_reordered"] is True
    assert diff["parameters_changed"] == []
    assert diff["fields"] == []


def test_diff_backwards_swaps_before_and_after(client: TestClient) -> None:
    tool = create_tool(client)
    update(client, tool["id"], name="get_forecast")

    diff = client.get(f"/api/tools/{tool['id']}/diff", params={"from": 2, "to": 1}).json()

    assert diff["fields"] == [{"field": "name", "before": "get_forecast", "after": "get_weather"}]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"from": 1, "to": 9}, 404),
        ({"from": 1}, 422),
        ({"from": 0, "to": 1}, 422),
        ({"from": "one", "to": 1}, 422),
    ],
)
def test_diff_with_invalid_versions_is_rejected(
    client: TestClient, params: dict[str, Any], status: int
) -> None:
    tool = create_tool(client)

    response = client.get(f"/api/tools/{tool['id']}/diff", params=params)

    assert response.status_code == status


def test_restore_creates_new_version_equal_to_old(client: TestClient) -> None:
    tool = create_tool(client)
    update(client, tool["id"], description="Broken.", parameters=[DAYS])

    response = client.post(f"/api/tools/{tool['id']}/versions/1/restore")

    assert response.status_code == 200
    restored = response.json()
    assert restored["version"] == 3
    assert restored["description"] == tool["description"]
    assert restored["parameters"] == tool["parameters"]
    assert versions(client, tool["id"])[0]["change"] == "restored from version 1"
    first = client.get(f"/api/tools/{tool['id']}/versions/1").json()["snapshot"]
    third = client.get(f"/api/tools/{tool['id']}/versions/3").json()["snapshot"]
    assert third == first
    diff = client.get(f"/api/tools/{tool['id']}/diff", params={"from": 1, "to": 3}).json()
    assert diff["fields"] == []
    assert diff["parameters_changed"] == []


def test_restore_of_current_state_writes_nothing(client: TestClient, database: Database) -> None:
    tool = create_tool(client)
    before = count_rows(database)

    response = client.post(f"/api/tools/{tool['id']}/versions/1/restore")

    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert count_rows(database) == before


def test_restore_to_name_taken_since_conflicts(client: TestClient) -> None:
    tool = create_tool(client)
    update(client, tool["id"], name="get_forecast")
    create_tool(client, "get_weather")

    response = client.post(f"/api/tools/{tool['id']}/versions/1/restore")

    assert response.status_code == 409
    assert response.json()["message"] == "a tool named get_weather already exists"
    assert client.get(f"/api/tools/{tool['id']}").json()["version"] == 2


def test_restore_into_deleted_category_is_refused(client: TestClient) -> None:
    category = create_category(client)
    tool = create_tool(client, category_id=category["id"])
    update(client, tool["id"], category_id=None)
    assert client.delete(f"/api/categories/{category['id']}").status_code == 204

    response = client.post(f"/api/tools/{tool['id']}/versions/1/restore")

    assert response.status_code == 409
    assert response.json()["error"] == "refused"
    assert "no longer exists" in response.json()["message"]


def test_restore_unknown_version_is_not_found(client: TestClient) -> None:
    tool = create_tool(client)

    response = client.post(f"/api/tools/{tool['id']}/versions/7/restore")

    assert response.status_code == 404


def test_clone_starts_new_tool_at_version_one(client: TestClient) -> None:
    category = create_category(client)
    source = create_tool(client, category_id=category["id"], status="active")
    update(client, source["id"], description="Second.")

    response = client.post(f"/api/tools/{source['id']}/clone", json={"name": "get_weather_v2"})

    assert response.status_code == 201
    clone = response.json()
    assert clone["id"] != source["id"]
    assert clone["name"] == "get_weather_v2"
    assert clone["version"] == 1
    assert clone["status"] == "draft"
    assert clone["category_id"] == category["id"]
    assert clone["description"] == "Second."
    assert clone["parameters"] == source["parameters"]
    assert versions(client, clone["id"]) == [
        {
            "version": 1,
            "change": f"cloned from tool {source['id']} (get_weather) version 2",
            "created_at": clone["created_at"],
        }
    ]
    assert client.get(f"/api/tools/{source['id']}").json()["version"] == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "get_weather"}, 409),
        ({"name": "<script>x</script>"}, 422),
        ({"name": "copy", "version": 1}, 422),
        ({}, 422),
    ],
)
def test_clone_with_invalid_name_is_rejected(
    client: TestClient, database: Database, body: dict[str, Any], status: int
) -> None:
    source = create_tool(client)
    before = count_rows(database)

    response = client.post(f"/api/tools/{source['id']}/clone", json=body)

    assert response.status_code == status
    assert "<script>" not in response.text
    assert count_rows(database) == before


def test_update_of_tool_stored_without_snapshot_keeps_its_state(
    client: TestClient, database: Database
) -> None:
    # Rows written outside the service, as the list benchmark does, have no version row.
    with database.transaction() as session:
        tool = Tool(name="bare", description="Stored directly.", status=ToolStatus.ACTIVE)
        session.add(tool)
        session.flush()
        tool_id = tool.id

    update(client, tool_id, description="Changed.")

    listed = versions(client, tool_id)
    assert [item["version"] for item in listed] == [2, 1]
    first = client.get(f"/api/tools/{tool_id}/versions/1").json()["snapshot"]
    assert first["description"] == "Stored directly."


def test_parameters_are_stored_as_sent(client: TestClient) -> None:
    tool = create_tool(client)

    snapshot = client.get(f"/api/tools/{tool['id']}/versions/1").json()["snapshot"]

    assert tool["parameters"] == tool_body()["parameters"]
    assert snapshot["parameters"] == tool_body()["parameters"]
