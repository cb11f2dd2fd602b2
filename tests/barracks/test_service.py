"""The agent service, called directly in a session as the CLI and the run loop will call it."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from llero.access.ownership import Caller
from llero.barracks import service
from llero.barracks.models import SYSTEM_PROMPT_MAX, Agent, AgentStatus, agent_tools
from llero.barracks.service import AgentChanges, NewAgent, ToolkitRejected, is_runnable
from llero.errors import Conflict, InvalidInput, NotFound, Refused
from llero.forge.models import Tool
from llero.storage.db import Database
from tests.barracks.conftest import ToolIds

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
# The operator, who sees every agent and tool; ownership is tested in tests/access.
SYSTEM = Caller.system("test")


def new_agent(**overrides: Any) -> NewAgent:
    fields: dict[str, Any] = {"name": "researcher", "provider": "openai", "model": "gpt-4o"}
    fields.update(overrides)
    return NewAgent(**fields)


def create(database: Database, **overrides: Any) -> int:
    with database.transaction() as session:
        return service.create_agent(session, SYSTEM, new_agent(**overrides), now=NOW).id


def toolkit_of(database: Database, agent_id: int) -> list[int]:
    with database.reader() as session:
        return [tool.id for tool in service.get_agent(session, SYSTEM, agent_id).toolkit]


def agent_count(database: Database) -> int:
    with database.reader() as session:
        return session.scalar(select(func.count()).select_from(Agent)) or 0


# Creating and reading.


def test_create_agent_stores_every_field(database: Database, tool_ids: ToolIds) -> None:
    expires_at = datetime(2031, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    agent_id = create(
        database,
        description="Finds sources",
        system_prompt="You are careful.\n\tCite sources.",
        expires_at=expires_at,
        tool_ids=[tool_ids.other_active, tool_ids.active],
    )

    with database.reader() as session:
        agent = service.get_agent(session, SYSTEM, agent_id)
        assert agent.name == "researcher"
        assert agent.description == "Finds sources"
        assert agent.system_prompt == "You are careful.\n\tCite sources."
        assert agent.provider == "openai"
        assert agent.model == "gpt-4o"
        assert agent.status == AgentStatus.ACTIVE
        assert agent.expires_at == expires_at
        assert agent.expires_at.tzinfo is not None
        assert [tool.id for tool in agent.toolkit] == sorted(
            [tool_ids.active, tool_ids.other_active]
        )


def test_create_agent_duplicate_name_raises_conflict(database: Database) -> None:
    create(database)

    with pytest.raises(Conflict) as raised, database.transaction() as session:
        service.create_agent(session, SYSTEM, new_agent(model="other"), now=NOW)

    assert raised.value.message == "an agent named 'researcher' already exists; choose another name"
    assert agent_count(database) == 1


def test_create_agent_name_race_raises_conflict(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A concurrent request can take the name between the check and the insert; the unique
    # constraint then decides, and the caller still gets Conflict rather than a database error.
    create(database)
    monkeypatch.setattr(service, "_check_name_free", lambda *_args: None)

    with pytest.raises(Conflict) as raised, database.transaction() as session:
        service.create_agent(session, SYSTEM, new_agent(), now=NOW)

    assert "concurrent change" in raised.value.message
    assert agent_count(database) == 1


@pytest.mark.parametrize("agent_id", [0, -1, 10**6, 2**31, 2**70])
def test_get_agent_unknown_id_raises_not_found(database: Database, agent_id: int) -> None:
    with pytest.raises(NotFound) as raised, database.reader() as session:
        service.get_agent(session, SYSTEM, agent_id)

    assert raised.value.message == f"agent {agent_id} not found"


# Field rules.


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("name", "", "must not be empty"),
        ("name", "x" * 65, "must be at most 64 characters"),
        ("name", " researcher", "must not start or end with whitespace"),
        ("name", "re\x00searcher", "contains the non-printable character U+0000"),
        ("name", "admin\u202egpj", "contains the non-printable character U+202E"),
        ("name", "zero\u200bwidth", "contains the non-printable character U+200B"),
        ("provider", "open\nai", "contains the non-printable character U+000A"),
        ("provider", "p" * 65, "must be at most 64 characters"),
        ("model", "m" * 129, "must be at most 128 characters"),
        ("model", "gpt\x7f", "contains the non-printable character U+007F"),
        ("description", "d" * 4097, "must be at most 4096 characters"),
        ("description", "bell\x07", "contains the control or invisible character U+0007"),
        ("system_prompt", "nul\x00", "contains the control or invisible character U+0000"),
        (
            "system_prompt",
            "hidden\U000e0041",
            "contains the control or invisible character U+E0041",
        ),
        ("system_prompt", "flip\u2067", "contains the control or invisible character U+2067"),
        ("system_prompt", "lone\ud800", "contains the control or invisible character U+D800"),
        (
            "system_prompt",
            "p" * (SYSTEM_PROMPT_MAX + 1),
            f"must be at most {SYSTEM_PROMPT_MAX} characters",
        ),
    ],
)
def test_create_agent_invalid_text_rejected(
    database: Database, field: str, value: str, problem: str
) -> None:
    with pytest.raises(InvalidInput) as raised, database.transaction() as session:
        service.create_agent(session, SYSTEM, new_agent(**{field: value}), now=NOW)

    assert [(d.field, d.problem) for d in raised.value.details] == [(field, problem)]
    assert agent_count(database) == 0


def test_create_agent_system_prompt_at_max_accepted(database: Database) -> None:
    agent_id = create(database, system_prompt="p" * SYSTEM_PROMPT_MAX)

    with database.reader() as session:
        assert len(service.get_agent(session, SYSTEM, agent_id).system_prompt) == SYSTEM_PROMPT_MAX


@pytest.mark.parametrize(
    ("expires_at", "problem"),
    [
        (NOW - timedelta(days=1), "must be in the future"),
        (NOW, "must be in the future"),
        (datetime(2031, 1, 1), "must include a time zone, for example +00:00 or Z"),
        (
            datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
            "is out of range",
        ),
    ],
)
def test_create_agent_invalid_expiry_rejected(
    database: Database, expires_at: datetime, problem: str
) -> None:
    with pytest.raises(InvalidInput) as raised, database.transaction() as session:
        service.create_agent(session, SYSTEM, new_agent(expires_at=expires_at), now=NOW)

    assert [(d.field, d.problem) for d in raised.value.details] == [("expires_at", problem)]
    assert agent_count(database) == 0


def test_create_agent_unknown_status_rejected(database: Database) -> None:
    with pytest.raises(InvalidInput) as raised, database.transaction() as session:
        service.create_agent(session, SYSTEM, new_agent(status="paused"), now=NOW)

    assert raised.value.details[0].field == "status"
    assert raised.value.details[0].problem == "must be one of: active, disabled, quarantined"


# Runnability.


@pytest.mark.parametrize(
    ("status", "expires_at", "runnable"),
    [
        (AgentStatus.ACTIVE, None, True),
        (AgentStatus.ACTIVE, NOW + timedelta(seconds=1), True),
        (AgentStatus.ACTIVE, NOW, False),
        (AgentStatus.ACTIVE, NOW - timedelta(days=1), False),
        (AgentStatus.DISABLED, None, False),
        (AgentStatus.DISABLED, NOW + timedelta(days=1), False),
        (AgentStatus.QUARANTINED, None, False),
        (AgentStatus.QUARANTINED, NOW + timedelta(days=1), False),
    ],
)
def test_is_runnable_by_status_and_expiry(
    status: AgentStatus, expires_at: datetime | None, runnable: bool
) -> None:
    agent = Agent(name="a", provider="p", model="m", status=status, expires_at=expires_at)

    assert is_runnable(agent, NOW) is runnable


def test_is_runnable_compares_instants_across_time_zones() -> None:
    tokyo = timezone(timedelta(hours=9))
    agent = Agent(
        name="a",
        provider="p",
        model="m",
        status=AgentStatus.ACTIVE,
        expires_at=NOW + timedelta(hours=1),
    )

    assert is_runnable(agent, (NOW + timedelta(minutes=59)).astimezone(tokyo)) is True
    assert is_runnable(agent, (NOW + timedelta(hours=1)).astimezone(tokyo)) is False


def test_stored_agent_expires_when_read_back(database: Database) -> None:
    agent_id = create(database, expires_at=NOW + timedelta(hours=1))

    with database.reader() as session:
        agent = service.get_agent(session, SYSTEM, agent_id)
        assert is_runnable(agent, NOW) is True
        assert is_runnable(agent, NOW + timedelta(hours=2)) is False


# Updates and status.


def test_update_agent_changes_only_given_fields(database: Database) -> None:
    agent_id = create(database, description="old", system_prompt="keep me")

    with database.transaction() as session:
        service.update_agent(
            session, SYSTEM, agent_id, {"description": "new", "model": "gpt-5"}, now=NOW
        )

    with database.reader() as session:
        agent = service.get_agent(session, SYSTEM, agent_id)
        assert agent.description == "new"
        assert agent.model == "gpt-5"
        assert agent.system_prompt == "keep me"
        assert agent.name == "researcher"
        assert agent.updated_at > agent.created_at


def test_update_agent_none_expiry_removes_it(database: Database) -> None:
    agent_id = create(database, expires_at=NOW + timedelta(days=1))

    with database.transaction() as session:
        service.update_agent(session, SYSTEM, agent_id, {"expires_at": None}, now=NOW)

    with database.reader() as session:
        assert service.get_agent(session, SYSTEM, agent_id).expires_at is None


def test_update_agent_past_expiry_writes_nothing(database: Database) -> None:
    agent_id = create(database, description="old")
    changes: AgentChanges = {"description": "new", "expires_at": NOW - timedelta(seconds=1)}

    with pytest.raises(InvalidInput), database.transaction() as session:
        service.update_agent(session, SYSTEM, agent_id, changes, now=NOW)

    with database.reader() as session:
        assert service.get_agent(session, SYSTEM, agent_id).description == "old"


def test_update_agent_taken_name_raises_conflict(database: Database) -> None:
    create(database, name="first")
    second = create(database, name="second")

    with pytest.raises(Conflict), database.transaction() as session:
        service.update_agent(session, SYSTEM, second, {"name": "first"}, now=NOW)

    with database.reader() as session:
        assert service.get_agent(session, SYSTEM, second).name == "second"


def test_update_agent_own_name_accepted(database: Database) -> None:
    agent_id = create(database)

    with database.transaction() as session:
        agent = service.update_agent(session, SYSTEM, agent_id, {"name": "researcher"}, now=NOW)

    assert agent.name == "researcher"


def test_update_agent_unknown_field_rejected(database: Database) -> None:
    agent_id = create(database)
    changes: Any = {"status": "disabled"}

    with pytest.raises(InvalidInput) as raised, database.transaction() as session:
        service.update_agent(session, SYSTEM, agent_id, changes, now=NOW)

    assert raised.value.details[0].field == "status"


@pytest.mark.parametrize("status", [AgentStatus.ACTIVE, AgentStatus.DISABLED])
def test_set_status_stores_each_status(database: Database, status: AgentStatus) -> None:
    agent_id = create(database, status=AgentStatus.DISABLED if status == "active" else "active")

    with database.transaction() as session:
        service.set_status(session, SYSTEM, agent_id, status)

    with database.reader() as session:
        agent = service.get_agent(session, SYSTEM, agent_id)
        assert agent.status == status
        assert is_runnable(agent, NOW) is (status == AgentStatus.ACTIVE)


@pytest.mark.parametrize(
    ("start", "target"),
    [(AgentStatus.ACTIVE, AgentStatus.QUARANTINED), (AgentStatus.QUARANTINED, AgentStatus.ACTIVE)],
)
def test_set_status_refuses_quarantine_changes(
    database: Database, start: AgentStatus, target: AgentStatus
) -> None:
    agent_id = create(database, status=start)

    with database.transaction() as session, pytest.raises(Refused):
        service.set_status(session, SYSTEM, agent_id, target)

    with database.reader() as session:
        assert service.get_agent(session, SYSTEM, agent_id).status == start


# Toolkits.


def test_set_toolkit_replaces_tools(database: Database, tool_ids: ToolIds) -> None:
    agent_id = create(database, tool_ids=[tool_ids.active])

    with database.transaction() as session:
        service.set_toolkit(session, SYSTEM, agent_id, [tool_ids.other_active])

    assert toolkit_of(database, agent_id) == [tool_ids.other_active]


def test_set_toolkit_empty_list_clears_it(database: Database, tool_ids: ToolIds) -> None:
    agent_id = create(database, tool_ids=[tool_ids.active])

    with database.transaction() as session:
        service.set_toolkit(session, SYSTEM, agent_id, [])

    assert toolkit_of(database, agent_id) == []


def test_set_toolkit_unusable_tools_write_nothing(database: Database, tool_ids: ToolIds) -> None:
    agent_id = create(database, tool_ids=[tool_ids.active])
    unknown = tool_ids.inactive + 1000
    requested = [tool_ids.other_active, tool_ids.draft, tool_ids.inactive, unknown]

    with pytest.raises(ToolkitRejected) as raised, database.transaction() as session:
        service.set_toolkit(session, SYSTEM, agent_id, requested)

    assert raised.value.reasons == {
        tool_ids.draft: "draft",
        tool_ids.inactive: "inactive",
        unknown: "unknown",
    }
    assert [(d.field, d.problem) for d in raised.value.details] == [
        ("tool_ids.1", f"tool {tool_ids.draft} is draft; only active tools can be in a toolkit"),
        (
            "tool_ids.2",
            f"tool {tool_ids.inactive} is inactive; only active tools can be in a toolkit",
        ),
        ("tool_ids.3", f"tool {unknown} is unknown; only active tools can be in a toolkit"),
    ]
    assert toolkit_of(database, agent_id) == [tool_ids.active]


@pytest.mark.parametrize("bad_id", [0, -5, 2**31, 2**70])
def test_set_toolkit_out_of_range_id_is_unknown(database: Database, bad_id: int) -> None:
    agent_id = create(database)

    with pytest.raises(ToolkitRejected) as raised, database.transaction() as session:
        service.set_toolkit(session, SYSTEM, agent_id, [bad_id])

    assert raised.value.reasons == {bad_id: "unknown"}


def test_set_toolkit_duplicates_rejected(database: Database, tool_ids: ToolIds) -> None:
    agent_id = create(database)
    requested = [tool_ids.active, tool_ids.other_active, tool_ids.active]

    with pytest.raises(InvalidInput) as raised, database.transaction() as session:
        service.set_toolkit(session, SYSTEM, agent_id, requested)

    assert [(d.field, d.problem) for d in raised.value.details] == [
        ("tool_ids.2", f"repeats tool {tool_ids.active}, already at tool_ids.0")
    ]
    assert toolkit_of(database, agent_id) == []


def test_set_toolkit_over_max_rejected(database: Database, tool_ids: ToolIds) -> None:
    agent_id = create(database)

    with pytest.raises(InvalidInput) as raised, database.transaction() as session:
        service.set_toolkit(session, SYSTEM, agent_id, list(range(1, service.TOOLKIT_MAX + 2)))

    assert raised.value.details[0].problem == f"must contain at most {service.TOOLKIT_MAX} tools"


def test_create_agent_with_draft_tool_writes_nothing(database: Database, tool_ids: ToolIds) -> None:
    with pytest.raises(ToolkitRejected), database.transaction() as session:
        service.create_agent(session, SYSTEM, new_agent(tool_ids=[tool_ids.draft]), now=NOW)

    assert agent_count(database) == 0


def test_add_tool_appends_active_tool(database: Database, tool_ids: ToolIds) -> None:
    agent_id = create(database, tool_ids=[tool_ids.other_active])

    with database.transaction() as session:
        service.add_tool(session, SYSTEM, agent_id, tool_ids.active)

    assert toolkit_of(database, agent_id) == sorted([tool_ids.active, tool_ids.other_active])


@pytest.mark.parametrize(("which", "reason"), [("draft", "draft"), ("inactive", "inactive")])
def test_add_tool_not_active_rejected(
    database: Database, tool_ids: ToolIds, which: str, reason: str
) -> None:
    agent_id = create(database)
    tool_id = getattr(tool_ids, which)

    with pytest.raises(ToolkitRejected) as raised, database.transaction() as session:
        service.add_tool(session, SYSTEM, agent_id, tool_id)

    assert raised.value.reasons == {tool_id: reason}
    assert raised.value.details[0].field == "tool_id"
    assert toolkit_of(database, agent_id) == []


def test_add_tool_unknown_rejected(database: Database, tool_ids: ToolIds) -> None:
    agent_id = create(database)
    unknown = tool_ids.inactive + 1000

    with pytest.raises(ToolkitRejected) as raised, database.transaction() as session:
        service.add_tool(session, SYSTEM, agent_id, unknown)

    assert raised.value.reasons == {unknown: "unknown"}


def test_add_tool_already_present_raises_conflict(database: Database, tool_ids: ToolIds) -> None:
    agent_id = create(database, tool_ids=[tool_ids.active])

    with pytest.raises(Conflict) as raised, database.transaction() as session:
        service.add_tool(session, SYSTEM, agent_id, tool_ids.active)

    assert raised.value.message == (
        f"tool {tool_ids.active} is already in the toolkit of agent {agent_id}"
    )


def test_add_tool_full_toolkit_refused(
    database: Database, monkeypatch: pytest.MonkeyPatch, tool_ids: ToolIds
) -> None:
    monkeypatch.setattr(service, "TOOLKIT_MAX", 1)
    agent_id = create(database, tool_ids=[tool_ids.active])

    with pytest.raises(Refused) as raised, database.transaction() as session:
        service.add_tool(session, SYSTEM, agent_id, tool_ids.other_active)

    assert not isinstance(raised.value, ToolkitRejected)
    assert toolkit_of(database, agent_id) == [tool_ids.active]


def test_remove_tool_keeps_the_others(database: Database, tool_ids: ToolIds) -> None:
    agent_id = create(database, tool_ids=[tool_ids.active, tool_ids.other_active])

    with database.transaction() as session:
        service.remove_tool(session, SYSTEM, agent_id, tool_ids.active)

    assert toolkit_of(database, agent_id) == [tool_ids.other_active]


def test_remove_tool_not_in_toolkit_raises_not_found(database: Database, tool_ids: ToolIds) -> None:
    agent_id = create(database, tool_ids=[tool_ids.active])

    with pytest.raises(NotFound), database.transaction() as session:
        service.remove_tool(session, SYSTEM, agent_id, tool_ids.other_active)


def test_tool_leaving_active_status_stays_in_toolkit(database: Database, tool_ids: ToolIds) -> None:
    # The rule applies when a toolkit is set; a tool deactivated later is kept and shows its
    # status, so the run loop must still check it before offering the tool to a model.
    agent_id = create(database, tool_ids=[tool_ids.active])
    with database.transaction() as session:
        session.get_one(Tool, tool_ids.active).status = "inactive"

    with database.reader() as session:
        toolkit = service.get_agent(session, SYSTEM, agent_id).toolkit
        assert [(tool.id, tool.status) for tool in toolkit] == [(tool_ids.active, "inactive")]


# Deletion and the database's own rules.


def test_delete_agent_removes_toolkit_rows_and_keeps_tools(
    database: Database, tool_ids: ToolIds
) -> None:
    agent_id = create(database, tool_ids=[tool_ids.active])

    with database.transaction() as session:
        service.delete_agent(session, SYSTEM, agent_id)

    with database.reader() as session:
        assert session.scalar(select(func.count()).select_from(agent_tools)) == 0
        assert session.get(Tool, tool_ids.active) is not None
        with pytest.raises(NotFound):
            service.get_agent(session, SYSTEM, agent_id)


def test_delete_agent_twice_raises_not_found(database: Database) -> None:
    agent_id = create(database)
    with database.transaction() as session:
        service.delete_agent(session, SYSTEM, agent_id)

    with pytest.raises(NotFound), database.transaction() as session:
        service.delete_agent(session, SYSTEM, agent_id)


def test_tool_in_toolkit_cannot_be_deleted(database: Database, tool_ids: ToolIds) -> None:
    create(database, tool_ids=[tool_ids.active])

    # A plain DELETE statement, so the foreign key (ON DELETE RESTRICT) is what refuses it.
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.execute(delete(Tool).where(Tool.id == tool_ids.active))

    with database.reader() as session:
        assert session.get(Tool, tool_ids.active) is not None


def test_tool_outside_toolkits_can_be_deleted(database: Database, tool_ids: ToolIds) -> None:
    create(database, tool_ids=[tool_ids.active])

    with database.transaction() as session:
        session.execute(delete(Tool).where(Tool.id == tool_ids.other_active))

    with database.reader() as session:
        assert session.get(Tool, tool_ids.other_active) is None


# Listing.


def test_list_agents_filters_and_pages(database: Database) -> None:
    create(database, name="Alpha Research", provider="openai")
    create(database, name="beta_research", provider="anthropic", status="disabled")
    create(database, name="gamma", provider="anthropic")
    create(database, name="100% research", provider="openai")

    def names(**filters: Any) -> list[str]:
        with database.reader() as session:
            return [agent.name for agent in service.list_agents(session, SYSTEM, **filters).items]

    assert names(search="RESEARCH") == ["Alpha Research", "beta_research", "100% research"]
    assert names(search="%") == ["100% research"]
    # Unescaped, "_" would match the space in "Alpha Research" too.
    assert names(search="a_r") == ["beta_research"]
    assert names(status=AgentStatus.DISABLED) == ["beta_research"]
    assert names(provider="anthropic") == ["beta_research", "gamma"]
    assert names(provider="anthropic", status=AgentStatus.ACTIVE) == ["gamma"]
    assert names(limit=2, offset=1) == ["beta_research", "gamma"]


def test_list_agents_total_counts_every_page(database: Database) -> None:
    for index in range(5):
        create(database, name=f"agent-{index}")

    with database.reader() as session:
        page = service.list_agents(session, SYSTEM, limit=2, offset=4)

    assert [agent.name for agent in page.items] == ["agent-4"]
    assert (page.total, page.limit, page.offset) == (5, 2, 4)


@pytest.mark.parametrize(
    ("limit", "offset", "field"),
    [(0, 0, "limit"), (201, 0, "limit"), (50, -1, "offset"), (50, 2**31, "offset")],
)
def test_list_agents_out_of_range_page_rejected(
    database: Database, limit: int, offset: int, field: str
) -> None:
    with pytest.raises(InvalidInput) as raised, database.reader() as session:
        service.list_agents(session, SYSTEM, limit=limit, offset=offset)

    assert raised.value.details[0].field == field
