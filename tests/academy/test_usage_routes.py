"""Usage reports, CSV export and budgets over HTTP: admins see everyone, others themselves, and
no spreadsheet formula survives the export."""

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from llero.academy.providers import ModelPrice
from llero.academy.usage import csv_cell, record_usage
from llero.access.roles import Role
from llero.barracks.models import Agent
from llero.command.providers.base import Usage
from llero.identity.models import User
from llero.storage.db import Database
from tests.academy.provider_helpers import audit_records
from tests.conftest import FixtureUser, MakeUser

USAGE = "/api/usage"
BUDGETS = "/api/budgets"
GPT = ModelPrice("gpt-4o", 1_000_000, 2_000_000)
# A model name an admin could type; the export must not hand it to a spreadsheet as a formula.
FORMULA_MODEL = ModelPrice('=HYPERLINK("http://127.0.0.1:9/x","y")', 1_000_000, 0)


@dataclass(frozen=True)
class Calls:
    developer: FixtureUser
    other: FixtureUser
    agent: int


def _record(
    database: Database,
    *,
    user_id: int,
    agent_id: int,
    price: ModelPrice,
    tokens: tuple[int, int],
    at: datetime,
) -> None:
    with database.transaction() as session:
        record_usage(
            session,
            provider="openai",
            price=price,
            usage=Usage(*tokens),
            user_id=user_id,
            agent_id=agent_id,
            session_id=None,
            now=at,
        )


@pytest.fixture
def calls(database: Database, make_user: MakeUser) -> Calls:
    developer = make_user(role=Role.DEVELOPER)
    other = make_user(role=Role.DEVELOPER)
    with database.transaction() as session:
        agent = Agent(name="@researcher", provider="openai", model="gpt-4o")
        session.add(agent)
        user = session.get(User, other.id)
        assert user is not None
        user.display_name = "+1 555 0100"
        session.flush()
        agent_id = agent.id
    day_one = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    day_two = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    # developer: 1000 + 2*500 = 2000 and 3000 micro-dollars; other: 4000.
    _record(
        database,
        user_id=developer.id,
        agent_id=agent_id,
        price=GPT,
        tokens=(1_000, 500),
        at=day_one,
    )
    _record(
        database, user_id=developer.id, agent_id=agent_id, price=GPT, tokens=(3_000, 0), at=day_two
    )
    _record(
        database,
        user_id=other.id,
        agent_id=agent_id,
        price=FORMULA_MODEL,
        tokens=(4_000, 0),
        at=day_two,
    )
    return Calls(developer, other, agent_id)


def _items(response: object) -> list[dict[str, object]]:
    assert getattr(response, "status_code", None) == 200, getattr(response, "text", "")
    items: list[dict[str, object]] = response.json()["items"]  # type: ignore[attr-defined]
    return items


def test_admin_reads_everyone_by_user(client: TestClient, calls: Calls) -> None:
    items = _items(client.get(USAGE, params={"group_by": "user"}))

    assert [(row["key"], row["calls"], row["cost_micros"]) for row in items] == [
        (str(calls.developer.id), 2, 5_000),
        (str(calls.other.id), 1, 4_000),
    ]
    assert items[1]["name"] == "+1 555 0100"
    assert items[0]["cost_usd"] == "0.005000"


def test_user_without_display_name_labelled_by_id(
    client: TestClient, database: Database, calls: Calls
) -> None:
    with database.transaction() as session:
        session.get_one(User, calls.developer.id).display_name = ""

    items = _items(client.get(USAGE, params={"group_by": "user"}))

    assert items[0]["key"] == str(calls.developer.id)
    assert items[0]["name"] == f"user {calls.developer.id}"


def test_report_by_model_day_and_agent(client: TestClient, calls: Calls) -> None:
    by_model = _items(client.get(USAGE, params={"group_by": "model"}))
    by_day = _items(client.get(USAGE, params={"group_by": "day"}))
    by_agent = _items(client.get(USAGE, params={"group_by": "agent"}))

    assert [(row["key"], row["input_tokens"], row["output_tokens"]) for row in by_model] == [
        (f"openai/{FORMULA_MODEL.name}", 4_000, 0),
        ("openai/gpt-4o", 4_000, 500),
    ]
    assert [(row["key"], row["cost_micros"]) for row in by_day] == [
        ("2026-12-01", 2_000),
        ("2026-12-02", 7_000),
    ]
    assert [(row["key"], row["name"], row["calls"]) for row in by_agent] == [
        (str(calls.agent), "@researcher", 3)
    ]


def test_report_date_range(client: TestClient, calls: Calls) -> None:
    del calls
    since = client.get(USAGE, params={"since": "2026-12-02"})
    until = client.get(USAGE, params={"until": "2026-12-02"})

    assert [row["key"] for row in _items(since)] == ["2026-12-02"]
    assert [row["key"] for row in _items(until)] == ["2026-12-01"]


def test_empty_date_range_refused(client: TestClient) -> None:
    response = client.get(USAGE, params={"since": "2026-12-02", "until": "2026-12-02"})

    assert response.status_code == 422
    assert "until must be later than since" in response.json()["message"]


def test_developer_reads_only_own_usage(anonymous_client: TestClient, calls: Calls) -> None:
    response = anonymous_client.get(
        USAGE, params={"group_by": "user"}, headers=calls.developer.headers
    )

    assert response.json()["user_id"] == calls.developer.id
    assert [(row["key"], row["cost_micros"]) for row in _items(response)] == [
        (str(calls.developer.id), 5_000)
    ]


def test_developer_asking_for_other_user_forbidden(
    anonymous_client: TestClient, calls: Calls
) -> None:
    for path in (USAGE, f"{USAGE}/export"):
        response = anonymous_client.get(
            path, params={"user_id": calls.other.id}, headers=calls.developer.headers
        )

        assert response.status_code == 403, path
        assert response.json()["message"] == ("you may read only your own usage; leave out user_id")


def test_viewer_cannot_read_usage(anonymous_client: TestClient, make_user: MakeUser) -> None:
    viewer = make_user(role=Role.VIEWER)

    assert anonymous_client.get(USAGE, headers=viewer.headers).status_code == 403


# CSV export.


def test_csv_export_escapes_formulas(client: TestClient, calls: Calls) -> None:
    del calls
    by_model = client.get(f"{USAGE}/export", params={"group_by": "model"})
    by_user = client.get(f"{USAGE}/export", params={"group_by": "user"})
    by_agent = client.get(f"{USAGE}/export", params={"group_by": "agent"})

    assert by_model.status_code == 200
    assert by_model.headers["content-type"] == "text/csv; charset=utf-8"
    assert by_model.headers["content-disposition"] == 'attachment; filename="usage-by-model.csv"'
    model_rows = list(csv.reader(io.StringIO(by_model.text)))
    assert model_rows[0] == [
        "model",
        "name",
        "calls",
        "input_tokens",
        "output_tokens",
        "cost_micros",
        "cost_usd",
    ]
    assert model_rows[1][0] == f"openai/{FORMULA_MODEL.name}"
    assert model_rows[2] == [
        "openai/gpt-4o",
        "openai/gpt-4o",
        "2",
        "4000",
        "500",
        "5000",
        "0.005000",
    ]
    user_names = [row[1] for row in csv.reader(io.StringIO(by_user.text))]
    assert "'+1 555 0100" in user_names
    agent_names = [row[1] for row in csv.reader(io.StringIO(by_agent.text))]
    assert agent_names == ["name", "'@researcher"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("openai/=x", "openai/=x"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_csv_cell_prefixes_formula_starts(value: str, expected: str) -> None:
    assert csv_cell(value) == expected


def test_developer_export_has_own_rows(anonymous_client: TestClient, calls: Calls) -> None:
    response = anonymous_client.get(
        f"{USAGE}/export", params={"group_by": "user"}, headers=calls.developer.headers
    )

    rows = list(csv.reader(io.StringIO(response.text)))
    assert [row[0] for row in rows[1:]] == [str(calls.developer.id)]


# Budgets.


def test_budget_lifecycle_is_audited(client: TestClient, database: Database, calls: Calls) -> None:
    created = client.post(
        BUDGETS,
        json={
            "scope": "user",
            "subject_id": calls.developer.id,
            "period": "month",
            "amount_micros": 10_000,
        },
    )
    assert created.status_code == 201, created.text
    budget = created.json()
    changed = client.patch(f"{BUDGETS}/{budget['id']}", json={"amount_micros": 20_000})
    deleted = client.delete(f"{BUDGETS}/{budget['id']}")

    assert budget["amount_usd"] == "0.010000"
    assert changed.json()["amount_micros"] == 20_000
    assert deleted.status_code == 204
    expected = {"scope": "user", "subject_id": calls.developer.id, "period": "month"}
    target = str(budget["id"])
    assert audit_records(database, "budget:created") == [
        (target, {**expected, "amount_micros": 10_000})
    ]
    assert audit_records(database, "budget:updated") == [
        (target, {**expected, "amount_micros": 20_000, "previous_amount_micros": 10_000})
    ]
    assert audit_records(database, "budget:deleted") == [
        (target, {**expected, "amount_micros": 20_000})
    ]


def test_budget_list_shows_spending(
    client: TestClient, database: Database, make_user: MakeUser
) -> None:
    user = make_user(role=Role.DEVELOPER)
    with database.transaction() as session:
        agent = Agent(name="counter", provider="openai", model="gpt-4o")
        session.add(agent)
        session.flush()
        agent_id = agent.id
    now = datetime.now(UTC)
    _record(database, user_id=user.id, agent_id=agent_id, price=GPT, tokens=(1_500, 0), at=now)
    client.post(
        BUDGETS,
        json={"scope": "agent", "subject_id": agent_id, "period": "day", "amount_micros": 1},
    )
    client.post(BUDGETS, json={"scope": "overall", "period": "month", "amount_micros": 5})

    items = client.get(BUDGETS).json()["items"]

    assert [(item["scope"], item["subject_id"], item["spent_micros"]) for item in items] == [
        ("agent", agent_id, 1_500),
        ("overall", None, 1_500),
    ]
    resets_at = datetime.fromisoformat(items[0]["resets_at"])
    assert now < resets_at <= now + timedelta(days=1)


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"scope": "overall", "subject_id": 1, "period": "day"}, "subject_id", "must be absent"),
        ({"scope": "user", "period": "day"}, "subject_id", "is required for a budget of one user"),
        ({"scope": "user", "subject_id": 999_999, "period": "day"}, "subject_id", "no user has id"),
        ({"scope": "agent", "subject_id": 999_999, "period": "day"}, "subject_id", "no agent"),
    ],
)
def test_budget_subject_checked(
    client: TestClient, body: dict[str, object], field: str, problem: str
) -> None:
    response = client.post(BUDGETS, json={**body, "amount_micros": 1})

    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == field
    assert problem in response.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"scope": "team", "period": "day", "amount_micros": 1},
        {"scope": "overall", "period": "week", "amount_micros": 1},
        {"scope": "overall", "period": "day", "amount_micros": -1},
        {"scope": "overall", "period": "day", "amount_micros": 10**15 + 1},
        {"scope": "overall", "period": "day", "amount_micros": "5"},
        {"scope": "overall", "period": "day", "amount_micros": 1.5},
    ],
)
def test_bad_budget_body_refused(client: TestClient, body: dict[str, object]) -> None:
    response = client.post(BUDGETS, json=body)

    assert response.status_code == 422


def test_duplicate_budget_conflicts(client: TestClient) -> None:
    body = {"scope": "overall", "period": "day", "amount_micros": 1}
    first = client.post(BUDGETS, json=body).json()

    response = client.post(BUDGETS, json=body)

    assert response.status_code == 409
    assert response.json()["message"] == (
        f"budget {first['id']} is already the day budget for this overall; change its amount "
        "instead"
    )


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_non_admin_cannot_manage_budgets(
    anonymous_client: TestClient, make_user: MakeUser, role: Role
) -> None:
    user = make_user(role=role)
    body = {"scope": "user", "subject_id": user.id, "period": "day", "amount_micros": 10**9}

    assert anonymous_client.get(BUDGETS, headers=user.headers).status_code == 403
    assert anonymous_client.post(BUDGETS, json=body, headers=user.headers).status_code == 403
