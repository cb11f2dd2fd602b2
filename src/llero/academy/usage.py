"""Usage: one record per provider call, and reports of it by user, agent, model and day.

A record keeps the tokens the provider counted and the cost in micro-dollars from the model's
prices at the time of the call, so a later price change does not rewrite history. The user and
the agent are foreign keys that become NULL when the row they name is deleted, so spending stays
in the overall totals. ``session_id`` names a Command Center chat session and has no foreign
key yet.
"""

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session

from llero.academy.providers import MICROS_PER_DOLLAR, NAME_MAX, ModelPrice
from llero.barracks.models import Agent
from llero.barracks.service import MODEL_MAX
from llero.command.providers.base import Usage
from llero.errors import InvalidInput, Violation
from llero.identity.models import User
from llero.storage.base import Base, DataClass, UTCDateTime, classified, utc_now
from llero.storage.prepared import PreparedStatement

# More tokens than any context window holds: a count above it is a provider's error.
TOKENS_MAX = 10**9
# The maximum number of groups in one report; a report by day over ten years has about 3650.
REPORT_ROWS_MAX = 10_000

# A cell starting with one of these is read as a formula by spreadsheet programs (CSV
# injection), so the export prefixes it with an apostrophe. Tab and carriage return start
# formulas in some programs too.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_user_occurred", "user_id", "occurred_at"),
        Index("ix_usage_records_agent_occurred", "agent_id", "occurred_at"),
    )

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    occurred_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, index=True)
    # The UTC date of occurred_at, stored so reports group by day the same way on every database.
    day: Mapped[date] = classified(DataClass.INTERNAL, Date, index=True)
    user_id: Mapped[int | None] = classified(
        DataClass.INTERNAL, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    agent_id: Mapped[int | None] = classified(
        DataClass.INTERNAL, ForeignKey("agents.id", ondelete="SET NULL"), nullable=True
    )
    # The chat session (chat_sessions.id) of the call, or None for /v1/chat/completions.
    # TODO: make it a foreign key with ON DELETE SET NULL; until then it can name a deleted one.
    session_id: Mapped[int | None] = classified(DataClass.INTERNAL, Integer, nullable=True)
    provider: Mapped[str] = classified(DataClass.INTERNAL, String(NAME_MAX))
    model: Mapped[str] = classified(DataClass.INTERNAL, String(MODEL_MAX))
    input_tokens: Mapped[int] = classified(DataClass.INTERNAL, BigInteger)
    output_tokens: Mapped[int] = classified(DataClass.INTERNAL, BigInteger)
    cost_micros: Mapped[int] = classified(DataClass.INTERNAL, BigInteger)


class UsageTotal(Base):
    """The cost of one day's calls of one user, one agent, or all of them (``subject``).

    Kept as each usage record is written, so a budget check adds up at most 31 rows instead of
    every call of the month. A user's or agent's totals go when it is deleted, as its records
    stop naming it then.
    """

    __tablename__ = "usage_totals"
    __table_args__ = (UniqueConstraint("subject", "day", name="uq_usage_totals_subject_day"),)

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    # "user:<id>", "agent:<id>" or "overall".
    subject: Mapped[str] = classified(DataClass.INTERNAL, String(32))
    user_id: Mapped[int | None] = classified(
        DataClass.INTERNAL, ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    agent_id: Mapped[int | None] = classified(
        DataClass.INTERNAL, ForeignKey("agents.id", ondelete="CASCADE"), nullable=True, index=True
    )
    day: Mapped[date] = classified(DataClass.INTERNAL, Date)
    cost_micros: Mapped[int] = classified(DataClass.INTERNAL, BigInteger)


OVERALL_SUBJECT = "overall"


def user_subject(user_id: int) -> str:
    return f"user:{user_id}"


def agent_subject(agent_id: int) -> str:
    return f"agent:{agent_id}"


# Run after every provider call, so it skips the ORM's unit of work.
_INSERT = PreparedStatement(
    cast(Table, UsageRecord.__table__).insert().returning(UsageRecord.id),
    [
        "occurred_at",
        "day",
        "user_id",
        "agent_id",
        "session_id",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "cost_micros",
    ],
)


# The same upsert syntax on SQLite (3.24 and later) and PostgreSQL.
_ADD_TO_TOTAL = PreparedStatement(
    text(
        "INSERT INTO usage_totals (subject, user_id, agent_id, day, cost_micros) "
        "VALUES (:subject, :user_id, :agent_id, :day, :cost_micros) "
        "ON CONFLICT (subject, day) DO UPDATE "
        "SET cost_micros = usage_totals.cost_micros + excluded.cost_micros"
    ).bindparams(
        bindparam("subject", type_=String()),
        bindparam("user_id", type_=Integer()),
        bindparam("agent_id", type_=Integer()),
        bindparam("day", type_=Date()),
        bindparam("cost_micros", type_=BigInteger()),
    )
)


def decimal_usd(micros: int) -> str:
    """Return ``micros`` as a decimal number of dollars with six places: 2500000 is "2.500000"."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_DOLLAR)
    return f"{sign}{whole}.{fraction:06d}"


def format_usd(micros: int) -> str:
    """Return ``micros`` as dollars for people: "$2.50", "$0.0025"."""
    whole, _, fraction = decimal_usd(micros).partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"-${whole.removeprefix('-')}.{fraction}" if micros < 0 else f"${whole}.{fraction}"


def record_usage(
    session: Session,
    *,
    provider: str,
    price: ModelPrice,
    usage: Usage,
    user_id: int | None,
    agent_id: int | None,
    session_id: int | None,
    now: datetime | None = None,
) -> int:
    """Record one provider call with its cost; return the record's id. Raise InvalidInput for an
    impossible count.

    The cost is also added to the day's totals of the user, the agent and overall.

    ``price`` comes from ``llero.academy.providers.model_price``, read before the call.
    """
    counts = (("input_tokens", usage.input_tokens), ("output_tokens", usage.output_tokens))
    for field, count in counts:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= TOKENS_MAX:
            raise InvalidInput(
                f"{field}: must be an integer from 0 to {TOKENS_MAX}",
                details=[Violation(field, f"must be from 0 to {TOKENS_MAX}")],
            )
    moment = now or utc_now()
    if moment.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    values = {
        "occurred_at": moment,
        "day": moment.astimezone(UTC).date(),
        "user_id": user_id,
        "agent_id": agent_id,
        "session_id": session_id,
        "provider": provider,
        "model": price.name,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_micros": price.cost_micros(usage.input_tokens, usage.output_tokens),
    }
    connection = session.connection()
    ((record_id,),) = _INSERT.execute(connection, values)
    subjects: list[tuple[str, int | None, int | None]] = [(OVERALL_SUBJECT, None, None)]
    if user_id is not None:
        subjects.append((user_subject(user_id), user_id, None))
    if agent_id is not None:
        subjects.append((agent_subject(agent_id), None, agent_id))
    for subject, total_user, total_agent in subjects:
        _ADD_TO_TOTAL.execute(
            connection,
            {
                "subject": subject,
                "user_id": total_user,
                "agent_id": total_agent,
                "day": values["day"],
                "cost_micros": values["cost_micros"],
            },
        )
    # An id, not a UsageRecord: making a mapped object cost about 2% of a /v1 call's CPU.
    return int(record_id)


# Reports.


class GroupBy(StrEnum):
    AGENT = "agent"
    DAY = "day"
    MODEL = "model"
    USER = "user"


@dataclass(frozen=True)
class ReportFilter:
    """The conditions a report selects records by; ``until`` is exclusive, None is no limit."""

    since: date | None = None
    until: date | None = None
    user_id: int | None = None
    agent_id: int | None = None


@dataclass(frozen=True)
class ReportRow:
    """One group: ``key`` identifies it (an id, "provider/model" or a date), ``name`` labels it."""

    key: str
    name: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_micros: int


def usage_report(session: Session, group_by: GroupBy, where: ReportFilter) -> list[ReportRow]:
    """Return the usage of the records that match ``where``, one row per group, by key."""
    totals = (
        func.count(UsageRecord.id),
        func.coalesce(func.sum(UsageRecord.input_tokens), 0),
        func.coalesce(func.sum(UsageRecord.output_tokens), 0),
        func.coalesce(func.sum(UsageRecord.cost_micros), 0),
    )
    query = _grouped(group_by, totals)
    query = _filtered(query, where).limit(REPORT_ROWS_MAX)
    rows = []
    for key, name, calls, input_tokens, output_tokens, cost in session.execute(query):
        rows.append(
            ReportRow(
                key="" if key is None else str(key),
                name=_label(group_by, key, name),
                calls=int(calls),
                input_tokens=int(input_tokens),
                output_tokens=int(output_tokens),
                cost_micros=int(cost),
            )
        )
    return rows


def _grouped(group_by: GroupBy, totals: Sequence[Any]) -> Select[Any]:
    if group_by is GroupBy.USER:
        return (
            select(UsageRecord.user_id, User.display_name, *totals)
            .outerjoin(User, User.id == UsageRecord.user_id)
            .group_by(UsageRecord.user_id, User.display_name)
            .order_by(UsageRecord.user_id)
        )
    if group_by is GroupBy.AGENT:
        return (
            select(UsageRecord.agent_id, Agent.name, *totals)
            .outerjoin(Agent, Agent.id == UsageRecord.agent_id)
            .group_by(UsageRecord.agent_id, Agent.name)
            .order_by(UsageRecord.agent_id)
        )
    if group_by is GroupBy.MODEL:
        key = UsageRecord.provider + "/" + UsageRecord.model
        return (
            select(key, key, *totals)
            .group_by(UsageRecord.provider, UsageRecord.model)
            .order_by(UsageRecord.provider, UsageRecord.model)
        )
    return (
        select(UsageRecord.day, UsageRecord.day, *totals)
        .group_by(UsageRecord.day)
        .order_by(UsageRecord.day)
    )


def _filtered(query: Select[Any], where: ReportFilter) -> Select[Any]:
    if where.since is not None:
        query = query.where(UsageRecord.day >= where.since)
    if where.until is not None:
        query = query.where(UsageRecord.day < where.until)
    if where.user_id is not None:
        query = query.where(UsageRecord.user_id == where.user_id)
    if where.agent_id is not None:
        query = query.where(UsageRecord.agent_id == where.agent_id)
    return query


def _label(group_by: GroupBy, key: object, name: object) -> str:
    if key is None:
        # The user or agent was deleted after the call.
        return f"deleted {group_by}"
    if isinstance(name, date):
        return name.isoformat()
    if not name:
        # A user without a display name; the email stays out of reports and their CSV files.
        return f"{group_by} {key}"
    return str(name)


# CSV export.


def csv_cell(value: str) -> str:
    """Return ``value`` safe to open in a spreadsheet: a formula start gets a leading apostrophe."""
    if value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def usage_csv(group_by: GroupBy, rows: Sequence[ReportRow]) -> str:
    """Return a report as CSV with a header line; every text cell passes ``csv_cell``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(
        [
            group_by.value,
            "name",
            "calls",
            "input_tokens",
            "output_tokens",
            "cost_micros",
            "cost_usd",
        ]
    )
    for row in rows:
        writer.writerow(
            [
                csv_cell(row.key),
                csv_cell(row.name),
                row.calls,
                row.input_tokens,
                row.output_tokens,
                row.cost_micros,
                decimal_usd(row.cost_micros),
            ]
        )
    return buffer.getvalue()
