"""The agent routes over HTTP, as a client sees them."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from httpx2 import Response

from llero.access.permissions import Permission, permission_of
from llero.barracks.models import SYSTEM_PROMPT_MAX
from llero.barracks.routes import router
from tests.barracks.conftest import ToolIds

AGENTS = "/api/agents"


def future(days: int = 30) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def agent_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "researcher", "provider": "openai", "model": "gpt-4o"}
    body.update(overrides)
    return body


def create(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post(AGENTS, json=agent_body(**overrides))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def assert_error(response: Response, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    if field is not None:
        assert field in [detail["field"] for detail in body["details"]]


# Permissions.


def test_every_agent_route_names_one_permission() -> None:
    named: dict[tuple[str, str], list[Permission]] = {}
    for route in router.routes:
        assert isinstance(route, APIRoute)
        calls = [dep.call for dep in route.dependant.dependencies if dep.call is not None]
        permissions = [p for p in map(permission_of, calls) if p is not None]
        for method in route.methods or set():
            named[(method, route.path)] = permissions

    assert named == {
        ("GET", "/agents"): [Permission.AGENT_READ],
        ("POST", "/agents"): [Permission.AGENT_CREATE],
        ("GET", "/agents/{agent_id}"): [Permission.AGENT_READ],
        ("PUT", "/agents/{agent_id}"): [Permission.AGENT_UPDATE],
        ("DELETE", "/agents/{agent_id}"): [Permission.AGENT_DELETE],
        ("PUT", "/agents/{agent_id}/toolkit"): [Permission.AGENT_UPDATE],
        ("PUT", "/agents/{agent_id}/toolkit/{tool_id}"): [Permission.AGENT_UPDATE],
        ("DELETE", "/agents/{agent_id}/toolkit/{tool_id}"): [Permission.AGENT_UPDATE],
        ("PUT", "/agents/{agent_id}/status"): [Permission.AGENT_UPDATE_STATUS],
        ("GET", "/agents/{agent_id}/shares"): [Permission.AGENT_SHARE],
        ("POST", "/agents/{agent_id}/shares"): [Permission.AGENT_SHARE],
        ("DELETE", "/agents/{agent_id}/shares/{share_id}"): [Permission.AGENT_SHARE],
    }


# Create and read.


def test_create_agent_returns_201_with_toolkit(client: TestClient, tool_ids: ToolIds) -> None:
    response = client.post(
        AGENTS,
        json=agent_body(
            description="Finds sources",
            system_prompt="Cite every source.",
            expires_at="2999-01-01T02:00:00+02:00",
            tool_ids=[tool_ids.other_active, tool_ids.active],
        ),
    )

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "researcher"
    assert body["description"] == "Finds sources"
    assert body["system_prompt"] == "Cite every source."
    assert body["provider"] == "openai"
    assert body["model"] == "gpt-4o"
    assert body["status"] == "active"
    assert body["expires_at"] == "2999-01-01T00:00:00Z"
    assert body["runnable"] is True
    assert body["toolkit"] == [
        {"id": tool_ids.active, "name": "get_weather", "status": "active"},
        {"id": tool_ids.other_active, "name": "send_email", "status": "active"},
    ]
    assert client.get(f"{AGENTS}/{body['id']}").json() == body


def test_create_agent_defaults(client: TestClient) -> None:
    body = create(client)

    assert body["description"] == ""
    assert body["system_prompt"] == ""
    assert body["status"] == "active"
    assert body["expires_at"] is None
    assert body["toolkit"] == []


@pytest.mark.parametrize("status", ["disabled", "quarantined"])
def test_create_agent_not_active_is_not_runnable(client: TestClient, status: str) -> None:
    body = create(client, status=status)

    assert body["status"] == status
    assert body["runnable"] is False


def test_create_agent_duplicate_name_409(client: TestClient) -> None:
    create(client)

    response = client.post(AGENTS, json=agent_body(model="other"))

    assert_error(response, 409, "conflict", "name")
    assert response.json()["message"] == (
        "an agent named 'researcher' already exists; choose another name"
    )
    assert client.get(AGENTS).json()["total"] == 1


@pytest.mark.parametrize("field", ["owner", "id", "toolkit", "runnable", "Name"])
def test_create_agent_unknown_field_422(client: TestClient, field: str) -> None:
    response = client.post(AGENTS, json=agent_body(**{field: 1}))

    assert_error(response, 422, "invalid_request", f"body.{field}")
    assert client.get(AGENTS).json()["total"] == 0


@pytest.mark.parametrize("field", ["name", "provider", "model"])
def test_create_agent_missing_field_422(client: TestClient, field: str) -> None:
    body = agent_body()
    del body[field]

    assert_error(client.post(AGENTS, json=body), 422, "invalid_request", f"body.{field}")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "n" * 65),
        ("name", "tab\there"),
        ("name", "right\u202eto-left"),
        ("name", " padded"),
        ("name", 42),
        ("provider", "p" * 65),
        ("model", "m" * 129),
        ("model", ["gpt"]),
        ("description", "d" * 4097),
        ("description", "escape\x1b[31m"),
        ("system_prompt", "p" * (SYSTEM_PROMPT_MAX + 1)),
        ("system_prompt", "invisible\U000e0069\U000e0067"),
        ("system_prompt", None),
        ("status", "paused"),
        ("status", 1),
        ("tool_ids", "1,2"),
        ("tool_ids", [0]),
        ("tool_ids", [True]),
        ("tool_ids", [2**31]),
        ("tool_ids", list(range(1, 130))),
    ],
)
def test_create_agent_invalid_value_422(client: TestClient, field: str, value: Any) -> None:
    response = client.post(AGENTS, json=agent_body(**{field: value}))

    assert_error(response, 422, "invalid_request")
    fields = [detail["field"] for detail in response.json()["details"]]
    assert all(name.startswith(f"body.{field}") for name in fields), fields
    assert client.get(AGENTS).json()["total"] == 0


def test_create_agent_oversized_system_prompt_names_field(client: TestClient) -> None:
    response = client.post(AGENTS, json=agent_body(system_prompt="p" * (SYSTEM_PROMPT_MAX + 1)))

    assert_error(response, 422, "invalid_request", "body.system_prompt")
    assert response.json()["message"] == (
        f"body.system_prompt: String should have at most {SYSTEM_PROMPT_MAX} characters"
    )


def test_create_agent_prompt_with_line_breaks_accepted(client: TestClient) -> None:
    prompt = "Line one.\r\n\tIndented line two. Ünïcödé and emoji 🦙 are fine."

    assert create(client, system_prompt=prompt)["system_prompt"] == prompt


# Expiry.


@pytest.mark.parametrize(
    "expires_at",
    ["2001-01-01T00:00:00Z", "2001-01-01T00:00:00+05:00"],
)
def test_create_agent_past_expiry_422(client: TestClient, expires_at: str) -> None:
    response = client.post(AGENTS, json=agent_body(expires_at=expires_at))

    assert_error(response, 422, "invalid_request", "expires_at")
    assert response.json()["message"] == "expires_at: must be in the future"
    assert client.get(AGENTS).json()["total"] == 0


@pytest.mark.parametrize(
    "expires_at",
    ["2999-01-01T00:00:00", "2999-01-01", "2999-01-01 00:00"],
)
def test_create_agent_naive_expiry_422(client: TestClient, expires_at: str) -> None:
    response = client.post(AGENTS, json=agent_body(expires_at=expires_at))

    assert_error(response, 422, "invalid_request", "body.expires_at")


@pytest.mark.parametrize("expires_at", [32503680000, 3.25e10, True, "tomorrow", "", {}])
def test_create_agent_expiry_not_iso_422(client: TestClient, expires_at: Any) -> None:
    response = client.post(AGENTS, json=agent_body(expires_at=expires_at))

    assert_error(response, 422, "invalid_request", "body.expires_at")


def test_create_agent_expiry_past_year_9999_422(client: TestClient) -> None:
    response = client.post(AGENTS, json=agent_body(expires_at="9999-12-31T23:00:00-05:00"))

    assert_error(response, 422, "invalid_request", "expires_at")
    assert response.json()["message"] == "expires_at: is out of range"


# Update.


def test_update_agent_changes_only_given_fields(client: TestClient) -> None:
    agent = create(client, description="old", system_prompt="keep", expires_at=future())

    response = client.put(f"{AGENTS}/{agent['id']}", json={"description": "new", "model": "o3"})

    assert response.status_code == 200
    body = response.json()
    assert body["description"] == "new"
    assert body["model"] == "o3"
    assert body["system_prompt"] == "keep"
    assert body["expires_at"] == agent["expires_at"]
    assert body["name"] == "researcher"
    updated_at = datetime.fromisoformat(body["updated_at"])
    assert updated_at > datetime.fromisoformat(agent["updated_at"])


def test_update_agent_null_expiry_removes_it(client: TestClient) -> None:
    agent = create(client, expires_at=future())

    response = client.put(f"{AGENTS}/{agent['id']}", json={"expires_at": None})

    assert response.status_code == 200
    assert response.json()["expires_at"] is None


def test_update_agent_empty_body_changes_nothing(client: TestClient) -> None:
    agent = create(client)

    response = client.put(f"{AGENTS}/{agent['id']}", json={})

    assert response.status_code == 200
    assert response.json() == agent


@pytest.mark.parametrize("field", ["name", "description", "system_prompt", "provider", "model"])
def test_update_agent_null_field_422(client: TestClient, field: str) -> None:
    agent = create(client)

    response = client.put(f"{AGENTS}/{agent['id']}", json={field: None})

    assert_error(response, 422, "invalid_request", f"body.{field}")
    assert client.get(f"{AGENTS}/{agent['id']}").json() == agent


@pytest.mark.parametrize("field", ["status", "tool_ids", "toolkit", "id", "created_at"])
def test_update_agent_unknown_field_422(client: TestClient, field: str) -> None:
    agent = create(client)

    response = client.put(f"{AGENTS}/{agent['id']}", json={"description": "x", field: "y"})

    assert_error(response, 422, "invalid_request", f"body.{field}")
    assert client.get(f"{AGENTS}/{agent['id']}").json()["description"] == ""


def test_update_agent_past_expiry_writes_nothing(client: TestClient) -> None:
    agent = create(client, description="old")

    response = client.put(
        f"{AGENTS}/{agent['id']}",
        json={"description": "new", "expires_at": "2001-01-01T00:00:00Z"},
    )

    assert_error(response, 422, "invalid_request", "expires_at")
    assert client.get(f"{AGENTS}/{agent['id']}").json()["description"] == "old"


def test_update_agent_taken_name_409(client: TestClient) -> None:
    create(client, name="first")
    second = create(client, name="second")

    response = client.put(f"{AGENTS}/{second['id']}", json={"name": "first"})

    assert_error(response, 409, "conflict", "name")


# Toolkit.


def test_put_toolkit_replaces_tools(client: TestClient, tool_ids: ToolIds) -> None:
    agent = create(client, tool_ids=[tool_ids.active])

    response = client.put(
        f"{AGENTS}/{agent['id']}/toolkit", json={"tool_ids": [tool_ids.other_active]}
    )

    assert response.status_code == 200
    assert response.json()["toolkit"] == [
        {"id": tool_ids.other_active, "name": "send_email", "status": "active"}
    ]


@pytest.mark.parametrize(
    ("which", "reason"),
    [("draft", "draft"), ("inactive", "inactive"), ("unknown", "unknown")],
)
def test_put_toolkit_unusable_tool_409_writes_nothing(
    client: TestClient, tool_ids: ToolIds, which: str, reason: str
) -> None:
    agent = create(client, tool_ids=[tool_ids.active])
    bad_id = tool_ids.inactive + 1000 if which == "unknown" else getattr(tool_ids, which)

    response = client.put(
        f"{AGENTS}/{agent['id']}/toolkit",
        json={"tool_ids": [tool_ids.other_active, bad_id]},
    )

    assert_error(response, 409, "refused")
    body = response.json()
    assert body["details"] == [
        {
            "field": "tool_ids.1",
            "problem": f"tool {bad_id} is {reason}; only active tools can be in a toolkit",
        }
    ]
    assert body["message"] == (
        f"a toolkit can contain only existing, active tools; rejected tools: {bad_id} ({reason})"
    )
    toolkit = client.get(f"{AGENTS}/{agent['id']}").json()["toolkit"]
    assert [tool["id"] for tool in toolkit] == [tool_ids.active]


def test_put_toolkit_names_every_bad_tool(client: TestClient, tool_ids: ToolIds) -> None:
    agent = create(client)
    unknown = tool_ids.inactive + 1000

    response = client.put(
        f"{AGENTS}/{agent['id']}/toolkit",
        json={"tool_ids": [tool_ids.draft, tool_ids.active, unknown, tool_ids.inactive]},
    )

    assert_error(response, 409, "refused")
    fields = [detail["field"] for detail in response.json()["details"]]
    assert fields == ["tool_ids.0", "tool_ids.2", "tool_ids.3"]
    assert client.get(f"{AGENTS}/{agent['id']}").json()["toolkit"] == []


def test_put_toolkit_duplicate_422(client: TestClient, tool_ids: ToolIds) -> None:
    agent = create(client)

    response = client.put(
        f"{AGENTS}/{agent['id']}/toolkit",
        json={"tool_ids": [tool_ids.active, tool_ids.active]},
    )

    assert_error(response, 422, "invalid_request", "tool_ids.1")
    assert client.get(f"{AGENTS}/{agent['id']}").json()["toolkit"] == []


@pytest.mark.parametrize("body", [{}, {"tool_ids": None}, {"tool_ids": [], "extra": 1}])
def test_put_toolkit_malformed_body_422(client: TestClient, body: dict[str, Any]) -> None:
    agent = create(client)

    response = client.put(f"{AGENTS}/{agent['id']}/toolkit", json=body)

    assert_error(response, 422, "invalid_request")


def test_put_one_tool_adds_it(client: TestClient, tool_ids: ToolIds) -> None:
    agent = create(client, tool_ids=[tool_ids.other_active])

    response = client.put(f"{AGENTS}/{agent['id']}/toolkit/{tool_ids.active}")

    assert response.status_code == 200
    ids = [tool["id"] for tool in response.json()["toolkit"]]
    assert ids == sorted([tool_ids.active, tool_ids.other_active])


def test_put_one_tool_twice_409(client: TestClient, tool_ids: ToolIds) -> None:
    agent = create(client, tool_ids=[tool_ids.active])

    response = client.put(f"{AGENTS}/{agent['id']}/toolkit/{tool_ids.active}")

    assert_error(response, 409, "conflict")


def test_put_one_draft_tool_409(client: TestClient, tool_ids: ToolIds) -> None:
    agent = create(client)

    response = client.put(f"{AGENTS}/{agent['id']}/toolkit/{tool_ids.draft}")

    assert_error(response, 409, "refused", "tool_id")


def test_delete_one_tool_removes_it(client: TestClient, tool_ids: ToolIds) -> None:
    agent = create(client, tool_ids=[tool_ids.active, tool_ids.other_active])

    response = client.delete(f"{AGENTS}/{agent['id']}/toolkit/{tool_ids.active}")

    assert response.status_code == 200
    assert [tool["id"] for tool in response.json()["toolkit"]] == [tool_ids.other_active]


def test_delete_one_tool_not_in_toolkit_404(client: TestClient, tool_ids: ToolIds) -> None:
    agent = create(client)

    response = client.delete(f"{AGENTS}/{agent['id']}/toolkit/{tool_ids.active}")

    assert_error(response, 404, "not_found")


# Status.


@pytest.mark.parametrize(("status", "runnable"), [("active", True), ("disabled", False)])
def test_put_status_sets_status(client: TestClient, status: str, runnable: bool) -> None:
    agent = create(client, status="disabled" if status == "active" else "active")

    response = client.put(f"{AGENTS}/{agent['id']}/status", json={"status": status})

    assert response.status_code == 200
    assert response.json()["status"] == status
    assert response.json()["runnable"] is runnable
    assert client.get(f"{AGENTS}/{agent['id']}").json()["status"] == status


def test_put_status_cannot_quarantine(client: TestClient) -> None:
    agent = create(client)

    response = client.put(f"{AGENTS}/{agent['id']}/status", json={"status": "quarantined"})

    assert_error(response, 409, "refused")
    assert client.get(f"{AGENTS}/{agent['id']}").json()["status"] == "active"


@pytest.mark.parametrize(
    "body",
    [
        {"status": "deleted"},
        {"status": "ACTIVE"},
        {"status": None},
        {},
        {"status": "active", "x": 1},
    ],
)
def test_put_status_invalid_body_422(client: TestClient, body: dict[str, Any]) -> None:
    agent = create(client)

    response = client.put(f"{AGENTS}/{agent['id']}/status", json=body)

    assert_error(response, 422, "invalid_request")
    assert client.get(f"{AGENTS}/{agent['id']}").json()["status"] == "active"


# Delete and missing agents.


def test_delete_agent_returns_204(client: TestClient, tool_ids: ToolIds) -> None:
    agent = create(client, tool_ids=[tool_ids.active])

    response = client.delete(f"{AGENTS}/{agent['id']}")

    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"description": "x"}),
        ("DELETE", "", None),
        ("PUT", "/toolkit", {"tool_ids": []}),
        ("PUT", "/status", {"status": "disabled"}),
        ("PUT", "/toolkit/1", None),
        ("DELETE", "/toolkit/1", None),
    ],
)
def test_deleted_agent_404(
    client: TestClient, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    agent = create(client)
    assert client.delete(f"{AGENTS}/{agent['id']}").status_code == 204

    response = client.request(method, f"{AGENTS}/{agent['id']}{suffix}", json=body)

    assert_error(response, 404, "not_found")
    assert response.json()["message"] == f"agent {agent['id']} not found"


@pytest.mark.parametrize("agent_id", ["0", "-1", "2147483648", "99999999999999999999999"])
def test_get_agent_out_of_range_id_422(client: TestClient, agent_id: str) -> None:
    # Ids are bounded like every stored integer, so an out-of-range id is invalid input.
    assert_error(client.get(f"{AGENTS}/{agent_id}"), 422, "invalid_request", "path.agent_id")


def test_create_agent_with_nul_text_422(client: TestClient) -> None:
    response = client.post(AGENTS, json=agent_body(system_prompt="nul\x00byte"))

    assert_error(response, 422, "invalid_request")
    assert client.get(AGENTS).json()["total"] == 0


@pytest.mark.parametrize("agent_id", ["abc", "1.5", "1e3"])
def test_get_agent_non_integer_id_422(client: TestClient, agent_id: str) -> None:
    assert_error(client.get(f"{AGENTS}/{agent_id}"), 422, "invalid_request", "path.agent_id")


# List.


def names(response: Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def test_list_agents_filters(client: TestClient) -> None:
    create(client, name="Alpha Research", provider="openai")
    create(client, name="beta_research", provider="anthropic", status="disabled")
    create(client, name="gamma", provider="anthropic")

    assert names(client.get(AGENTS, params={"search": "research"})) == [
        "Alpha Research",
        "beta_research",
    ]
    assert names(client.get(AGENTS, params={"search": "a_r"})) == ["beta_research"]
    assert names(client.get(AGENTS, params={"status": "disabled"})) == ["beta_research"]
    assert names(client.get(AGENTS, params={"provider": "anthropic"})) == ["beta_research", "gamma"]
    assert names(client.get(AGENTS, params={"provider": "anthropic", "status": "active"})) == [
        "gamma"
    ]


def test_list_agents_pages(client: TestClient) -> None:
    for index in range(5):
        create(client, name=f"agent-{index}")

    response = client.get(AGENTS, params={"limit": 2, "offset": 2})

    assert names(response) == ["agent-2", "agent-3"]
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 2)
    assert client.get(AGENTS).json()["limit"] == 50


def test_list_agents_omits_system_prompt(client: TestClient, tool_ids: ToolIds) -> None:
    create(client, system_prompt="secret plan", tool_ids=[tool_ids.active])

    item = client.get(AGENTS).json()["items"][0]

    assert "system_prompt" not in item
    assert item["toolkit"] == [{"id": tool_ids.active, "name": "get_weather", "status": "active"}]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 201}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"offset": 2**31}, "query.offset"),
        ({"status": "gone"}, "query.status"),
        ({"search": "s" * 65}, "query.search"),
        ({"provider": "p" * 65}, "query.provider"),
        ({"stauts": "active"}, "query.stauts"),
    ],
)
def test_list_agents_invalid_query_422(
    client: TestClient, params: dict[str, Any], field: str
) -> None:
    assert_error(client.get(AGENTS, params=params), 422, "invalid_request", field)
