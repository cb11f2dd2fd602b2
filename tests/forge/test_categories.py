"""Categories over HTTP: create, list, rename and delete."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from llero.storage.db import Database
from tests.forge.tool_helpers import count_rows, create_category, create_tool


def test_create_category_returns_it_without_tools(client: TestClient) -> None:
    response = client.post(
        "/api/categories", json={"name": "Weather", "description": "Forecasts and radar."}
    )

    assert response.status_code == 201
    category = response.json()
    assert category["name"] == "Weather"
    assert category["description"] == "Forecasts and radar."
    assert category["tool_count"] == 0


def test_list_categories_sorted_with_tool_counts(client: TestClient) -> None:
    weather = create_category(client, "Weather")
    create_category(client, "Finance")
    create_tool(client, "forecast", category_id=weather["id"])
    create_tool(client, "radar", category_id=weather["id"])
    create_tool(client, "uncategorised")

    response = client.get("/api/categories")

    assert response.status_code == 200
    assert [(item["name"], item["tool_count"]) for item in response.json()] == [
        ("Finance", 0),
        ("Weather", 2),
    ]


def test_get_category_counts_its_tools(client: TestClient) -> None:
    weather = create_category(client)
    create_tool(client, category_id=weather["id"])

    response = client.get(f"/api/categories/{weather['id']}")

    assert response.status_code == 200
    assert response.json()["tool_count"] == 1


def test_create_category_with_taken_name_conflicts(client: TestClient) -> None:
    create_category(client, "Weather")

    response = client.post("/api/categories", json={"name": "Weather"})

    assert response.status_code == 409
    assert response.json()["message"] == "a category named Weather already exists"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "<script>alert(1)</script>"}, "body.name"),
        ({"name": ""}, "body.name"),
        ({"name": " leading space"}, "body.name"),
        ({"name": "x" * 65}, "body.name"),
        ({"name": "ok", "description": "d" * 4097}, "body.description"),
        ({"name": "ok", "color": "red"}, "body.color"),
        ({"name": 5}, "body.name"),
    ],
)
def test_create_category_with_invalid_body_is_rejected(
    client: TestClient, database: Database, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/categories", json=body)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field
    assert "<script>" not in response.text
    assert count_rows(database)["categories"] == 0


def test_rename_category_keeps_its_tools(client: TestClient) -> None:
    weather = create_category(client, "Weather")
    tool = create_tool(client, category_id=weather["id"])

    response = client.put(f"/api/categories/{weather['id']}", json={"name": "Meteorology"})

    assert response.status_code == 200
    assert response.json()["name"] == "Meteorology"
    assert response.json()["tool_count"] == 1
    assert client.get(f"/api/tools/{tool['id']}").json()["category"] == "Meteorology"


def test_rename_category_to_taken_name_conflicts(client: TestClient) -> None:
    create_category(client, "Weather")
    finance = create_category(client, "Finance")

    response = client.put(f"/api/categories/{finance['id']}", json={"name": "Weather"})

    assert response.status_code == 409
    assert client.get(f"/api/categories/{finance['id']}").json()["name"] == "Finance"


def test_update_category_description_only(client: TestClient) -> None:
    weather = create_category(client, "Weather")

    response = client.put(f"/api/categories/{weather['id']}", json={"description": "Skies."})

    assert response.status_code == 200
    assert response.json()["name"] == "Weather"
    assert response.json()["description"] == "Skies."


def test_delete_unused_category(client: TestClient) -> None:
    weather = create_category(client)

    response = client.delete(f"/api/categories/{weather['id']}")

    assert response.status_code == 204
    assert client.get(f"/api/categories/{weather['id']}").status_code == 404


def test_delete_category_in_use_is_refused(client: TestClient, database: Database) -> None:
    weather = create_category(client)
    create_tool(client, "forecast", category_id=weather["id"])
    create_tool(client, "radar", category_id=weather["id"])

    response = client.delete(f"/api/categories/{weather['id']}")

    assert response.status_code == 409
    assert response.json()["error"] == "refused"
    assert response.json()["message"] == (
        "category Weather is used by 2 tools; "
        "move them to another category or clear their category first"
    )
    assert count_rows(database)["categories"] == 1


def test_delete_category_after_its_tools_move(client: TestClient) -> None:
    weather = create_category(client)
    tool = create_tool(client, category_id=weather["id"])
    client.put(f"/api/tools/{tool['id']}", json={"category_id": None})

    response = client.delete(f"/api/categories/{weather['id']}")

    assert response.status_code == 204


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_unknown_category_is_not_found(client: TestClient, method: str) -> None:
    kwargs: dict[str, Any] = {"json": {"name": "New"}} if method == "put" else {}

    response = client.request(method.upper(), "/api/categories/4242", **kwargs)

    assert response.status_code == 404
    assert response.json()["message"] == "category 4242 not found"


@pytest.mark.parametrize("field", ["name", "description"])
def test_update_category_with_null_field_is_rejected(client: TestClient, field: str) -> None:
    weather = create_category(client)

    response = client.put(f"/api/categories/{weather['id']}", json={field: None})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == f"body.{field}"
