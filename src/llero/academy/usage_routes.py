"""HTTP routes of usage reports and budgets; each names its permission and calls the service.

Admins read everyone's usage. Anyone else reads their own: the report counts only their calls,
and asking for another user's is forbidden.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from llero.academy import budgets, usage
from llero.academy.usage_schemas import (
    BudgetCreate,
    BudgetList,
    BudgetOut,
    BudgetUpdate,
    UsageQuery,
    UsageReport,
    UsageRowOut,
)
from llero.access.permissions import Permission, PermissionDenied, principal_of, requires
from llero.access.roles import Role
from llero.storage.base import utc_now
from llero.web.clients import origin_of
from llero.web.deps import SessionDep
from llero.web.schemas import ID_MAX

BudgetIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]

usage_router = APIRouter(prefix="/usage", tags=["usage"])
budget_router = APIRouter(prefix="/budgets", tags=["budgets"])


def _reported_user(request: Request, query: UsageQuery) -> int | None:
    """Return the user a report is limited to: any (None) or the requested one for an admin,
    the caller for everyone else."""
    principal = principal_of(request)
    if principal.role == Role.ADMIN:
        return query.user_id
    if query.user_id is not None and query.user_id != principal.user_id:
        raise PermissionDenied("you may read only your own usage; leave out user_id")
    return principal.user_id


@usage_router.get("", dependencies=[requires(Permission.USAGE_READ)])
def read_usage(
    request: Request, session: SessionDep, query: Annotated[UsageQuery, Query()]
) -> UsageReport:
    """Return calls, tokens and cost per user, agent, model or day."""
    user_id = _reported_user(request, query)
    rows = usage.usage_report(session, query.group_by, query.filter(user_id))
    return UsageReport(
        group_by=query.group_by,
        since=query.since,
        until=query.until,
        user_id=user_id,
        items=[UsageRowOut.of(row) for row in rows],
    )


@usage_router.get(
    "/export",
    dependencies=[requires(Permission.USAGE_EXPORT)],
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def export_usage(
    request: Request, session: SessionDep, query: Annotated[UsageQuery, Query()]
) -> Response:
    """Return the same report as CSV, safe to open in a spreadsheet."""
    user_id = _reported_user(request, query)
    rows = usage.usage_report(session, query.group_by, query.filter(user_id))
    return Response(
        usage.usage_csv(query.group_by, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="usage-by-{query.group_by}.csv"'},
    )


@budget_router.get("", dependencies=[requires(Permission.BUDGET_READ)])
def list_budgets(session: SessionDep) -> BudgetList:
    """Return every budget with what has been spent in its current period."""
    spending = budgets.spending_of_all(session, utc_now())
    return BudgetList(items=[BudgetOut.of(item) for item in spending])


@budget_router.post("", status_code=201, dependencies=[requires(Permission.BUDGET_CREATE)])
def create_budget(request: Request, session: SessionDep, body: BudgetCreate) -> BudgetOut:
    budget = budgets.create_budget(
        session,
        origin_of(request),
        scope=body.scope,
        subject_id=body.subject_id,
        period=body.period,
        amount_micros=body.amount_micros,
    )
    return BudgetOut.of(budgets.spending_of(session, budget, utc_now()))


@budget_router.patch("/{budget_id}", dependencies=[requires(Permission.BUDGET_UPDATE)])
def update_budget(
    request: Request, session: SessionDep, budget_id: BudgetIdPath, body: BudgetUpdate
) -> BudgetOut:
    budget = budgets.update_budget(session, origin_of(request), budget_id, body.amount_micros)
    return BudgetOut.of(budgets.spending_of(session, budget, utc_now()))


@budget_router.delete(
    "/{budget_id}", status_code=204, dependencies=[requires(Permission.BUDGET_DELETE)]
)
def delete_budget(request: Request, session: SessionDep, budget_id: BudgetIdPath) -> Response:
    budgets.delete_budget(session, origin_of(request), budget_id)
    return Response(status_code=204)
