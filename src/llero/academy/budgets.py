"""Spending budgets per user, per agent and overall, per day and per month, and the check that
runs before every provider call.

Amounts are integers of micro-dollars. Periods follow UTC: a daily budget resets at 00:00 UTC,
and a monthly one at 00:00 UTC on the first day of the next month. The spending in a period is
the sum of the usage records (llero.academy.usage) since it began.

NOTE: ``check_budget`` runs before a call, and the cost of that call is known only after it, so
one call, or several calls that start together, can pass a budget by what they cost. The next
call is then refused. ``BudgetStatus.remaining_micros`` lets a caller stop a streamed response
early when it knows the running cost.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Integer,
    String,
    UniqueConstraint,
    and_,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session

from llero.academy.usage import (
    OVERALL_SUBJECT,
    UsageTotal,
    agent_subject,
    format_usd,
    user_subject,
)
from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.barracks.models import Agent
from llero.errors import Conflict, InvalidInput, NotFound, Refused, Violation
from llero.identity.models import User
from llero.storage.base import Base, DataClass, UTCDateTime, classified, utc_now
from llero.storage.prepared import PreparedStatement

# One billion dollars: above any real budget, far below the 64-bit limit of the column.
AMOUNT_MAX = 10**15
ID_MAX = 2**31 - 1


class BudgetScope(StrEnum):
    AGENT = "agent"
    OVERALL = "overall"
    USER = "user"


class BudgetPeriod(StrEnum):
    DAY = "day"
    MONTH = "month"


# The order in which budgets are checked, so a refusal names the narrowest budget that is used up.
_SCOPE_ORDER = (BudgetScope.USER, BudgetScope.AGENT, BudgetScope.OVERALL)
_PERIOD_ORDER = (BudgetPeriod.DAY, BudgetPeriod.MONTH)
_PERIOD_WORD = {BudgetPeriod.DAY: "daily", BudgetPeriod.MONTH: "monthly"}


class Budget(Base):
    """A spending limit for one user, one agent, or everything (``subject_id`` 0), per period."""

    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint("scope", "subject_id", "period", name="uq_budgets_scope_subject_period"),
        CheckConstraint(
            "(scope = 'overall' AND subject_id = 0) OR (scope <> 'overall' AND subject_id > 0)",
            name="subject_matches_scope",
        ),
        CheckConstraint("amount_micros >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    scope: Mapped[str] = classified(DataClass.INTERNAL, String(16))
    # A user id or an agent id by scope. No foreign key, because it names either table; a
    # budget of a deleted user or agent limits nothing and can be deleted.
    subject_id: Mapped[int] = classified(DataClass.INTERNAL, Integer)
    period: Mapped[str] = classified(DataClass.INTERNAL, String(8))
    amount_micros: Mapped[int] = classified(DataClass.INTERNAL, BigInteger)
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)


@dataclass(frozen=True)
class BudgetStatus:
    """The amount left in the tightest budget that applies to a call; None without budgets."""

    remaining_micros: int | None
    budget_id: int | None = None


@dataclass(frozen=True)
class Spending:
    """A budget with what has been spent against it in the current period."""

    budget: Budget
    spent_micros: int
    period_start: datetime
    resets_at: datetime


class BudgetExceeded(Refused):
    """A provider call refused because a budget that applies to it is used up."""

    code = "budget_exceeded"

    def __init__(self, spending: Spending) -> None:
        budget = spending.budget
        super().__init__(
            f"the {describe(budget)} of {format_usd(budget.amount_micros)} is used up "
            f"({format_usd(spending.spent_micros)} spent); it resets at "
            f"{spending.resets_at.isoformat().replace('+00:00', 'Z')}",
            details=[Violation("budget", f"{budget.scope}:{budget.period}")],
        )
        self.spending = spending


def describe(budget: Budget) -> str:
    """Return a budget's name for messages: "daily budget of user 7", "monthly overall budget"."""
    word = _PERIOD_WORD[BudgetPeriod(budget.period)]
    if budget.scope == BudgetScope.OVERALL:
        return f"{word} overall budget"
    return f"{word} budget of {budget.scope} {budget.subject_id}"


def period_bounds(period: BudgetPeriod, now: datetime) -> tuple[datetime, datetime]:
    """Return the UTC start of the period that contains ``now`` and the start of the next."""
    moment = now.astimezone(UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is BudgetPeriod.DAY:
        return day, day + timedelta(days=1)
    month = day.replace(day=1)
    following = (month + timedelta(days=32)).replace(day=1)
    return month, following


# Checking.


def check_budget(
    session: Session,
    user_id: int | None,
    agent_id: int | None,
    now: datetime,
    budgets: Sequence[Budget] | None = None,
) -> BudgetStatus:
    """Raise BudgetExceeded when a budget of the user, the agent or overall is used up.

    Otherwise return what is left of the tightest one. Budgets are checked user first, then
    agent, then overall, each day before month, and the first used-up one is named.
    ``budgets`` are those of ``applicable_budgets`` when the caller keeps them; they are read
    when None.
    """
    if budgets is None:
        budgets = applicable_budgets(session, user_id, agent_id)
    tightest: tuple[int, int] | None = None
    for budget in budgets:
        spending = spending_of(session, budget, now)
        remaining = budget.amount_micros - spending.spent_micros
        if remaining <= 0:
            raise BudgetExceeded(spending)
        if tightest is None or remaining < tightest[0]:
            tightest = (remaining, budget.id)
    if tightest is None:
        return BudgetStatus(None)
    return BudgetStatus(tightest[0], tightest[1])


def applicable_budgets(
    session: Session, user_id: int | None, agent_id: int | None
) -> list[Budget]:
    """Return the budgets that apply to a call of ``agent_id`` for ``user_id``, in the order
    they are checked.

    They are copies that belong to no session, so they can be kept after ``session`` ends: a
    rolled-back session (a refused call) empties the objects it loaded.
    """
    budgets = session.scalars(select(Budget).where(_applicable(user_id, agent_id))).all()
    ordered = sorted(
        budgets,
        key=lambda b: (
            _SCOPE_ORDER.index(BudgetScope(b.scope)),
            _PERIOD_ORDER.index(BudgetPeriod(b.period)),
        ),
    )
    return [
        Budget(
            id=budget.id,
            scope=budget.scope,
            subject_id=budget.subject_id,
            period=budget.period,
            amount_micros=budget.amount_micros,
            created_at=budget.created_at,
            updated_at=budget.updated_at,
        )
        for budget in ordered
    ]


def record_refusal(
    session: Session,
    origin: Origin,
    refusal: BudgetExceeded,
    *,
    agent_id: int | None,
    session_id: int | None,
) -> None:
    """Record a ``budget:exceeded`` event for a refused call.

    ``check_budget`` raises, which rolls back the caller's transaction, so the caller records
    the refusal in a transaction of its own.
    """
    budget = refusal.spending.budget
    record_as(
        session,
        origin,
        AuditEvent.BUDGET_EXCEEDED,
        Target.of("budget", budget.id),
        {
            "scope": budget.scope,
            "subject_id": budget.subject_id,
            "period": budget.period,
            "amount_micros": budget.amount_micros,
            "spent_micros": refusal.spending.spent_micros,
            "agent_id": agent_id,
            # Not "session_id": the audit log hashes values under keys that name a session id.
            "command_session": session_id,
        },
    )


def spending_of_all(session: Session, now: datetime) -> list[Spending]:
    """Return every budget with its spending in the current period, ordered by id."""
    budgets = session.scalars(select(Budget).order_by(Budget.id))
    return [spending_of(session, budget, now) for budget in budgets]


def _applicable(user_id: int | None, agent_id: int | None) -> ColumnElement[bool]:
    conditions = [Budget.scope == BudgetScope.OVERALL]
    if user_id is not None:
        conditions.append(and_(Budget.scope == BudgetScope.USER, Budget.subject_id == user_id))
    if agent_id is not None:
        conditions.append(and_(Budget.scope == BudgetScope.AGENT, Budget.subject_id == agent_id))
    return or_(*conditions)


# Periods start at midnight UTC, so the days from the period's first one hold its whole cost.
_SPENT_SINCE = PreparedStatement(
    select(func.coalesce(func.sum(UsageTotal.cost_micros), 0)).where(
        UsageTotal.subject == bindparam("subject"), UsageTotal.day >= bindparam("first_day")
    )
)


def spending_of(session: Session, budget: Budget, now: datetime) -> Spending:
    """Return ``budget`` with what has been spent against it in the period of ``now``."""
    start, resets_at = period_bounds(BudgetPeriod(budget.period), now)
    if budget.scope == BudgetScope.USER:
        subject = user_subject(budget.subject_id)
    elif budget.scope == BudgetScope.AGENT:
        subject = agent_subject(budget.subject_id)
    else:
        subject = OVERALL_SUBJECT
    rows = _SPENT_SINCE.execute(
        session.connection(), {"subject": subject, "first_day": start.date()}
    )
    return Spending(budget, int(rows[0][0] or 0), start, resets_at)


# Managing budgets.


def create_budget(
    session: Session,
    origin: Origin,
    *,
    scope: BudgetScope,
    subject_id: int | None,
    period: BudgetPeriod,
    amount_micros: int,
) -> Budget:
    """Create a budget; raise InvalidInput for a bad value and Conflict when one exists."""
    subject = _checked_subject(session, scope, subject_id)
    amount = _checked_amount(amount_micros)
    existing = session.scalar(
        select(Budget.id).where(
            Budget.scope == scope, Budget.subject_id == subject, Budget.period == period
        )
    )
    if existing is not None:
        raise Conflict(
            f"budget {existing} is already the {period} budget for this {scope}; change its "
            "amount instead"
        )
    now = utc_now()
    budget = Budget(
        scope=scope.value,
        subject_id=subject,
        period=period.value,
        amount_micros=amount,
        created_at=now,
        updated_at=now,
    )
    session.add(budget)
    _flush(session)
    record_as(session, origin, AuditEvent.BUDGET_CREATED, _target(budget), _detail(budget))
    return budget


def update_budget(session: Session, origin: Origin, budget_id: int, amount_micros: int) -> Budget:
    budget = get_budget(session, budget_id)
    amount = _checked_amount(amount_micros)
    if amount == budget.amount_micros:
        return budget
    previous = budget.amount_micros
    budget.amount_micros = amount
    budget.updated_at = utc_now()
    session.flush()
    detail = {**_detail(budget), "previous_amount_micros": previous}
    record_as(session, origin, AuditEvent.BUDGET_UPDATED, _target(budget), detail)
    return budget


def delete_budget(session: Session, origin: Origin, budget_id: int) -> None:
    budget = get_budget(session, budget_id)
    detail = _detail(budget)
    session.delete(budget)
    session.flush()
    record_as(session, origin, AuditEvent.BUDGET_DELETED, Target.of("budget", budget_id), detail)


def get_budget(session: Session, budget_id: int) -> Budget:
    budget = session.get(Budget, budget_id)
    if budget is None:
        raise NotFound(f"budget {budget_id} not found")
    return budget


def _checked_subject(session: Session, scope: BudgetScope, subject_id: int | None) -> int:
    if scope is BudgetScope.OVERALL:
        if subject_id is not None:
            raise _invalid("subject_id", "must be absent for an overall budget")
        return 0
    if subject_id is None:
        raise _invalid("subject_id", f"is required for a budget of one {scope}")
    model: Any = User if scope is BudgetScope.USER else Agent
    if not 1 <= subject_id <= ID_MAX or session.get(model, subject_id) is None:
        raise _invalid("subject_id", f"no {scope} has id {subject_id}")
    return subject_id


def _checked_amount(amount_micros: int) -> int:
    if isinstance(amount_micros, bool) or not isinstance(amount_micros, int):
        raise _invalid("amount_micros", "must be an integer")
    if not 0 <= amount_micros <= AMOUNT_MAX:
        raise _invalid("amount_micros", f"must be from 0 to {AMOUNT_MAX}")
    return amount_micros


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{field}: {problem}", details=[Violation(field, problem)])


def _target(budget: Budget) -> Target:
    return Target.of("budget", budget.id)


def _detail(budget: Budget) -> dict[str, Any]:
    return {
        "scope": budget.scope,
        "subject_id": budget.subject_id,
        "period": budget.period,
        "amount_micros": budget.amount_micros,
    }


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict(
            "the budget was not saved because a concurrent request created the same budget; "
            "change its amount instead"
        ) from error
