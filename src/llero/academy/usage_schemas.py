"""Request and response bodies of the usage and budget routes. Amounts are integers of
micro-dollars; ``*_usd`` fields repeat them as decimal text for people."""

from datetime import date, datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llero.academy.budgets import AMOUNT_MAX, Budget, BudgetPeriod, BudgetScope, Spending
from llero.academy.usage import GroupBy, ReportFilter, ReportRow, decimal_usd
from llero.web.schemas import ID_MAX, RecordId, RequestModel, ResponseModel

Amount = Annotated[int, Field(ge=0, le=AMOUNT_MAX, examples=[10_000_000])]


class UsageQuery(BaseModel):
    """Query parameters of a usage report. They arrive as text, so they are not strict.

    ``since`` is inclusive and ``until`` exclusive, both UTC dates.
    """

    model_config = ConfigDict(extra="forbid")

    group_by: GroupBy = GroupBy.DAY
    since: date | None = None
    until: date | None = None
    user_id: Annotated[int, Field(ge=1, le=ID_MAX)] | None = None
    agent_id: Annotated[int, Field(ge=1, le=ID_MAX)] | None = None

    @model_validator(mode="after")
    def _range_not_empty(self) -> Self:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be later than since")
        return self

    def filter(self, user_id: int | None) -> ReportFilter:
        return ReportFilter(self.since, self.until, user_id, self.agent_id)


class UsageRowOut(ResponseModel):
    key: str = Field(description="A user or agent id, provider/model, or a date by group_by.")
    name: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_micros: int
    cost_usd: str

    @classmethod
    def of(cls, row: ReportRow) -> Self:
        return cls(**row.__dict__, cost_usd=decimal_usd(row.cost_micros))


class UsageReport(ResponseModel):
    group_by: GroupBy
    since: date | None
    until: date | None
    user_id: int | None = Field(description="Set when the report counts one user's calls only.")
    items: list[UsageRowOut]


class BudgetCreate(RequestModel):
    """A budget for one user or agent (``subject_id``), or overall (no ``subject_id``)."""

    scope: Annotated[BudgetScope, Field(strict=False)]
    subject_id: RecordId | None = None
    period: Annotated[BudgetPeriod, Field(strict=False)]
    amount_micros: Amount


class BudgetUpdate(RequestModel):
    amount_micros: Amount


class BudgetOut(ResponseModel):
    id: int
    scope: BudgetScope
    subject_id: int | None
    period: BudgetPeriod
    amount_micros: int
    amount_usd: str
    spent_micros: int = Field(description="Spent in the current period.")
    resets_at: datetime
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, spending: Spending) -> Self:
        budget: Budget = spending.budget
        return cls(
            id=budget.id,
            scope=BudgetScope(budget.scope),
            subject_id=budget.subject_id or None,
            period=BudgetPeriod(budget.period),
            amount_micros=budget.amount_micros,
            amount_usd=decimal_usd(budget.amount_micros),
            spent_micros=spending.spent_micros,
            resets_at=spending.resets_at,
            created_at=budget.created_at,
            updated_at=budget.updated_at,
        )


class BudgetList(ResponseModel):
    items: list[BudgetOut]
