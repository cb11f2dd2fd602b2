"""Budgets as the run loop meets them: the check before a call, what it names when it refuses,
when periods reset, and the usage records it sums."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from llero.academy.budgets import (
    Budget,
    BudgetExceeded,
    BudgetPeriod,
    BudgetScope,
    BudgetStatus,
    check_budget,
    period_bounds,
    record_refusal,
)
from llero.academy.providers import ModelPrice
from llero.academy.usage import UsageRecord, UsageTotal, record_usage
from llero.audit.context import Origin
from llero.barracks.models import Agent
from llero.command.providers.base import Usage
from llero.errors import InvalidInput
from llero.storage import migrate
from llero.storage.db import Database
from tests.academy.provider_helpers import audit_records
from tests.conftest import MakeUser

NOW = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)
# $1 per million input tokens and $2 per million output tokens.
PRICE = ModelPrice("gpt-4o", 1_000_000, 2_000_000)


@dataclass(frozen=True)
class People:
    user: int
    other_user: int
    agent: int
    other_agent: int


@pytest.fixture
def people(app: FastAPI, make_user: MakeUser, database: Database) -> People:
    # ``app`` attaches the audit keys to the database's sessions.
    del app
    user = make_user().id
    other_user = make_user().id
    with database.transaction() as session:
        agents = [
            Agent(name="researcher", provider="openai", model="gpt-4o"),
            Agent(name="writer", provider="openai", model="gpt-4o"),
        ]
        session.add_all(agents)
        session.flush()
        return People(user, other_user, agents[0].id, agents[1].id)


@pytest.fixture
def session(database: Database, people: People) -> Iterator[Session]:
    del people
    with database.transaction() as opened:
        yield opened


def spend(
    session: Session, people: People, micros: int, *, at: datetime = NOW, other: bool = False
) -> None:
    """Record a call by the user (or the other user) with its agent that costs ``micros``."""
    record_usage(
        session,
        provider="openai",
        price=PRICE,
        usage=Usage(input_tokens=micros, output_tokens=0),
        user_id=people.other_user if other else people.user,
        agent_id=people.other_agent if other else people.agent,
        session_id=1,
        now=at,
    )


def budget(session: Session, scope: BudgetScope, subject: int, period: str, amount: int) -> int:
    row = Budget(scope=scope, subject_id=subject, period=period, amount_micros=amount)
    session.add(row)
    session.flush()
    return row.id


def test_no_budget_allows_call(session: Session, people: People) -> None:
    spend(session, people, 5_000_000)

    assert check_budget(session, people.user, people.agent, NOW) == BudgetStatus(None)


def test_remaining_of_tightest_budget(session: Session, people: People) -> None:
    spend(session, people, 400)
    budget(session, BudgetScope.USER, people.user, "day", 1_000)
    tight = budget(session, BudgetScope.AGENT, people.agent, "month", 700)

    status = check_budget(session, people.user, people.agent, NOW)

    assert status == BudgetStatus(300, tight)


def test_used_up_user_budget_refused(session: Session, people: People) -> None:
    budget(session, BudgetScope.USER, people.user, "day", 10_000_000)
    spend(session, people, 10_000_000)

    with pytest.raises(BudgetExceeded) as caught:
        check_budget(session, people.user, people.agent, NOW)

    assert caught.value.code == "budget_exceeded"
    assert caught.value.message == (
        f"the daily budget of user {people.user} of $10.00 is used up ($10.00 spent); it resets "
        "at 2026-12-05T00:00:00Z"
    )
    assert caught.value.spending.resets_at == datetime(2026, 12, 5, tzinfo=UTC)


def test_other_users_spending_counts_only_overall(session: Session, people: People) -> None:
    budget(session, BudgetScope.USER, people.user, "day", 1_000)
    overall = budget(session, BudgetScope.OVERALL, 0, "month", 4_500)
    spend(session, people, 4_000, other=True)

    assert check_budget(session, people.user, people.agent, NOW) == BudgetStatus(500, overall)
    spend(session, people, 500, other=True)
    with pytest.raises(BudgetExceeded) as caught:
        check_budget(session, people.user, people.agent, NOW)
    assert caught.value.message.startswith("the monthly overall budget of $0.0045 is used up")
    assert caught.value.message.endswith("it resets at 2027-01-01T00:00:00Z")


def test_agent_budget_refuses_any_user(session: Session, people: People) -> None:
    budget(session, BudgetScope.AGENT, people.agent, "month", 2_000)
    spend(session, people, 2_500)

    with pytest.raises(BudgetExceeded) as caught:
        check_budget(session, people.other_user, people.agent, NOW)

    assert f"budget of agent {people.agent}" in caught.value.message
    assert (
        check_budget(session, people.other_user, people.other_agent, NOW).remaining_micros is None
    )


def test_narrowest_used_up_budget_named(session: Session, people: People) -> None:
    budget(session, BudgetScope.OVERALL, 0, "day", 100)
    budget(session, BudgetScope.AGENT, people.agent, "month", 100)
    budget(session, BudgetScope.USER, people.user, "month", 100)
    budget(session, BudgetScope.USER, people.user, "day", 100)
    spend(session, people, 100)

    with pytest.raises(BudgetExceeded) as caught:
        check_budget(session, people.user, people.agent, NOW)

    assert caught.value.spending.budget.scope == "user"
    assert caught.value.spending.budget.period == "day"


def test_zero_budget_refuses_first_call(session: Session, people: People) -> None:
    budget(session, BudgetScope.USER, people.user, "month", 0)

    with pytest.raises(BudgetExceeded):
        check_budget(session, people.user, people.agent, NOW)


def test_daily_budget_resets_at_midnight_utc(session: Session, people: People) -> None:
    budget(session, BudgetScope.USER, people.user, "day", 1_000)
    spend(session, people, 1_000, at=datetime(2026, 12, 4, 23, 59, 59, tzinfo=UTC))

    with pytest.raises(BudgetExceeded):
        check_budget(
            session, people.user, people.agent, datetime(2026, 12, 4, 23, 59, 59, tzinfo=UTC)
        )
    next_day = datetime(2026, 12, 5, 0, 0, tzinfo=UTC)
    assert check_budget(session, people.user, people.agent, next_day).remaining_micros == 1_000


def test_monthly_budget_ignores_last_month(session: Session, people: People) -> None:
    budget(session, BudgetScope.USER, people.user, "month", 1_000)
    spend(session, people, 5_000, at=datetime(2026, 11, 30, 23, 0, tzinfo=UTC))
    spend(session, people, 200, at=datetime(2026, 12, 1, 0, 0, tzinfo=UTC))

    assert check_budget(session, people.user, people.agent, NOW).remaining_micros == 800


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        (
            "day",
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            datetime(2026, 12, 31, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
            datetime(2028, 2, 1, tzinfo=UTC),
            datetime(2028, 3, 1, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2027, 1, 31, 8, 0, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
            datetime(2027, 2, 1, tzinfo=UTC),
        ),
        # 01:00 on 1 January in UTC+02:00 is still 31 December in UTC.
        (
            "day",
            datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 12, 31, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_period_bounds_follow_utc(
    period: str, now: datetime, start: datetime, end: datetime
) -> None:
    assert period_bounds(BudgetPeriod(period), now) == (start, end)


def test_refusal_recorded_as_audit_event(
    session: Session, people: People, database: Database
) -> None:
    budget_id = budget(session, BudgetScope.USER, people.user, "day", 10)
    spend(session, people, 25)
    with pytest.raises(BudgetExceeded) as caught:
        check_budget(session, people.user, people.agent, NOW)

    record_refusal(
        session,
        Origin.system("run"),
        caught.value,
        agent_id=people.agent,
        session_id=9,
    )
    session.commit()

    assert audit_records(database, "budget:exceeded") == [
        (
            str(budget_id),
            {
                "scope": "user",
                "subject_id": people.user,
                "period": "day",
                "amount_micros": 10,
                "spent_micros": 25,
                "agent_id": people.agent,
                "command_session": 9,
            },
        )
    ]


# Usage records.


def test_usage_record_cost_from_prices(session: Session, people: People) -> None:
    record_id = record_usage(
        session,
        provider="openai",
        price=PRICE,
        usage=Usage(input_tokens=1_500, output_tokens=250),
        user_id=people.user,
        agent_id=people.agent,
        session_id=3,
        now=datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))),
    )

    stored = session.get(UsageRecord, record_id)
    assert stored is not None
    assert stored.cost_micros == 2_000
    assert stored.model == "gpt-4o"
    assert stored.day.isoformat() == "2026-12-31"


@pytest.mark.parametrize(("input_tokens", "output_tokens"), [(-1, 0), (0, 10**9 + 1)])
def test_impossible_token_count_refused(
    session: Session, people: People, input_tokens: int, output_tokens: int
) -> None:
    with pytest.raises(InvalidInput):
        record_usage(
            session,
            provider="openai",
            price=PRICE,
            usage=Usage(input_tokens, output_tokens),
            user_id=people.user,
            agent_id=people.agent,
            session_id=None,
            now=NOW,
        )


def _totals(database: Database) -> list[tuple[str, int | None, int | None, date, int]]:
    columns = (UsageTotal.subject, UsageTotal.user_id, UsageTotal.agent_id)
    with database.transaction() as session:
        rows = session.execute(
            select(*columns, UsageTotal.day, UsageTotal.cost_micros).order_by(
                UsageTotal.subject, UsageTotal.day
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_totals_follow_each_record(session: Session, people: People) -> None:
    spend(session, people, 300)
    spend(session, people, 200)
    spend(session, people, 50, other=True)
    spend(session, people, 7, at=NOW - timedelta(days=1))

    rows = session.execute(
        select(UsageTotal.subject, UsageTotal.day, UsageTotal.cost_micros).order_by(
            UsageTotal.subject, UsageTotal.day
        )
    ).all()
    today, yesterday = NOW.date(), (NOW - timedelta(days=1)).date()
    assert sorted(tuple(row) for row in rows) == sorted(
        [
            (f"agent:{people.agent}", yesterday, 7),
            (f"agent:{people.agent}", today, 500),
            (f"agent:{people.other_agent}", today, 50),
            ("overall", yesterday, 7),
            ("overall", today, 550),
            (f"user:{people.other_user}", today, 50),
            (f"user:{people.user}", yesterday, 7),
            (f"user:{people.user}", today, 500),
        ]
    )


def test_deleted_agent_takes_its_totals(database: Database, people: People) -> None:
    with database.transaction() as session:
        spend(session, people, 400)
    with database.transaction() as session:
        session.delete(session.get(Agent, people.agent))

    subjects = {row[0] for row in _totals(database)}
    # An agent that gets the deleted one's id later starts with nothing spent.
    assert f"agent:{people.agent}" not in subjects
    assert {"overall", f"user:{people.user}"} <= subjects


def test_migration_fills_totals_from_records(database: Database, people: People) -> None:
    with database.transaction() as session:
        spend(session, people, 300)
        spend(session, people, 200, other=True)
        spend(session, people, 50, at=NOW - timedelta(days=40))
    before = _totals(database)

    migrate.downgrade(database.engine, "0016")
    migrate.upgrade(database.engine)

    assert _totals(database) == before
