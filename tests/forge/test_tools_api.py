"""Tools over HTTP: create, read, list, update, delete, schema, export and argument tests."""

import json
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from llero.access.permissions import Permission, permission_of
from llero.forge.models import Tool
from llero.forge.routes import router
from llero.storage.db import Database
from tests.forge.tool_helpers import (
    count_rows,
    create_category,
    create_tool,
    put_in_toolkit,
    tool_body,
)

HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    "get weather",
    "",
    "x" * 65,
    "tool\nname",
    "名前",
]


def test_create_tool_starts_at_version_one(client: TestClient) -> None:
    response = client.post("/api/tools", json=tool_body())

    assert response.status_code == 201
    tool = response.json()
    assert tool["name"] == "get_weather"
    assert tool["version"] == 1
    assert tool["status"] == "draft"
    assert tool["category"] is None
    assert [parameter["name"] for parameter in tool["parameters"]] == ["city", "unit"]


def test_get_tool_returns_stored_fields(client: TestClient) -> None:
    category = create_category(client)
    created = create_tool(client, category_id=category["id"], status="active")

    response = client.get(f"/api/tools/{created['id']}")

    assert response.status_code == 200
    tool = response.json()
    assert tool["category_id"] == category["id"]
    assert tool["category"] == "Weather"
    assert tool["status"] == "active"
    assert tool["parameters"] == created["parameters"]


@pytest.mark.parametrize("tool_id", [999_999, 2**31 - 1])
def test_get_unknown_tool_is_not_found(client: TestClient, tool_id: int) -> None:
    response = client.get(f"/api/tools/{tool_id}")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("tool_id", ["0", "-1", "abc", str(2**31), "1e3"])
def test_get_tool_with_invalid_id_is_rejected(client: TestClient, tool_id: str) -> None:
    response = client.get(f"/api/tools/{tool_id}")

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "path.tool_id"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_create_tool_with_invalid_name_is_rejected(client: TestClient, name: str) -> None:
    response = client.post("/api/tools", json=tool_body(name))

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["details"][0]["field"] == "body.name"
    assert "<script>" not in response.text


def test_create_tool_with_unknown_field_is_rejected(client: TestClient) -> None:
    response = client.post("/api/tools", json=tool_body(owner="mallory"))

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body.owner"


def test_create_tool_with_unknown_parameter_field_is_rejected(client: TestClient) -> None:
    parameters = [{"name": "city", "type": "string", "x-shell": "rm -rf /"}]

    response = client.post("/api/tools", json=tool_body(parameters=parameters))

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body.parameters.0.x-shell"


def test_create_tool_with_huge_max_length_is_rejected(
    client: TestClient, database: Database
) -> None:
    parameters = [{"name": "text", "type": "string", "max_length": 10**9}]

    response = client.post("/api/tools", json=tool_body(parameters=parameters))

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body.parameters.0.max_length"
    assert count_rows(database)["tools"] == 0


def test_create_tool_with_duplicate_parameters_is_rejected(client: TestClient) -> None:
    parameters = [{"name": "city", "type": "string"}, {"name": "city", "type": "integer"}]

    response = client.post("/api/tools", json=tool_body(parameters=parameters))

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert "duplicate names: city" in response.json()["message"]


def test_create_tool_with_unsafe_pattern_is_rejected(
    client: TestClient, database: Database
) -> None:
    # A backreference cannot run on RE2, so the spec check rejects it before it is stored.
    parameters = [{"name": "code", "type": "string", "pattern": "^(a)\\1$"}]

    response = client.post("/api/tools", json=tool_body(parameters=parameters))

    assert response.status_code == 422
    assert response.json()["details"][0]["field"].startswith("parameters")
    assert count_rows(database)["tools"] == 0


def test_create_tool_with_taken_name_conflicts(client: TestClient) -> None:
    create_tool(client)

    response = client.post("/api/tools", json=tool_body())

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert response.json()["message"] == "a tool named get_weather already exists"


def test_create_tool_in_unknown_category_is_rejected(client: TestClient) -> None:
    response = client.post("/api/tools", json=tool_body(category_id=4242))

    assert response.status_code == 422
    assert response.json()["details"] == [
        {"field": "category_id", "problem": "category 4242 not found"}
    ]


def test_markup_in_description_is_escaped_in_responses(client: TestClient) -> None:
    created = create_tool(client, description="<img src=x onerror=alert(1)> & more")

    responses = [
        client.get(f"/api/tools/{created['id']}"),
        client.get("/api/tools"),
        client.get("/api/tools/export"),
    ]

    for response in responses:
        assert response.status_code == 200
        assert "<img" not in response.text
        assert "\\u003cimg" in response.text
    assert responses[0].json()["description"] == "<img src=x onerror=alert(1)> & more"


def test_list_tools_is_sorted_by_name_with_total(client: TestClient) -> None:
    for name in ("zeta", "alpha", "mid"):
        create_tool(client, name)

    response = client.get("/api/tools")

    assert response.status_code == 200
    page = response.json()
    assert [item["name"] for item in page["items"]] == ["alpha", "mid", "zeta"]
    assert page["total"] == 3
    assert page["limit"] == 50
    assert page["offset"] == 0
    assert set(page["items"][0]) == {
        "id",
        "name",
        "description",
        "category_id",
        "category",
        "status",
        "version",
        "owner_user_id",
    }


def test_list_tools_keeps_special_characters(client: TestClient) -> None:
    text = 'Δ "quoted" back\\slash\nnew line\ttab \u0001 😀 </script> & more'
    create_tool(client, description=text)

    response = client.get("/api/tools")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["items"][0]["description"] == text
    assert "</script>" not in response.text


def test_list_tools_orders_a_full_page(client: TestClient, database: Database) -> None:
    names = [f"tool_{index:03d}" for index in range(120)]
    with database.transaction() as session:
        for name in reversed(names):
            session.add(Tool(name=name, description="", parameters=[]))

    first = client.get("/api/tools", params={"limit": 100}).json()
    second = client.get("/api/tools", params={"limit": 100, "offset": 100}).json()

    assert [item["name"] for item in first["items"]] == names[:100]
    assert [item["name"] for item in second["items"]] == names[100:]
    assert first["total"] == second["total"] == 120


def test_list_tools_pages_with_limit_and_offset(client: TestClient) -> None:
    for index in range(5):
        create_tool(client, f"tool_{index}")

    second = client.get("/api/tools", params={"limit": 2, "offset": 2}).json()
    past_end = client.get("/api/tools", params={"limit": 2, "offset": 10}).json()

    assert [item["name"] for item in second["items"]] == ["tool_2", "tool_3"]
    assert second["total"] == 5
    assert past_end["items"] == []
    assert past_end["total"] == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 201}, "query.limit"),
        ({"limit": 0}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"status": "deleted"}, "query.status"),
        ({"search": "x" * 65}, "query.search"),
    ],
)
def test_list_tools_with_invalid_query_is_rejected(
    client: TestClient, params: dict[str, Any], field: str
) -> None:
    response = client.get("/api/tools", params=params)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


def test_list_tools_search_treats_wildcards_literally(client: TestClient) -> None:
    for name in ("get_weather", "getXweather", "forecast_100"):
        create_tool(client, name)

    underscore = client.get("/api/tools", params={"search": "t_w"}).json()
    percent = client.get("/api/tools", params={"search": "%"}).json()
    case = client.get("/api/tools", params={"search": "WEATHER"}).json()

    assert [item["name"] for item in underscore["items"]] == ["get_weather"]
    assert percent["items"] == []
    assert [item["name"] for item in case["items"]] == ["getXweather", "get_weather"]


def test_list_tools_filters_by_category_and_status(client: TestClient) -> None:
    weather = create_category(client, "Weather")
    create_tool(client, "forecast", category_id=weather["id"], status="active")
    create_tool(client, "radar", category_id=weather["id"])
    create_tool(client, "stocks", status="active")

    in_category = client.get("/api/tools", params={"category_id": weather["id"]}).json()
    active = client.get("/api/tools", params={"status": "active"}).json()
    both = client.get(
        "/api/tools", params={"category_id": weather["id"], "status": "active"}
    ).json()

    assert [item["name"] for item in in_category["items"]] == ["forecast", "radar"]
    assert [item["category"] for item in in_category["items"]] == ["Weather", "Weather"]
    assert [item["name"] for item in active["items"]] == ["forecast", "stocks"]
    assert [item["name"] for item in both["items"]] == ["forecast"]
    assert both["total"] == 1


def test_update_tool_bumps_version(client: TestClient) -> None:
    created = create_tool(client)

    response = client.put(f"/api/tools/{created['id']}", json={"description": "New text."})

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert response.json()["description"] == "New text."
    assert response.json()["parameters"] == created["parameters"]


def test_update_tool_without_change_keeps_version(client: TestClient, database: Database) -> None:
    created = create_tool(client)
    before = count_rows(database)

    response = client.put(
        f"/api/tools/{created['id']}",
        json={"description": created["description"], "parameters": tool_body()["parameters"]},
    )

    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert count_rows(database) == before


def test_update_tool_moves_and_clears_category(client: TestClient) -> None:
    category = create_category(client)
    created = create_tool(client)

    moved = client.put(f"/api/tools/{created['id']}", json={"category_id": category["id"]})
    cleared = client.put(f"/api/tools/{created['id']}", json={"category_id": None})

    assert moved.json()["category"] == "Weather"
    assert cleared.json()["category"] is None
    assert cleared.json()["version"] == 3


def test_update_tool_with_stale_version_conflicts(client: TestClient) -> None:
    created = create_tool(client)
    client.put(f"/api/tools/{created['id']}", json={"status": "active"})

    response = client.put(
        f"/api/tools/{created['id']}", json={"status": "inactive", "expected_version": 1}
    )

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert client.get(f"/api/tools/{created['id']}").json()["status"] == "active"


def test_update_tool_to_taken_name_conflicts(client: TestClient) -> None:
    create_tool(client, "first")
    second = create_tool(client, "second")

    response = client.put(f"/api/tools/{second['id']}", json={"name": "first"})

    assert response.status_code == 409
    assert client.get(f"/api/tools/{second['id']}").json()["name"] == "second"


def test_update_tool_with_invalid_spec_writes_nothing(
    client: TestClient, database: Database
) -> None:
    created = create_tool(client)
    before = count_rows(database)
    parameters = [{"name": "when", "type": "string", "min_length": 5, "max_length": 2}]

    response = client.put(f"/api/tools/{created['id']}", json={"parameters": parameters})

    assert response.status_code == 422
    assert count_rows(database) == before
    assert client.get(f"/api/tools/{created['id']}").json()["version"] == 1


def test_delete_tool_then_id_is_not_found(client: TestClient, database: Database) -> None:
    created = create_tool(client)
    client.put(f"/api/tools/{created['id']}", json={"description": "v2"})

    deleted = client.delete(f"/api/tools/{created['id']}")

    assert deleted.status_code == 204
    for path in ("", "/versions", "/versions/1", "/schema", "/export"):
        response = client.get(f"/api/tools/{created['id']}{path}")
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert client.delete(f"/api/tools/{created['id']}").status_code == 404
    assert count_rows(database) == {"tools": 0, "tool_versions": 0, "categories": 0}


def test_delete_tool_in_toolkit_is_refused(client: TestClient, database: Database) -> None:
    created = create_tool(client)
    put_in_toolkit(database, created["id"], "weather_bot")
    put_in_toolkit(database, created["id"], "assistant")

    response = client.delete(f"/api/tools/{created['id']}")

    assert response.status_code == 409
    assert response.json()["error"] == "refused"
    assert response.json()["message"] == (
        "tool get_weather is in the toolkit of agents assistant, weather_bot; "
        "remove it from those toolkits before you delete it"
    )
    assert client.get(f"/api/tools/{created['id']}").status_code == 200


@pytest.mark.parametrize("status", ["draft", "inactive"])
def test_deactivating_tool_in_toolkit_is_refused(
    client: TestClient, database: Database, status: str
) -> None:
    created = create_tool(client, status="active")
    put_in_toolkit(database, created["id"], "weather_bot")

    response = client.put(f"/api/tools/{created['id']}", json={"status": status})

    assert response.status_code == 409
    assert response.json()["message"] == (
        "tool get_weather is in the toolkit of agent weather_bot; "
        f"remove it from those toolkits before you set it to {status}"
    )
    assert client.get(f"/api/tools/{created['id']}").json()["status"] == "active"


def test_search_finds_tool_by_original_name(client: TestClient) -> None:
    line = {
        "id": "case_1",
        "question": [],
        "function": [{"name": "math.factorial", "parameters": {"type": "dict", "properties": {}}}],
    }
    imported = client.post(
        "/api/tools/import",
        content=json.dumps(line),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text

    response = client.get("/api/tools", params={"search": "math.fact"})

    assert [item["name"] for item in response.json()["items"]] == ["math_factorial"]


def test_tool_schema_is_compiled_json_schema(client: TestClient) -> None:
    created = create_tool(client)

    response = client.get(f"/api/tools/{created['id']}/schema")

    assert response.status_code == 200
    schema = response.json()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["required"] == ["city"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["city"]["maxLength"] == 100


@pytest.mark.parametrize("fmt", ["openai", "anthropic", "mcp"])
def test_export_one_tool_names_it_in_each_format(client: TestClient, fmt: str) -> None:
    created = create_tool(client)

    response = client.get(f"/api/tools/{created['id']}/export", params={"format": fmt})

    assert response.status_code == 200
    assert "get_weather" in response.text
    assert "$schema" not in response.text


def test_export_one_tool_defaults_to_openai(client: TestClient) -> None:
    created = create_tool(client)

    response = client.get(f"/api/tools/{created['id']}/export")

    assert response.status_code == 200
    assert response.json()["type"] == "function"
    assert response.json()["function"]["name"] == "get_weather"


def test_export_with_unknown_format_is_rejected(client: TestClient) -> None:
    created = create_tool(client)

    response = client.get(f"/api/tools/{created['id']}/export", params={"format": "yaml"})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "query.format"


def test_export_selects_by_ids_category_and_status(client: TestClient) -> None:
    category = create_category(client)
    first = create_tool(client, "first", category_id=category["id"])
    create_tool(client, "second", status="active")
    third = create_tool(client, "third", status="active")

    def exported(**params: Any) -> list[str]:
        response = client.get("/api/tools/export", params=params)
        assert response.status_code == 200, response.text
        return [item["function"]["name"] for item in response.json()]

    assert exported() == ["first", "second", "third"]
    assert exported(ids=[first["id"], third["id"]]) == ["first", "third"]
    assert exported(category_id=category["id"]) == ["first"]
    assert exported(status="active") == ["second", "third"]
    assert exported(status="active", ids=[first["id"]]) == []


def test_tool_test_accepts_valid_arguments(client: TestClient) -> None:
    created = create_tool(client)

    response = client.post(
        f"/api/tools/{created['id']}/test", json={"arguments": {"city": "Lima", "unit": "celsius"}}
    )

    assert response.status_code == 200
    assert response.json() == {"ok": True, "violations": []}


def test_tool_test_lists_every_violation_with_path(client: TestClient) -> None:
    created = create_tool(client)

    response = client.post(
        f"/api/tools/{created['id']}/test", json={"arguments": {"unit": "kelvin", "extra": 1}}
    )

    assert response.status_code == 200
    result = response.json()
    assert result["ok"] is False
    fields = sorted(violation["field"] for violation in result["violations"])
    assert "$.unit" in fields
    assert len(result["violations"]) == 3


def test_tool_test_without_arguments_object_is_rejected(client: TestClient) -> None:
    created = create_tool(client)

    response = client.post(f"/api/tools/{created['id']}/test", json={"arguments": [1, 2]})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body.arguments"


def test_every_forge_route_names_one_permission() -> None:
    named: dict[tuple[str, str], list[Permission]] = {}
    for route in router.routes:
        assert isinstance(route, APIRoute)
        calls = [dependency.call for dependency in route.dependant.dependencies if dependency.call]
        permissions = [p for p in map(permission_of, calls) if p is not None]
        for method in route.methods or set():
            named[(method, route.path)] = permissions

    assert named == {
        ("GET", "/tools"): [Permission.TOOL_READ],
        ("POST", "/tools"): [Permission.TOOL_CREATE],
        ("POST", "/tools/import"): [Permission.TOOL_IMPORT],
        ("GET", "/tools/export"): [Permission.TOOL_EXPORT],
        ("GET", "/tools/{tool_id}"): [Permission.TOOL_READ],
        ("PUT", "/tools/{tool_id}"): [Permission.TOOL_UPDATE],
        ("GET", "/tools/{tool_id}/shares"): [Permission.TOOL_SHARE],
        ("POST", "/tools/{tool_id}/shares"): [Permission.TOOL_SHARE],
        ("DELETE", "/tools/{tool_id}/shares/{share_id}"): [Permission.TOOL_SHARE],
        ("DELETE", "/tools/{tool_id}"): [Permission.TOOL_DELETE],
        ("GET", "/tools/{tool_id}/schema"): [Permission.TOOL_READ],
        ("GET", "/tools/{tool_id}/export"): [Permission.TOOL_EXPORT],
        ("POST", "/tools/{tool_id}/test"): [Permission.TOOL_TEST],
        ("POST", "/tools/{tool_id}/clone"): [Permission.TOOL_CREATE],
        ("GET", "/tools/{tool_id}/versions"): [Permission.TOOL_READ],
        ("GET", "/tools/{tool_id}/versions/{version}"): [Permission.TOOL_READ],
        ("GET", "/tools/{tool_id}/diff"): [Permission.TOOL_READ],
        ("POST", "/tools/{tool_id}/versions/{version}/restore"): [Permission.TOOL_UPDATE],
        ("GET", "/categories"): [Permission.CATEGORY_READ],
        ("POST", "/categories"): [Permission.CATEGORY_CREATE],
        ("GET", "/categories/{category_id}"): [Permission.CATEGORY_READ],
        ("PUT", "/categories/{category_id}"): [Permission.CATEGORY_UPDATE],
        ("DELETE", "/categories/{category_id}"): [Permission.CATEGORY_DELETE],
    }


@pytest.mark.parametrize("field", ["name", "description", "parameters", "status"])
def test_update_tool_with_null_field_is_rejected(client: TestClient, field: str) -> None:
    created = create_tool(client)

    response = client.put(f"/api/tools/{created['id']}", json={field: None})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == f"body.{field}"
    assert client.get(f"/api/tools/{created['id']}").json()["version"] == 1
